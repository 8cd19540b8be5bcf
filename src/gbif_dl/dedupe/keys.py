"""Compact multi-maps from 64-bit keys to entry numbers, and the near-neighbour index over them.

:class:`SortedKeys` keeps its keys in sorted ``uint64`` arrays (16 bytes an entry) plus a short
unsorted tail, merged in when it fills (one ``np.insert`` pass), so lookups stay a binary
search and memory stays flat. :class:`NearIndex` finds the hashes within a Hamming distance
``d`` of a query by multi-index hashing (M. Norouzi, A. Punjani, D. Fleet, *Fast Search in
Hamming Space with Multi-Index Hashing*, CVPR 2012): the 64 bits are cut into 4 bands of 16
bits, and two hashes within distance ``d`` are within ``r = d // 4`` bits of each other on at
least one band (pigeonhole), so the candidates are the entries whose band is one of the
query's band values with up to ``r`` bits flipped; their true distance is then checked. Each
band is a bucket table (65,536 buckets, direct addressing: no search), so a query costs the
same at ten thousand or a million entries: for the default ``d = 6``, 68 bucket reads and
about N / 1,000 candidates (``d + 1`` bands of 9 bits, the plain scheme, would give N / 70).

Example:
    >>> index = NearIndex(distance=4)
    >>> index.add(0b1111)
    0
    >>> index.add(0xFFFF_0000_0000_0000)
    1
    >>> index.near(0b0111)
    [(0, 1)]
"""

from __future__ import annotations

import itertools

import numpy as np

from gbif_dl.dedupe.phash import hamming_many

__all__ = ["NearIndex", "SortedKeys"]

#: Keys added between two merges into the sorted arrays.
_TAIL = 2048


class SortedKeys:
    """``key (uint64) -> entry numbers``, several entries per key allowed.

    Example:
        >>> keys = SortedKeys()
        >>> keys.add(7, 0); keys.add(7, 3); keys.add(9, 1)
        >>> sorted(keys.find(7)), keys.find(8)
        ([0, 3], [])
    """

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=np.uint64)
        self._ids = np.zeros(0, dtype=np.int64)
        self._tail: dict[int, list[int]] = {}  # the keys added since the last merge
        self._tail_size = 0

    def __len__(self) -> int:
        return len(self._keys) + self._tail_size

    def add(self, key: int, entry: int) -> None:
        """Map ``key`` to ``entry`` too."""
        self._tail.setdefault(key, []).append(entry)
        self._tail_size += 1
        if self._tail_size >= _TAIL:
            self._merge()

    def add_many(self, keys: np.ndarray, entries: np.ndarray) -> None:
        """Map each of ``keys`` to the entry at the same position (one sort)."""
        self._merge()
        all_keys = np.concatenate([self._keys, keys.astype(np.uint64)])
        all_ids = np.concatenate([self._ids, entries.astype(np.int64)])
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._ids = all_keys[order], all_ids[order]

    def _merge(self) -> None:
        if not self._tail:
            return
        pairs = [(key, entry) for key, entries in self._tail.items() for entry in entries]
        keys = np.array([key for key, _ in pairs], dtype=np.uint64)
        ids = np.array([entry for _, entry in pairs], dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys, ids = keys[order], ids[order]
        at = np.searchsorted(self._keys, keys, side="right")
        self._keys = np.insert(self._keys, at, keys)
        self._ids = np.insert(self._ids, at, ids)
        self._tail.clear()
        self._tail_size = 0

    def find_many(self, keys: list[int]) -> np.ndarray:
        """The entries mapped from any of ``keys``, as an ``int64`` array (with repeats)."""
        targets = np.array(keys, dtype=np.uint64)
        los = self._keys.searchsorted(targets, "left").tolist()
        his = self._keys.searchsorted(targets, "right").tolist()
        parts = [self._ids[lo:hi] for lo, hi in zip(los, his, strict=True) if hi > lo]
        for key in keys:
            tail = self._tail.get(key)
            if tail:
                parts.append(np.array(tail, dtype=np.int64))
        return np.concatenate(parts) if parts else self._ids[:0]

    def find(self, key: int) -> list[int]:
        """The entries mapped from ``key``."""
        return self.find_array(key).tolist()

    def find_array(self, key: int) -> np.ndarray:
        """The entries mapped from ``key``, as an ``int64`` array."""
        target = np.uint64(key)
        keys = self._keys
        lo = int(keys.searchsorted(target, "left"))
        found = self._ids[lo : int(keys.searchsorted(target, "right"))]
        tail = self._tail.get(key)
        if tail:
            return np.concatenate([found, np.array(tail, dtype=np.int64)])
        return found


_BAND_BITS = 16
_BANDS = 64 // _BAND_BITS
_BUCKETS = 1 << _BAND_BITS
#: Entries added between two rebuilds of the bucket tables (they are compared one by one).
_NEAR_TAIL = 4096


class NearIndex:
    """The entries whose 64-bit hash is within ``distance`` bits of a query.

    Args:
        distance: the largest Hamming distance that counts as near (0..15).

    Memory: 8 bytes a hash, 4 bytes an entry per band, 2 MB of bucket offsets.

    Example:
        >>> index = NearIndex(distance=2)
        >>> [index.add(h) for h in (0, 0b111, 0b11)]
        [0, 1, 2]
        >>> index.near(0b1)
        [(2, 1), (0, 1), (1, 2)]
    """

    def __init__(self, distance: int) -> None:
        if not 0 <= distance < 16:
            raise ValueError(f"distance must be in 0..15; got {distance}")
        self.distance = distance
        radius = distance // _BANDS
        self._flips = np.array(
            [
                sum(1 << bit for bit in bits)
                for n in range(radius + 1)
                for bits in itertools.combinations(range(_BAND_BITS), n)
            ],
            dtype=np.int64,
        )
        self._hashes = np.zeros(1024, dtype=np.uint64)
        self._has = np.zeros(1024, dtype=bool)
        self._count = 0
        self._built = 0  # entries below this are in the bucket tables
        # every band's entries by bucket, one after the other, and where each bucket starts in
        # that array (band b's bucket k: ``_offsets[b * (_BUCKETS + 1) + k]``)
        self._order = np.zeros(0, dtype=np.int32)
        self._offsets = np.zeros(_BANDS * (_BUCKETS + 1), dtype=np.int64)
        self._shifts = np.arange(_BANDS, dtype=np.uint64) * np.uint64(_BAND_BITS)

    def __len__(self) -> int:
        return int(np.count_nonzero(self._has[: self._count]))

    def _grow(self, size: int) -> None:
        if size > len(self._hashes):
            capacity = max(2 * len(self._hashes), size)
            for name in ("_hashes", "_has"):
                old = getattr(self, name)
                grown = np.zeros(capacity, dtype=old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)

    def add(self, value: int, entry: int | None = None) -> int:
        """Add ``value``; return its entry number (``entry`` or the next free one)."""
        if entry is None:
            entry = self._count
        self._grow(entry + 1)
        self._hashes[entry] = np.uint64(value)
        self._has[entry] = True
        self._count = max(self._count, entry + 1)
        if entry < self._built or self._count - self._built >= _NEAR_TAIL:
            self._rebuild()
        return entry

    def add_many(self, values: np.ndarray, entries: np.ndarray) -> None:
        """Add ``values`` under ``entries`` (one rebuild)."""
        if not len(values):
            return
        self._grow(int(entries.max()) + 1)
        self._hashes[entries] = values.astype(np.uint64)
        self._has[entries] = True
        self._count = max(self._count, int(entries.max()) + 1)
        self._rebuild()

    def _rebuild(self) -> None:
        """The bucket tables of every entry (a stable sort of 16-bit codes: a radix sort)."""
        ids = np.flatnonzero(self._has[: self._count]).astype(np.int32)
        hashes = self._hashes[ids]
        orders = []
        for band in range(_BANDS):
            codes = ((hashes >> self._shifts[band]) & np.uint64(_BUCKETS - 1)).astype(np.uint16)
            orders.append(ids[np.argsort(codes, kind="stable")])
            offsets = self._offsets[band * (_BUCKETS + 1) : (band + 1) * (_BUCKETS + 1)]
            offsets[0] = band * len(ids)
            np.cumsum(np.bincount(codes, minlength=_BUCKETS), out=offsets[1:])
            offsets[1:] += band * len(ids)
        self._order = np.concatenate(orders)
        self._built = self._count

    def _candidates(self, value: int) -> np.ndarray:
        """Entries sharing a band (within the radius) with ``value``, and every new entry."""
        codes = (np.uint64(value) >> self._shifts) & np.uint64(_BUCKETS - 1)
        bands = np.arange(_BANDS, dtype=np.int64) * (_BUCKETS + 1)
        buckets = ((codes.astype(np.int64)[:, None] ^ self._flips) + bands[:, None]).ravel()
        starts = self._offsets[buckets]
        lengths = self._offsets[buckets + 1] - starts
        total = int(lengths.sum())
        parts = []
        if total:
            within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            parts.append(self._order[np.repeat(starts, lengths) + within])
        if self._count > self._built:
            new = np.arange(self._built, self._count)
            parts.append(new[self._has[self._built : self._count]])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def near(self, value: int) -> list[tuple[int, int]]:
        """(entry, distance) of every entry within ``distance`` of ``value``, nearest first
        (ties: the later entry, the latest copy of a file)."""
        found = self._candidates(value)
        if not found.size:
            return []
        distances = hamming_many(self._hashes[found], value)
        close = distances <= self.distance  # usually a few: only those are deduplicated
        pairs = set(zip(found[close].tolist(), distances[close].tolist(), strict=True))
        return sorted(pairs, key=lambda pair: (pair[1], -pair[0]))

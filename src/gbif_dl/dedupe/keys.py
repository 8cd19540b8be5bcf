"""Compact multi-maps from 64-bit keys to entry numbers, and the near-neighbour index over them.

:class:`SortedKeys` keeps its keys in sorted ``uint64`` arrays (16 bytes an entry) plus a short
unsorted tail, merged in when it fills (one ``np.insert`` pass), so lookups stay a binary
search and memory stays flat. :class:`NearIndex` finds the hashes within a Hamming distance
``d`` of a query by multi-index hashing (M. Norouzi, A. Punjani, D. Fleet, *Fast Search in
Hamming Space with Multi-Index Hashing*, CVPR 2012): the 64 bits are cut into ``d + 1`` bands,
and two hashes within distance ``d`` agree exactly on at least one band (pigeonhole), so the
candidates are the entries that share a band; their true distance is then checked.

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

import numpy as np

from gbif_dl.dedupe.phash import HASH_BITS, hamming_many

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


def _bands(distance: int) -> list[tuple[int, int]]:
    """(shift, mask) of each of the ``distance + 1`` bands of a 64-bit hash."""
    count = distance + 1
    width, extra = divmod(HASH_BITS, count)
    bands = []
    shift = 0
    for i in range(count):
        size = width + (1 if i < extra else 0)
        bands.append((shift, (1 << size) - 1))
        shift += size
    return bands


class NearIndex:
    """The entries whose 64-bit hash is within ``distance`` bits of a query.

    Args:
        distance: the largest Hamming distance that counts as near (0..31).

    Example:
        >>> index = NearIndex(distance=2)
        >>> [index.add(h) for h in (0, 0b111, 0b11)]
        [0, 1, 2]
        >>> index.near(0b1)
        [(0, 1), (2, 1), (1, 2)]
    """

    def __init__(self, distance: int) -> None:
        if not 0 <= distance < HASH_BITS // 2:
            raise ValueError(f"distance must be in 0..{HASH_BITS // 2 - 1}; got {distance}")
        self.distance = distance
        self._bands = _bands(distance)
        # one sorted map for every band: a band's keys carry its number in their top byte
        # (a band is at most 32 bits wide unless it is the only one)
        self._keys = SortedKeys()
        self._hashes = np.zeros(1024, dtype=np.uint64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, value: int, entry: int | None = None) -> int:
        """Add ``value``; return its entry number (``entry`` or the next free one)."""
        if entry is None:
            entry = self._count
        if entry >= len(self._hashes):
            grown = np.zeros(max(2 * len(self._hashes), entry + 1), dtype=np.uint64)
            grown[: len(self._hashes)] = self._hashes
            self._hashes = grown
        self._hashes[entry] = np.uint64(value)
        self._count = max(self._count, entry + 1)
        for key in self._band_keys(value):
            self._keys.add(key, entry)
        return entry

    def _band_keys(self, value: int) -> list[int]:
        if len(self._bands) == 1:
            return [value]
        return [
            (band << 56) | ((value >> shift) & mask)
            for band, (shift, mask) in enumerate(self._bands)
        ]

    def add_many(self, values: np.ndarray, entries: np.ndarray) -> None:
        """Add ``values`` under ``entries`` (one sort per band)."""
        if not len(values):
            return
        top = int(entries.max()) + 1
        if top > len(self._hashes):
            grown = np.zeros(max(2 * len(self._hashes), top), dtype=np.uint64)
            grown[: len(self._hashes)] = self._hashes
            self._hashes = grown
        values = values.astype(np.uint64)
        self._hashes[entries] = values
        self._count = max(self._count, top)
        if len(self._bands) == 1:
            self._keys.add_many(values, entries)
            return
        keys = [
            (np.uint64(band) << np.uint64(56)) | ((values >> np.uint64(shift)) & np.uint64(mask))
            for band, (shift, mask) in enumerate(self._bands)
        ]
        self._keys.add_many(np.concatenate(keys), np.tile(entries, len(self._bands)))

    def near(self, value: int) -> list[tuple[int, int]]:
        """(entry, distance) of every entry within ``distance`` of ``value``, nearest first
        (ties: the earlier entry)."""
        found = self._keys.find_many(self._band_keys(value))
        if not found.size:
            return []
        ids = np.unique(found)
        distances = hamming_many(self._hashes[ids], value)
        close = distances <= self.distance
        ids, distances = ids[close], distances[close]
        order = np.lexsort((ids, distances))
        return [(int(ids[i]), int(distances[i])) for i in order]

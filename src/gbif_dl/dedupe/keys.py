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
        self._tail_keys: list[int] = []
        self._tail_ids: list[int] = []

    def __len__(self) -> int:
        return len(self._keys) + len(self._tail_keys)

    def add(self, key: int, entry: int) -> None:
        """Map ``key`` to ``entry`` too."""
        self._tail_keys.append(key)
        self._tail_ids.append(entry)
        if len(self._tail_keys) >= _TAIL:
            self._merge()

    def add_many(self, keys: np.ndarray, entries: np.ndarray) -> None:
        """Map each of ``keys`` to the entry at the same position (one sort)."""
        self._merge()
        all_keys = np.concatenate([self._keys, keys.astype(np.uint64)])
        all_ids = np.concatenate([self._ids, entries.astype(np.int64)])
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._ids = all_keys[order], all_ids[order]

    def _merge(self) -> None:
        if not self._tail_keys:
            return
        keys = np.array(self._tail_keys, dtype=np.uint64)
        ids = np.array(self._tail_ids, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys, ids = keys[order], ids[order]
        at = np.searchsorted(self._keys, keys, side="right")
        self._keys = np.insert(self._keys, at, keys)
        self._ids = np.insert(self._ids, at, ids)
        self._tail_keys.clear()
        self._tail_ids.clear()

    def find(self, key: int) -> list[int]:
        """The entries mapped from ``key``."""
        target = np.uint64(key)
        lo = int(np.searchsorted(self._keys, target, side="left"))
        hi = int(np.searchsorted(self._keys, target, side="right"))
        found = self._ids[lo:hi].tolist()
        if self._tail_keys:
            found += [e for k, e in zip(self._tail_keys, self._tail_ids, strict=True) if k == key]
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
        self._maps = [SortedKeys() for _ in self._bands]
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
        for (shift, mask), keys in zip(self._bands, self._maps, strict=True):
            keys.add((value >> shift) & mask, entry)
        return entry

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
        for (shift, mask), keys in zip(self._bands, self._maps, strict=True):
            keys.add_many((values >> np.uint64(shift)) & np.uint64(mask), entries)

    def near(self, value: int) -> list[tuple[int, int]]:
        """(entry, distance) of every entry within ``distance`` of ``value``, nearest first
        (ties: the earlier entry)."""
        candidates: set[int] = set()
        for (shift, mask), keys in zip(self._bands, self._maps, strict=True):
            candidates.update(keys.find((value >> shift) & mask))
        if not candidates:
            return []
        ids = np.fromiter(sorted(candidates), dtype=np.int64, count=len(candidates))
        distances = hamming_many(self._hashes[ids], value)
        close = distances <= self.distance
        ids, distances = ids[close], distances[close]
        order = np.lexsort((ids, distances))
        return [(int(ids[i]), int(distances[i])) for i in order]

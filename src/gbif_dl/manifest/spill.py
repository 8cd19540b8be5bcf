"""Sorted runs on disk: what the resume index and the manifest merge keep instead of memory.

Everything here keeps a bounded amount in memory whatever the number of records:

- :class:`RunFile`: a file of numpy records sorted by their first field (``key``, ``uint64``),
  read a block at a time; a lookup reads one block (``os.pread``, page cache, not this
  process's resident memory) found through a small in-memory fence (the first key of every
  :data:`FENCE` records: 16 bytes per 1,000 records);
- :class:`ExternalSorter`: records in any order in, sorted chunks out, through sorted runs of
  :data:`CHUNK` records and a block-wise k-way merge (:func:`merge_runs`);
- :class:`SpillMap`: ``uint64 -> small int`` (the latest value wins), an in-memory table of
  at most :data:`TABLE_SLOTS` slots spilled to sorted runs, which are merged pairwise as they
  grow (about log2(n / 87,381) runs for n keys).

The files are anonymous temporary files (:class:`SpillFiles`; ``TMPDIR`` chooses the disk):
they have no name, so they vanish when closed, and a killed process leaves nothing behind.

Example:
    >>> import numpy as np
    >>> with SpillFiles() as files:
    ...     sorter = ExternalSorter(np.dtype([("key", "u8"), ("pos", "u8")]), ("key", "pos"),
    ...                             files, chunk=4)
    ...     for start in range(0, 10, 3):
    ...         keys = np.arange(start, min(start + 3, 10), dtype=np.uint64) * 7 % 10
    ...         sorter.add(np.rec.fromarrays([keys, keys], dtype=sorter.dtype).view(np.ndarray))
    ...     [int(k) for chunk in sorter.sorted_chunks() for k in chunk["key"]]
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
"""

from __future__ import annotations

import array
import bisect
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import BinaryIO

import numpy as np

__all__ = [
    "CHUNK",
    "FENCE",
    "FILTER_BITS",
    "TABLE_SLOTS",
    "ExternalSorter",
    "KeyFilter",
    "RunFile",
    "SpillFiles",
    "SpillMap",
    "merge_runs",
    "sort_records",
]

#: Records per fence entry: a lookup reads one block of this many records.
FENCE = 256
#: Records read per run at a time by a merge.
BLOCK = 4096
#: Records sorted in memory at a time by :class:`ExternalSorter` (a run on disk each).
CHUNK = 1 << 16
#: Runs merged at once; more runs are first merged in groups of this many.
FAN_IN = 32
#: Slots of a :class:`SpillMap`'s in-memory table (``uint64`` key + ``uint8`` value each); the
#: table spills to a sorted run when 2/3 full.
TABLE_SLOTS = 1 << 17
_MAX_LOAD = 2 / 3


class SpillFiles:
    """Anonymous temporary files (no name on disk: :func:`tempfile.TemporaryFile`), closed
    together by :meth:`close`; a killed process leaves none behind.

    Example:
        >>> files = SpillFiles()
        >>> handle = files.new_file()
        >>> _ = handle.write(b"x")
        >>> files.close(), handle.closed
        (None, True)
    """

    def __init__(self) -> None:
        self._files: list[BinaryIO] = []

    def new_file(self) -> BinaryIO:
        """A new empty anonymous file, open for reading and writing."""
        handle: BinaryIO = tempfile.TemporaryFile(prefix="gbif-dl-spill-")  # noqa: SIM115
        self._files.append(handle)
        return handle

    def forget(self, handle: BinaryIO) -> None:
        """Close ``handle`` (its space is freed at once)."""
        handle.close()
        self._files = [f for f in self._files if f is not handle]

    def close(self) -> None:
        """Close every file (idempotent)."""
        for handle in self._files:
            handle.close()
        self._files = []

    def __enter__(self) -> SpillFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def sort_records(records: np.ndarray, order: Sequence[str]) -> np.ndarray:
    """``records`` sorted by the fields ``order`` (the first field first), stably.

    Example:
        >>> dtype = np.dtype([("key", "u8"), ("pos", "u8")])
        >>> records = np.array([(2, 0), (1, 5), (1, 3)], dtype=dtype)
        >>> sort_records(records, ("key", "pos"))["pos"].tolist()
        [3, 5, 0]
    """
    if len(records) < 2:
        return records
    return records[np.lexsort([records[name] for name in reversed(order)])]


class RunFile:
    """Records sorted by their ``key`` field on disk, with an in-memory fence for lookups.

    Two anonymous files: the records, and (for lookups) their keys alone, 8 bytes each, so a
    lookup reads one block of :data:`FENCE` keys (2 KiB) and, on a hit, the matching records.

    Example:
        >>> dtype = np.dtype([("key", "u8"), ("pos", "u8")])
        >>> with SpillFiles() as files:
        ...     keys = np.arange(1000, dtype=np.uint64) * 2
        ...     records = np.rec.fromarrays([keys, keys + 1], dtype=dtype).view(np.ndarray)
        ...     run = RunFile.write(files, [records], dtype)
        ...     run.find(998)["pos"].tolist(), run.find(999).size, len(run)
        ([999], 0, 1000)
    """

    def __init__(
        self,
        files: SpillFiles,
        records: BinaryIO,
        keys: BinaryIO | None,
        dtype: np.dtype,
        count: int,
        fence: np.ndarray,
    ) -> None:
        if dtype.names is None or dtype.fields is None or dtype.fields[dtype.names[0]][1] != 0:
            raise ValueError("a run's records start with their uint64 key")
        if dtype.itemsize % 8:
            raise ValueError("a run's records take a multiple of 8 bytes")
        self.files = files
        self.records = records
        self.keys = keys
        self.dtype = dtype
        self.count = count
        # a Python array: bisect searches it without numpy's per-call cost (~2 us)
        self.fence = array.array("Q", np.asarray(fence, dtype=np.uint64).tobytes())
        self.step = FENCE  # keys per fence entry, as written
        self._stride = dtype.itemsize // 8  # 8-byte words per record

    @classmethod
    def write(
        cls,
        files: SpillFiles,
        chunks: Iterable[np.ndarray],
        dtype: np.dtype,
        *,
        lookups: bool = True,
    ) -> RunFile:
        """Write ``chunks`` (records already in ``key`` order, one after the other) as records
        of ``dtype`` to a new file of ``files``, with their keys beside for :meth:`find` unless
        ``lookups`` is false (a run only merged); the fence is taken as they pass."""
        fence: list[np.ndarray] = []
        count = 0
        records = files.new_file()
        keys = files.new_file() if lookups else None
        for chunk in chunks:
            if not len(chunk):
                continue
            if chunk.dtype != dtype:  # (numpy drops a structure's padding when it joins)
                chunk = chunk.astype(dtype)
            first = (-count) % FENCE  # the first record of this chunk that starts a block
            chunk_keys = np.ascontiguousarray(chunk["key"], dtype=np.uint64)
            fence.append(chunk_keys[first::FENCE].copy())
            records.write(np.ascontiguousarray(chunk).tobytes())
            if keys is not None:
                keys.write(chunk_keys.tobytes())
            count += len(chunk)
        for handle in (records, keys):
            if handle is not None:
                handle.flush()  # the reads below go through the descriptor
        fence_keys = np.concatenate(fence) if fence else np.zeros(0, np.uint64)
        return cls(files, records, keys, dtype, count, fence_keys)

    def __len__(self) -> int:
        return self.count

    @property
    def fence_bytes(self) -> int:
        """Bytes of the in-memory fence."""
        return len(self.fence) * self.fence.itemsize

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Records ``start:stop``."""
        size = self.dtype.itemsize
        data = os.pread(self.records.fileno(), (stop - start) * size, start * size)
        return np.frombuffer(data, dtype=self.dtype)

    def find_words(self, key: int) -> list[tuple[int, ...]]:
        """The records whose ``key`` is ``key`` (usually none or one) as tuples of their 8-byte
        words (the first is the key): a block of keys read, and the records found.

        Plain Python (``bisect`` over the fence and over the block's keys, no numpy call): a
        lookup costs a few microseconds, most of it the reads from the page cache.
        """
        if self.keys is None:
            raise ValueError("this run was written without lookups")
        step = self.step
        records_fd, keys_fd = self.records.fileno(), self.keys.fileno()
        block = max(bisect.bisect_left(self.fence, key) - 1, 0)
        first = last = -1
        while block * step < self.count:
            start = block * step
            data = os.pread(keys_fd, (min(start + step, self.count) - start) * 8, start * 8)
            keys = memoryview(data).cast("Q")
            lo = bisect.bisect_left(keys, key)
            hi = bisect.bisect_right(keys, key, lo) if lo < len(keys) else lo
            if hi > lo:
                first = start + lo if first < 0 else first
                last = start + hi
            if hi < len(keys):  # a larger key follows: the group ends in this block
                break
            block += 1
        if first < 0:
            return []
        size, stride = self.dtype.itemsize, self._stride
        words = memoryview(os.pread(records_fd, (last - first) * size, first * size)).cast("Q")
        return [tuple(words[i : i + stride]) for i in range(0, len(words), stride)]

    def find(self, key: int) -> np.ndarray:
        """The records whose ``key`` is ``key``, as an array (see :meth:`find_words`)."""
        words = [word for record in self.find_words(key) for word in record]
        return np.frombuffer(array.array("Q", words).tobytes(), dtype=self.dtype)

    def blocks(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The records in order, ``size`` (default :data:`BLOCK`) at a time."""
        size = size if size is not None else BLOCK
        for start in range(0, self.count, size):
            yield self._read(start, min(start + size, self.count))

    def remove(self) -> None:
        """Close the files (anonymous: their space is freed)."""
        for handle in (self.records, self.keys):
            if handle is not None:
                self.files.forget(handle)


def merge_runs(runs: Sequence[RunFile], order: Sequence[str]) -> Iterator[np.ndarray]:
    """The records of ``runs`` (each sorted by ``order``) merged, in chunks sorted by ``order``;
    every record of one ``key`` is in the same chunk. Memory: a block per run (plus a group of
    equal keys, when one is longer than a block).

    Example:
        >>> dtype = np.dtype([("key", "u8")])
        >>> with SpillFiles() as files:
        ...     runs = [RunFile.write(files, [np.array(k, dtype=dtype)], dtype)
        ...             for k in ([(1,), (4,)], [(2,), (4,), (5,)])]
        ...     [chunk["key"].tolist() for chunk in merge_runs(runs, ("key",))]
        [[1, 2], [4, 4], [5]]
    """
    sources = [run.blocks() for run in runs]
    buffers = [np.zeros(0, run.dtype) for run in runs]
    live = [True] * len(runs)

    def refill(i: int) -> None:
        block = next(sources[i], None)
        if block is None:
            live[i] = False
        else:
            buffers[i] = np.concatenate([buffers[i], block]) if len(buffers[i]) else block

    for i in range(len(runs)):
        refill(i)
    while True:
        waiting = [i for i in range(len(runs)) if live[i]]
        if not waiting:
            rest = [buffer for buffer in buffers if len(buffer)]
            if rest:
                yield sort_records(np.concatenate(rest), order)
            return
        # below the smallest last key of the runs that have more: nothing smaller can follow
        bound = min(buffers[i]["key"][-1] for i in waiting)
        parts = []
        for i, buffer in enumerate(buffers):
            cut = int(np.searchsorted(buffer["key"], bound, "left"))
            if cut:
                parts.append(buffer[:cut])
                buffers[i] = buffer[cut:]
        if parts:
            yield sort_records(np.concatenate(parts), order)
        for i in waiting:
            if not len(buffers[i]) or buffers[i]["key"][-1] == bound:
                refill(i)


class ExternalSorter:
    """Sort records of ``dtype`` by ``order`` with bounded memory: :data:`CHUNK` records in
    memory, the rest in sorted runs (anonymous files of ``files``), merged :data:`FAN_IN` at a
    time as they accumulate (so a few dozen files at most are open, whatever the count).

    :meth:`add` takes arrays of records; :meth:`sorted_chunks` yields them sorted, every record
    of one ``key`` in the same chunk, and frees the runs afterwards.
    """

    def __init__(
        self,
        dtype: np.dtype,
        order: Sequence[str],
        files: SpillFiles,
        *,
        chunk: int | None = None,
    ) -> None:
        self.dtype = dtype
        self.order = tuple(order)
        self.files = files
        self.chunk = chunk if chunk is not None else CHUNK
        self.count = 0
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        self._levels: list[list[RunFile]] = []  # runs of CHUNK * FAN_IN ** level records

    def add(self, records: np.ndarray) -> None:
        """Take ``records`` (spilling a sorted run whenever :data:`CHUNK` records wait)."""
        if not len(records):
            return
        self._pending.append(records)
        self._pending_count += len(records)
        self.count += len(records)
        if self._pending_count >= self.chunk:
            self._spill()

    def _merged(self, runs: list[RunFile]) -> RunFile:
        merged = RunFile.write(self.files, merge_runs(runs, self.order), self.dtype, lookups=False)
        for run in runs:
            run.remove()
        return merged

    def _spill(self) -> None:
        if not self._pending:
            return
        records = sort_records(np.concatenate(self._pending), self.order)
        self._pending, self._pending_count = [], 0
        run = RunFile.write(self.files, [records], self.dtype, lookups=False)
        level = 0
        while True:
            if len(self._levels) == level:
                self._levels.append([])
            self._levels[level].append(run)
            if len(self._levels[level]) < FAN_IN:
                return
            run, self._levels[level] = self._merged(self._levels[level]), []
            level += 1

    def sorted_chunks(self) -> Iterator[np.ndarray]:
        """Every record added, sorted, in chunks (each ``key`` whole in one chunk)."""
        if not self._levels:  # all in memory
            if self._pending:
                yield sort_records(np.concatenate(self._pending), self.order)
            self._pending, self._pending_count = [], 0
            return
        self._spill()
        runs = sorted((run for level in self._levels for run in level), key=len)
        self._levels = []
        try:
            while len(runs) > FAN_IN:  # the smallest first, until one merge takes the rest
                group = runs[: len(runs) - FAN_IN + 1][:FAN_IN]
                runs = sorted([*runs[len(group) :], self._merged(group)], key=len)
            yield from merge_runs(runs, self.order)
        finally:
            for run in runs:
                run.remove()


#: Bits of a :class:`KeyFilter` (2 MiB).
FILTER_BITS = 1 << 24
_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads sequential keys over the bits too
_MASK64 = (1 << 64) - 1


class KeyFilter:
    """A fixed-size bit filter of ``uint64`` keys (one bit a key): "surely absent" or "maybe".

    Its size never grows (:data:`FILTER_BITS` bits), so memory stays flat; it only saves disk
    reads, never changes an answer: about 94% of lookups of absent keys skip the disk at a
    million keys, 45% at ten million, few beyond.

    Example:
        >>> keys = KeyFilter()
        >>> keys.add(np.array([5, 2**63 + 1], dtype=np.uint64))
        >>> 5 in keys, 2**63 + 1 in keys, 6 in keys
        (True, True, False)
    """

    def __init__(self) -> None:
        self.bits = bytearray(FILTER_BITS // 8)
        self._shift = 64 - (FILTER_BITS.bit_length() - 1)

    @property
    def nbytes(self) -> int:
        """Bytes in memory."""
        return len(self.bits)

    def add(self, keys: np.ndarray) -> None:
        """Mark ``keys``."""
        with np.errstate(over="ignore"):  # (the product wraps around, as intended)
            spread = keys.astype(np.uint64) * np.uint64(_GOLDEN)
        bit = (spread >> np.uint64(self._shift)).astype(np.int64)
        view = np.frombuffer(self.bits, dtype=np.uint8)
        np.bitwise_or.at(view, bit >> 3, (1 << (bit & 7)).astype(np.uint8))

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, int):
            return False
        bit = ((key * _GOLDEN) & _MASK64) >> self._shift
        return bool(self.bits[bit >> 3] & (1 << (bit & 7)))


#: A spilled entry of a :class:`SpillMap`: its key, the run it was spilled in, its value.
SPILLED = np.dtype(
    {
        "names": ["key", "seq", "value"],
        "formats": ["u8", "u4", "u1"],
        "offsets": [0, 8, 12],
        "itemsize": 16,
    }
)
#: Where a SPILLED record's value byte (byte 12) sits in its second 8-byte word.
_VALUE_SHIFT = 32 if sys.byteorder == "little" else 24


class SpillMap:
    """``uint64 key (not 0) -> int value (0..255)``, the latest value written wins, with a
    bounded in-memory table (:data:`TABLE_SLOTS` slots at most, 9 bytes each) spilled to sorted
    runs on disk (see the module docstring). A lookup probes the table, then one block of each
    run, newest first.

    Example:
        >>> with SpillFiles() as files:
        ...     states = SpillMap(files, slots=1024)
        ...     for key in range(1, 3001):
        ...         states[key] = key % 7
        ...     states[5] = 200
        ...     states.get(5), states.get(2999), states.get(4000), states.runs > 0
        (200, 3, None, True)
    """

    def __init__(self, files: SpillFiles, *, slots: int | None = None) -> None:
        self.files = files
        self.max_slots = slots if slots is not None else TABLE_SLOTS
        self._keys = np.zeros(min(1024, self.max_slots), dtype=np.uint64)
        self._values = np.zeros(len(self._keys), dtype=np.uint8)
        self._used = 0
        self._runs: list[RunFile] = []  # oldest first
        self._spilled: KeyFilter | None = None  # the keys of the runs (made at the first spill)
        self._spills = 0

    @property
    def runs(self) -> int:
        """Sorted runs on disk."""
        return len(self._runs)

    @property
    def nbytes(self) -> int:
        """Bytes in memory: the table and the runs' fences."""
        fences = sum(run.fence_bytes for run in self._runs)
        spilled = self._spilled.nbytes if self._spilled is not None else 0
        return int(self._keys.nbytes + self._values.nbytes + fences + spilled)

    def _slot(self, key: int) -> int:
        """The slot of ``key`` in the table, or of the empty slot where it would go."""
        keys = self._keys
        mask = len(keys) - 1
        slot = key & mask
        while True:
            found = int(keys[slot])
            if found == key or found == 0:
                return slot
            slot = (slot + 1) & mask

    def get(self, key: int, default: int | None = None) -> int | None:
        """The latest value of ``key``, or ``default``."""
        slot = self._slot(key)
        if int(self._keys[slot]) == key:
            return int(self._values[slot])
        if self._spilled is None or key not in self._spilled:
            return default
        for run in reversed(self._runs):
            found = run.find_words(key)
            if found:  # (one record a key in a run) the value: byte 12, in the second word
                return (found[-1][1] >> _VALUE_SHIFT) & 0xFF
        return default

    def __setitem__(self, key: int, value: int) -> None:
        slot = self._slot(key)
        if int(self._keys[slot]) != key:
            if self._used + 1 > len(self._keys) * _MAX_LOAD:
                if len(self._keys) < self.max_slots:
                    self._resize(len(self._keys) * 2)
                else:
                    self.spill()
                slot = self._slot(key)
            self._keys[slot] = key
            self._used += 1
        self._values[slot] = value

    def _resize(self, slots: int) -> None:
        live = self._keys != 0
        keys, values = self._keys[live], self._values[live]
        self._keys = np.zeros(slots, dtype=np.uint64)
        self._values = np.zeros(slots, dtype=np.uint8)
        self._used = 0
        for key, value in zip(keys.tolist(), values.tolist(), strict=True):
            slot = self._slot(key)
            self._keys[slot] = key
            self._values[slot] = value
            self._used += 1

    def spill(self) -> None:
        """Write the table to a sorted run (and merge runs of about the same size)."""
        live = self._keys != 0
        if not live.any():
            return
        records = np.zeros(int(live.sum()), dtype=SPILLED)
        records["key"], records["value"] = self._keys[live], self._values[live]
        records["seq"] = self._spills
        self._spills += 1
        if self._spilled is None:
            self._spilled = KeyFilter()
        self._spilled.add(records["key"])
        records = sort_records(records, ("key",))
        self._runs.append(RunFile.write(self.files, [records], SPILLED))
        self._keys[:] = 0
        self._used = 0
        while len(self._runs) > 1 and len(self._runs[-1]) * 2 >= len(self._runs[-2]):
            self._merge_last_two()

    def _merge_last_two(self) -> None:
        older, newer = self._runs[-2:]

        def latest() -> Iterator[np.ndarray]:
            for chunk in merge_runs([older, newer], ("key", "seq")):
                last = np.ones(len(chunk), dtype=bool)
                last[:-1] = chunk["key"][1:] != chunk["key"][:-1]
                yield chunk[last]

        merged = RunFile.write(self.files, latest(), SPILLED)
        older.remove()
        newer.remove()
        self._runs[-2:] = [merged]

    def items(self) -> Iterator[tuple[int, int]]:
        """Every ``(key, latest value)``: the runs' (merged into one first), then the table's."""
        while len(self._runs) > 1:
            self._merge_last_two()
        live = self._keys != 0
        table = dict(zip(self._keys[live].tolist(), self._values[live].tolist(), strict=True))
        for run in self._runs:
            for block in run.blocks():
                for key, value in zip(block["key"].tolist(), block["value"].tolist(), strict=True):
                    if key not in table:
                        yield key, value
        yield from table.items()

    def close(self) -> None:
        """Remove the runs."""
        for run in self._runs:
            run.remove()
        self._runs = []

"""Vectorised column helpers of the archive reader: arrow <-> numpy, trimming, keys, sets.

Everything here works on whole columns (arrow arrays or numpy arrays) and knows nothing of
archives: the occurrence, join and pass modules build on it.

Example:
    >>> to_keys(pa.array(["7", "x"])).tolist()[0]
    7
    >>> Codes().encode(pa.array(["a", "", "a"])).tolist()
    [1, 0, 1]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "Codes",
    "MediaPositions",
    "RowBits",
    "SortedSet",
    "arrow_int64",
    "drop",
    "equals",
    "lengths",
    "lowest_per_group",
    "mask",
    "numpy_view",
    "pick",
    "simple_urls",
    "sorted_unique",
    "string_array",
    "take_column",
    "to_keys",
    "trim",
    "trim_ids",
]

_MASK64 = (1 << 64) - 1
#: URLs that are certainly valid http(s) URLs; the rest go through records.is_http_url.
SIMPLE_URL = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9._-]+(:[0-9]{1,5})?([/?#][^\x00-\x1f\x7f]*)?$"
# The same without the scan for control characters, which ``simple_urls`` does on the bytes.
_SIMPLE_URL_START = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9._-]+(:[0-9]{1,5})?([/?#]|$)"
# A URL's scheme, host and port up to the first "/": any URL starting with such a text
# matches ``_SIMPLE_URL_START`` (ASCII only: no case folding of other letters into the class).
_URL_START = re.compile(r"[hH][tT][tT][pP][sS]?://[A-Za-z0-9._-]+(:[0-9]{1,5})?/", re.ASCII)

_NUMPY_TYPES: dict[pa.DataType, np.dtype[Any]] = {
    pa.int64(): np.dtype(np.int64),
    pa.int32(): np.dtype(np.int32),
    pa.uint8(): np.dtype(np.uint8),
}


def numpy_view(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-width arrow array without nulls as a zero-copy numpy view.

    (``Array.to_numpy`` would import pandas, when installed, for 40 MB and a fraction of a
    second; these arrays never need it.)

    Example:
        >>> numpy_view(pa.array([1, 2], pa.int64())).tolist()
        [1, 2]
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    dtype = _NUMPY_TYPES[values.type]
    data = values.buffers()[1]
    if data is None:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(
        data, dtype=dtype, count=len(values), offset=values.offset * dtype.itemsize
    )


def arrow_int64(values: np.ndarray) -> pa.Array:
    """An integer numpy array as an int64 arrow array (zero-copy, without pandas).

    Example:
        >>> arrow_int64(np.array([3])).to_pylist()
        [3]
    """
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), values.size, [None, pa.py_buffer(values)])


def take_column(batch: pa.RecordBatch, name: str, take: pa.Array) -> pa.Array:
    """Column ``name`` of ``batch`` at the rows ``take``; empty strings where the file has no
    such column.

    Example:
        >>> take_column(pa.record_batch({"a": ["x"]}), "b", arrow_int64(np.zeros(1))).to_pylist()
        ['']
    """
    if name in batch.schema.names:
        return batch.column(name).take(take)
    offsets = pa.py_buffer(np.zeros(len(take) + 1, dtype=np.int32))
    return pa.Array.from_buffers(pa.string(), len(take), [None, offsets, pa.py_buffer(b"")])


def concat_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One record batch of ``batches`` (the same schema), in order.

    Example:
        >>> concat_batches([pa.record_batch({"a": [1]})] * 2).num_rows
        2
    """
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def trim(strings: pa.Array) -> pa.Array:
    """``pc.utf8_trim_whitespace``, skipped when no value can start or end with whitespace.

    A value can only if its first or last byte is an ASCII control or space, or not ASCII
    (every other whitespace character is multi-byte); most columns have none, and the check
    reads two bytes per value where the trim copies them all.

    Example:
        >>> trim(pa.array([" a ", "b"])).to_pylist()
        ['a', 'b']
    """
    if not isinstance(strings, pa.StringArray) or strings.null_count or not len(strings):
        return pc.utf8_trim_whitespace(strings)
    offsets_buffer, data_buffer = strings.buffers()[1:3]
    if data_buffer is None or not data_buffer.size:
        return strings
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[strings.offset :][: len(strings) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    # the first and last byte of each value; an empty value reads a neighbour's byte, which
    # at worst sends the column through the real trim
    first = data[np.minimum(offsets[:-1], data.size - 1)]
    last = data[np.maximum(offsets[1:] - 1, 0)]
    # as uint8, ``byte - 0x21`` wraps the controls and space (<= 0x20) above 0xDE: one test
    # finds them and the non-ASCII bytes (>= 0x7F)
    if (first - np.uint8(0x21) >= 0x5E).any() or (last - np.uint8(0x21) >= 0x5E).any():
        return pc.utf8_trim_whitespace(strings)
    return strings


def trim_ids(raw: pa.Array) -> tuple[pa.Array, int]:
    """Ids trimmed, and how many had stray whitespace.

    Example:
        >>> ids, stray = trim_ids(pa.array([" 1", "2"]))
        >>> ids.to_pylist(), stray
        (['1', '2'], 1)
    """
    ids = trim(raw)
    return ids, 0 if ids is raw else len(raw) - int(pc.sum(pc.equal(raw, ids)).as_py() or 0)


def mask(values: pa.Array) -> np.ndarray:
    """A boolean arrow array (no nulls) as numpy.

    Example:
        >>> mask(pa.array([True, False])).tolist()
        [True, False]
    """
    return numpy_view(pc.cast(values, pa.uint8())).view(np.bool_)


def lengths(strings: pa.Array) -> np.ndarray:
    """Character lengths of a string array (no nulls) as numpy.

    Example:
        >>> lengths(pa.array(["", "ab"])).tolist()
        [0, 2]
    """
    return numpy_view(pc.utf8_length(strings))


def equals(strings: pa.Array, value: str) -> np.ndarray:
    """``strings == value`` as numpy, through the (few) distinct values.

    Example:
        >>> equals(pa.array(["a", "b", "a"]), "a").tolist()
        [True, False, True]
    """
    encoded = pc.dictionary_encode(strings)
    distinct = encoded.dictionary.to_pylist()
    if value not in distinct:
        return np.zeros(len(strings), dtype=bool)
    return numpy_view(encoded.indices) == distinct.index(value)


def simple_urls(urls: pa.Array) -> np.ndarray:
    """Which URLs certainly are valid http(s) URLs (``SIMPLE_URL``); the rest need a look.

    Control characters are looked for in the batch's bytes at once (almost never there).

    Example:
        >>> simple_urls(pa.array(["https://x.org/a.jpg", "ftp://x.org/a"])).tolist()
        [True, False]
    """
    data = urls.buffers()[2]
    if data is None:
        return np.zeros(len(urls), dtype=bool)
    raw = np.frombuffer(data, dtype=np.uint8)
    if np.any((raw < 0x20) | (raw == 0x7F)):
        return mask(pc.match_substring_regex(urls, SIMPLE_URL))
    simple = _start_like_the_first(urls)
    rest = np.flatnonzero(~simple)
    if rest.size:
        others = urls.take(arrow_int64(rest))
        simple[rest] = mask(pc.match_substring_regex(others, _SIMPLE_URL_START))
    return simple


def _start_like_the_first(urls: pa.Array) -> np.ndarray:
    """The URLs that start like the batch's first one (its scheme, host and port checked here
    once): valid without the regex. A batch's URLs mostly share them (measured on a
    300,000-occurrence archive, five same-run A/Bs of 5-14 rounds: 1.4-8.2% less
    main-process CPU, median 4.5%)."""
    simple = np.zeros(len(urls), dtype=bool)
    start = _URL_START.match(urls[0].as_py()) if len(urls) else None
    if start is not None:
        simple[:] = mask(pc.starts_with(urls, start.group(0)))
    return simple


def pick(values: list[Any], index: np.ndarray) -> list[Any]:
    """``values[i]`` for each ``i`` in ``index``.

    A table no longer than the index (distinct values, a dictionary) is gathered by numpy in
    one C loop, 2.4 times as fast as item by item for 500 values and 16,000 picks.

    Example:
        >>> pick(["a", "b", "c"], np.array([2, 2, 0]))
        ['c', 'c', 'a']
    """
    if len(values) > index.size:
        return list(map(values.__getitem__, index.tolist()))
    table = np.fromiter(values, dtype=object, count=len(values))
    picked: list[Any] = table[index].tolist()
    return picked


def to_keys(ids: pa.Array) -> np.ndarray:
    """Occurrence ids -> int64 keys: the integer itself, or a stable 63-bit hash of the text.

    Example:
        >>> to_keys(pa.array(["12"])).tolist(), int(to_keys(pa.array(["x-1"]))[0]) < 0
        ([12], True)
    """
    try:
        return numpy_view(pc.cast(ids, pa.int64()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    keys = np.empty(len(ids), dtype=np.int64)
    for i, text in enumerate(ids.to_pylist()):
        try:
            keys[i] = int(text)
        except (ValueError, OverflowError):
            value = 1469598103934665603
            for byte in text.encode("utf-8", "surrogatepass"):
                value = ((value ^ byte) * 1099511628211) & _MASK64
            keys[i] = -1 - (value >> 1)  # negative: never equal to a GBIF integer id
    return keys


class Codes:
    """Global dictionary encoding of one string column, batch by batch (code 0 is ``""``).

    Example:
        >>> codes = Codes()
        >>> codes.encode(pa.array(["x", "y"])).tolist(), codes.values
        ([1, 2], ['', 'x', 'y'])
    """

    __slots__ = ("_strings", "index", "values")

    def __init__(self) -> None:
        self.values: list[str] = [""]
        self.index: dict[str, int] = {"": 0}
        self._strings = string_array([""])  # ``values`` as arrow, grown when asked

    def code(self, value: str) -> int:
        """The code of ``value``, added to the dictionary if it is new."""
        code = self.index.get(value)
        if code is None:
            code = self.index[value] = len(self.values)
            self.values.append(value)
        return code

    def extend(self, values: Iterable[str]) -> None:
        """Append ``values`` (new to this dictionary, in code order): a mirror of another."""
        for value in values:
            self.index[value] = len(self.values)
            self.values.append(value)

    def encode(self, column: pa.Array) -> np.ndarray:
        """The codes (int32) of a string column, the dictionary grown by its new values."""
        encoded = pc.dictionary_encode(column)
        uniques = encoded.dictionary.to_pylist()
        mapping = np.fromiter(map(self.code, uniques), dtype=np.int32, count=len(uniques))
        return mapping[numpy_view(encoded.indices)]

    def arrow(self, codes: np.ndarray) -> pa.Array:
        """The strings of ``codes`` as an arrow array (``""`` for code 0).

        Example:
            >>> codes = Codes(); _ = codes.encode(pa.array(["x"]))
            >>> codes.arrow(np.array([1, 0])).to_pylist()
            ['x', '']
        """
        if len(self._strings) < len(self.values):
            new = string_array(self.values[len(self._strings) :])
            self._strings = pa.concat_arrays([self._strings, new])
        return self._strings.take(arrow_int64(codes))


def string_array(values: list[str]) -> pa.Array:
    """Python strings as an arrow string array, built from their bytes (``pa.array`` would
    import pandas, when installed, for 40 MB; see :func:`numpy_view`).

    Example:
        >>> string_array(["a", "", "bc"]).to_pylist()
        ['a', '', 'bc']
    """
    encoded = [value.encode("utf-8", "surrogatepass") for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, encoded), np.int32, len(encoded)), out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-d integer array by sorting (numpy's hash-based unique is slower).

    Example:
        >>> sorted_unique(np.array([3, 1, 3])).tolist()
        [1, 3]
    """
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def lowest_per_group(groups: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the lowest ``rank`` of each value of ``groups``; of equal
    ranks, the first. Linear when each group is one run (media follow their occurrence).

    Example:
        >>> lowest_per_group(np.array([0, 0, 1]), np.array([5, 2, 9], dtype=np.uint64)).tolist()
        [1, 2]
    """
    if bool(np.all(groups[1:] >= groups[:-1])):  # sorted runs
        change = groups[1:] != groups[:-1]
        if change.all():  # one row per group
            return np.arange(groups.size)
        starts = np.flatnonzero(np.concatenate([[True], change]))
        group = np.cumsum(np.concatenate([[0], change]))
        lowest = np.flatnonzero(rank == np.minimum.reduceat(rank, starts)[group])
        firsts = np.ones(lowest.size, dtype=bool)
        np.not_equal(group[lowest[1:]], group[lowest[:-1]], out=firsts[1:])
        return lowest[firsts]
    order = np.lexsort((rank, groups))  # stable: of equal ranks, the first
    ordered = groups[order]
    head = np.ones(order.size, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=head[1:])
    return np.sort(order[head])


def drop(keep: np.ndarray, where: np.ndarray, skipped: Counter[str], reason: str) -> None:
    """Clear ``keep`` at ``where`` and count the rows that were still kept under ``reason``.

    Example:
        >>> keep, seen = np.ones(3, bool), Counter()
        >>> drop(keep, np.array([True, False, True]), seen, "license"); seen["license"]
        2
    """
    hit = keep & where
    n = int(hit.sum())
    if n:
        skipped[reason] += n
        keep &= ~where


class SortedSet:
    """A growing set of int64 values kept as a few sorted arrays, merged like a binary counter.

    Eight bytes per member and no Python object per member: a batch is sorted once (which
    also finds its own repeats) and searched for in each array (``searchsorted``).

    Example:
        >>> seen = SortedSet()
        >>> seen.add(np.array([5, 3, 5])).tolist(), seen.add(np.array([3, 4])).tolist()
        ([True, True, False], [False, True])
    """

    __slots__ = ("levels",)

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Which of ``values`` are members.

        Example:
            >>> SortedSet().contains(np.array([1])).tolist()
            [False]
        """
        member = np.zeros(values.size, dtype=bool)
        for level in self.levels:
            at = np.minimum(np.searchsorted(level, values), level.size - 1)
            member |= level[at] == values
        return member

    def add(self, values: np.ndarray) -> np.ndarray:
        """Add ``values``; True where a value is new: not a member yet, and the first of
        its equal values in ``values``."""
        order = np.argsort(values, kind="stable")  # equal values keep their input order
        needles = values[order]
        new = np.ones(values.size, dtype=bool)
        np.not_equal(needles[1:], needles[:-1], out=new[1:])
        if self.levels:
            new &= ~self.contains(needles)
        merged = needles[new]  # sorted, distinct
        while self.levels and self.levels[-1].size <= 2 * merged.size:
            merged = np.concatenate([self.levels.pop(), merged])
            merged.sort(kind="stable")  # in place: two sorted runs, merged
        if merged.size:
            self.levels.append(merged)
        first = np.empty(values.size, dtype=bool)
        first[order] = new
        return first


class RowBits:
    """A bitmap of multimedia row numbers (the rows already yielded as records).

    Example:
        >>> bits = RowBits(); bits.add(np.array([3, 9]))
        >>> bits.contains(np.array([3, 4, 9])).tolist()
        [True, False, True]
    """

    __slots__ = ("bits",)

    def __init__(self) -> None:
        self.bits = np.zeros(1 << 12, dtype=np.uint8)

    def add(self, rows: np.ndarray) -> None:
        """Remember ``rows``."""
        if not rows.size:
            return
        need = int(rows.max() >> 3) + 1
        if need > self.bits.size:
            grown = np.zeros(max(need, 2 * self.bits.size), dtype=np.uint8)
            grown[: self.bits.size] = self.bits
            self.bits = grown
        np.bitwise_or.at(self.bits, rows >> 3, np.left_shift(1, rows & 7).astype(np.uint8))

    def contains(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` were added."""
        byte = rows >> 3
        inside = byte < self.bits.size
        found = np.zeros(rows.size, dtype=bool)
        found[inside] = (self.bits[byte[inside]] >> (rows[inside] & 7).astype(np.uint8)) & 1 == 1
        return found

    def any(self) -> bool:
        """Whether any row was added."""
        return bool(self.bits.any())


class MediaPositions:
    """Each multimedia row's place among its occurrence's rows (0-based, in file order).

    Rows come batch by batch as occurrence keys (the rows with an id, in file order); the count
    of the last occurrence runs on into the next batch. An occurrence whose rows come back
    after another's (a second run of its key) is told apart in one of two ways: with
    ``keep_runs`` every run is remembered (key and length) and :meth:`finish` gives where each
    run's count starts; else the keys of the runs are kept in a set and :meth:`add` reports
    the repeat (the streaming join then hands over to the three passes).

    Example:
        >>> places = MediaPositions(keep_runs=True)
        >>> places.add(np.array([7, 7, 8]))[0].tolist(), places.add(np.array([8, 7]))[0].tolist()
        ([0, 1, 0], [1, 0])
        >>> places.finish().tolist()  # runs 7, 8, 7: the second run of 7 starts at 2
        [0, 0, 2]
    """

    __slots__ = ("count", "key", "run_keys", "run_lengths", "runs", "seen")

    def __init__(self, *, keep_runs: bool) -> None:
        self.key: int | None = None  # the last run's key, and its rows so far
        self.count = 0
        self.runs = 0  # runs seen (the last one may go on)
        self.run_keys: list[np.ndarray] | None = [] if keep_runs else None
        self.run_lengths: list[np.ndarray] = []
        self.seen: SortedSet | None = None if keep_runs else SortedSet()

    def add(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """Positions (int64) of the rows ``keys`` within their runs, counted on from the last
        batch's last run; each row's run number (int64); whether a run repeats the key of an
        earlier one (always False with ``keep_runs``)."""
        n = keys.size
        if not n:
            return np.empty(0, np.int64), np.empty(0, np.int64), False
        change = np.empty(n, dtype=bool)
        change[0] = self.key is None or int(keys[0]) != self.key
        np.not_equal(keys[1:], keys[:-1], out=change[1:])
        starts = np.flatnonzero(change)
        run = np.cumsum(change) - 1  # -1: rows that continue the last batch's run
        continued = run < 0
        begin = starts[np.maximum(run, 0)] if starts.size else np.zeros(n, np.int64)
        begin[continued] = 0
        position = np.arange(n, dtype=np.int64) - begin
        position[continued] += self.count
        numbers = run + self.runs
        going_on = int(starts[0]) if starts.size else n
        if going_on and self.run_lengths:
            self.run_lengths[-1][-1] += going_on
        repeated = False
        if starts.size:
            ends = np.append(starts[1:], n)
            self.run_lengths.append((ends - starts).astype(np.int64))
            if self.run_keys is not None:
                self.run_keys.append(keys[starts])
            else:
                assert self.seen is not None
                self.run_lengths = self.run_lengths[-1:]  # only the last run's length is needed
                repeated = not bool(self.seen.add(keys[starts]).all())
            self.count = n - int(starts[-1])
        else:
            self.count += n
        self.runs += starts.size
        self.key = int(keys[-1])
        return position, numbers, repeated

    def finish(self) -> np.ndarray | None:
        """Where the count of each run starts (the rows of its key in earlier runs), by run
        number; ``None`` when no key had two runs (the positions given are final)."""
        if not self.run_keys:
            return None
        keys = np.concatenate(self.run_keys)
        order = np.argsort(keys, kind="stable")  # a key's runs stay in file order
        ordered = keys[order]
        if not bool(np.any(ordered[1:] == ordered[:-1])):
            return None
        lengths = np.concatenate(self.run_lengths)[order]
        before = np.cumsum(lengths) - lengths  # rows of all runs before, in this order
        head = np.ones(order.size, dtype=bool)
        np.not_equal(ordered[1:], ordered[:-1], out=head[1:])
        group_start = np.flatnonzero(head)[np.cumsum(head) - 1]
        base = np.empty(order.size, dtype=np.int64)
        base[order] = before - before[group_start]
        return base

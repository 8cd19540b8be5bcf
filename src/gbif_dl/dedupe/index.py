"""What the run has stored, by content: exact (sha256) and near (dHash) lookups, thread-safe.

The run's store threads ask :meth:`ContentIndex.claim` before writing a fetched image:

- the same bytes as a stored (or being stored) file: a :data:`~gbif_dl.manifest.DUPLICATE`,
  not written; its row names the kept file (``duplicate_of``);
- within the near distance of a stored file: with ``drop_near_duplicates`` a
  :data:`~gbif_dl.manifest.NEAR_DUPLICATE`, not written; else stored in the neighbour's split
  (``duplicate_of`` names the neighbour), and the occurrence's other media follow it there;
- else stored where its split says.

It is loaded once from the manifest and journal (every stored file of earlier runs) and kept
compact: per stored file an 8-byte sha256 prefix, an 8-byte dHash, a split byte and its path;
the exact lookup is a binary search over sorted prefixes (:class:`~gbif_dl.dedupe.keys.SortedKeys`),
the near one multi-index hashing (:class:`~gbif_dl.dedupe.keys.NearIndex`). Two different
files share a 64-bit sha256 prefix with probability about 3e-8 for a million files.

Example:
    >>> index = ContentIndex(distance=4)
    >>> first = index.claim({"url": "http://h/a", "subset": "train"}, "ab" * 32, 0b1111)
    >>> first.status, first.subset
    ('success', 'train')
    >>> index.complete(first, "train/x/a.jpg")
    >>> again = index.claim({"url": "http://h/b", "subset": "test"}, "ab" * 32, 0b1111)
    >>> again.status, again.duplicate_of
    ('duplicate', 'train/x/a.jpg')
    >>> near = index.claim({"url": "http://h/c", "subset": "test", "gbifID": "9"}, "cd" * 32, 0b111)
    >>> near.status, near.subset, near.duplicate_of
    ('success', 'train', 'train/x/a.jpg')
    >>> index.follow({"url": "http://h/d", "subset": "test", "gbifID": "9"})["subset"]
    'train'
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.dedupe.keys import NearIndex, SortedKeys
from gbif_dl.manifest import (
    DUPLICATE,
    JOURNAL_NAME,
    MANIFEST_NAME,
    NEAR_DUPLICATE,
    SUCCESS,
    iter_manifest,
    journal_blocks,
    latest_rows,
)
from gbif_dl.manifest.table import TableSource

__all__ = ["Claim", "ContentIndex", "hex64", "sha_key"]

_COLUMNS = ("url", "status", "path", "subset", "gbifID", "sha256", "phash", "duplicate_of")


#: ASCII byte -> its hex digit value (255: not a hex digit).
_HEX = np.full(256, 255, dtype=np.uint8)
for _digit, _char in enumerate("0123456789abcdef"):
    _HEX[ord(_char)] = _HEX[ord(_char.upper())] = _digit


def hex64(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The first 16 hex digits of each cell of ``column`` as ``uint64`` (vectorised), and
    which cells had them (null, short or not hex: False).

    Example:
        >>> values, valid = hex64(pa.array(["00000000000000ff", None, "zz", "10" * 32]))
        >>> values[valid].tolist(), valid.tolist()
        ([255, 1157442765409226768], [True, False, False, True])
    """
    text = pc.fill_null(column, "")
    long_enough = np.asarray(pc.greater_equal(pc.utf8_length(text), 16), dtype=bool)
    head = pc.if_else(pa.array(long_enough), pc.utf8_slice_codeunits(text, 0, 16), "0" * 16)
    if isinstance(head, pa.ChunkedArray):
        head = pa.concat_arrays(head.chunks) if head.num_chunks else pa.array([], pa.string())
    head = head.cast(pa.large_string())
    count = len(head)
    if not count:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    offsets = np.frombuffer(head.buffers()[1], dtype=np.int64)[head.offset : head.offset + 2]
    data = np.frombuffer(head.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + 16 * count]
    digits = _HEX[data.reshape(count, 16)]
    valid = long_enough & (digits != 255).all(axis=1)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    values = (digits.astype(np.uint64) << shifts).sum(axis=1, dtype=np.uint64)
    return values, valid


def sha_key(sha256_hex: str) -> int:
    """The 64-bit lookup key of a sha256 (its first 8 bytes).

    Example:
        >>> sha_key("00" * 7 + "ff" + "00" * 24)
        255
    """
    return int(sha256_hex[:16], 16)


@dataclass
class Claim:
    """The decision for one fetched image.

    Attributes:
        status: SUCCESS (store it), DUPLICATE or NEAR_DUPLICATE (do not).
        subset: the split to store it in (may differ from the record's: its neighbour's).
        duplicate_of: the kept file it duplicates, or the neighbour whose split it follows.
        entry: the index entry reserved for it (SUCCESS only), completed with its path.
        released: the stream of a file of this run that this copy makes a placeholder (its
            bytes now stand behind ``placeholders`` occurrences): the end-of-run pass excludes
            that file, so its stream's quota slot is free again (once per file).
    """

    status: str
    subset: str | None = None
    duplicate_of: str | None = None
    entry: int | None = None
    released: str | None = None


class _Entries:
    """The path and split of each entry: loaded rows as Arrow text (as in the manifest, about
    the path's length a row) and split codes (2 bytes a row); this run's in small lists."""

    def __init__(self) -> None:
        self._chunks: list[pa.Array] = []
        self._base: pa.Array | None = None
        self._base_len = 0
        self._changed: dict[int, str | None] = {}  # loaded entries whose path changed
        self._new: list[str | None] = []
        self._names: list[str | None] = [None]  # split code -> name
        self._codes: dict[str | None, int] = {None: 0}
        self._splits = np.zeros(1024, dtype=np.uint16)
        #: this run's entries: the stream (a code into ``_names``) and the occurrence (a
        #: nonzero key, 0: none) of the record that stored each
        self._streams = np.zeros(1024, dtype=np.uint16)
        self._occurrences = np.zeros(1024, dtype=np.int64)

    def __len__(self) -> int:
        return self._base_len + len(self._new)

    def _code(self, split: str | None) -> int:
        code = self._codes.get(split)
        if code is None:
            code = self._codes[split] = len(self._names)
            self._names.append(split)
        return code

    def _grow(self, size: int) -> None:
        if size > len(self._splits):
            new = max(2 * len(self._splits), size)
            self._splits = _grown(self._splits, new)
            self._streams = _grown(self._streams, new)
            self._occurrences = _grown(self._occurrences, new)

    def extend(self, paths: pa.ChunkedArray, splits: pa.ChunkedArray) -> None:
        """Add loaded rows (before any :meth:`append`)."""
        start = len(self)
        self._chunks.extend(paths.cast(pa.large_string()).chunks)
        self._base_len += len(paths)
        self._base = None
        self._grow(len(self))
        encoded = pa.concat_arrays(splits.chunks).dictionary_encode()
        codes = np.array([self._code(name) for name in encoded.dictionary.to_pylist()] + [0])
        indices = np.asarray(pc.fill_null(encoded.indices, len(codes) - 1), dtype=np.int64)
        self._splits[start : len(self)] = codes[indices]

    def append(self, path: str | None, split: str | None) -> int:
        entry = len(self)
        self._new.append(path)
        self._grow(entry + 1)
        self._splits[entry] = self._code(split)
        return entry

    def set_origin(self, entry: int, stream: str | None, occurrence: int) -> None:
        """The stream and the occurrence key of the record that stores ``entry``."""
        self._streams[entry] = self._code(stream)
        self._occurrences[entry] = occurrence

    def stream(self, entry: int) -> str | None:
        return self._names[int(self._streams[entry])]

    def occurrence(self, entry: int) -> int:
        return int(self._occurrences[entry])

    def path(self, entry: int) -> str | None:
        if entry >= self._base_len:
            return self._new[entry - self._base_len]
        if entry in self._changed:
            return self._changed[entry]
        if self._base is None:
            self._base = pa.concat_arrays(self._chunks)
            self._chunks = [self._base]
        value = self._base[entry].as_py()
        return str(value) if value is not None else None

    def set_path(self, entry: int, path: str | None) -> None:
        if entry >= self._base_len:
            self._new[entry - self._base_len] = path
        else:
            self._changed[entry] = path

    def split(self, entry: int) -> str | None:
        return self._names[int(self._splits[entry])]

    def set_split(self, entry: int, split: str | None) -> None:
        self._splits[entry] = self._code(split)


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    grown = np.zeros(size, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _occurrence_key(record: Mapping[str, Any]) -> int:
    """A nonzero key of ``record``'s occurrence (its gbifID), 0 when it has none."""
    gbif_id = record.get("gbifID")
    if gbif_id in (None, ""):
        return 0
    return hash(str(gbif_id)) | 1


class ContentIndex:
    """The stored files by content; every method is safe to call from several threads.

    Args:
        distance: the near-duplicate distance (bits of the 64-bit dHash).
        drop_near: near duplicates are not stored (``NEAR_DUPLICATE``).
        placeholders: the number of occurrences whose URLs give the same bytes that makes
            a placeholder (None: none are looked for); a copy that reaches it names the
            stream of the file it duplicates in :attr:`Claim.released`.
    """

    def __init__(
        self, distance: int, *, drop_near: bool = False, placeholders: int | None = None
    ) -> None:
        self.distance = distance
        self.drop_near = drop_near
        self.placeholders = placeholders
        #: this run's files with exact copies: the occurrence keys of the copies
        self._copies: dict[int, set[int]] = {}
        self._released: set[int] = set()
        self._lock = threading.Lock()
        self._exact = SortedKeys()
        self._near = NearIndex(distance)
        self._entries = _Entries()
        self._ready: dict[int, threading.Event] = {}
        #: gbifID -> split, for the occurrences whose split follows a near duplicate.
        self.overrides: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    # loading -----------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        root: Path | str,
        distance: int,
        *,
        drop_near: bool = False,
        placeholders: int | None = None,
        manifest_name: str = MANIFEST_NAME,
        journal_name: str = JOURNAL_NAME,
        also: tuple[str, ...] = (),
    ) -> ContentIndex:
        """The stored files of ``root`` (the manifest files ``manifest_name`` and ``also``, and
        the journal): their latest rows, streamed a batch at a time.

        Example:
            >>> import tempfile
            >>> len(ContentIndex.load(tempfile.mkdtemp(), 4))
            0
        """
        index = cls(distance, drop_near=drop_near, placeholders=placeholders)
        root = Path(root)
        sources: list[TableSource] = [
            functools.partial(iter_manifest, root / name, _COLUMNS)
            for name in dict.fromkeys((*also, manifest_name))
            if (root / name).is_file()
        ]
        sources.append(lambda: _with_url(journal_blocks(root, journal_name, _COLUMNS)))
        found: list[tuple[str, np.ndarray, np.ndarray]] = []
        for table in latest_rows(sources):
            index._add_table(table, found)
        for name, target in (("sha256", index._exact), ("phash", index._near)):
            parts = [(values, entries) for kind, values, entries in found if kind == name]
            if parts:
                target.add_many(
                    np.concatenate([v for v, _ in parts]), np.concatenate([e for _, e in parts])
                )
        return index

    def _add_table(self, table: pa.Table, found: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
        """Add the stored rows of ``table``; their lookup keys go to ``found`` (sorted once,
        after the last batch)."""
        stored = pc.fill_null(
            pc.and_(pc.equal(table["status"], SUCCESS), pc.is_valid(table["path"])), False
        )
        table = table.filter(stored)
        if not table.num_rows:
            return
        start = len(self._entries)
        self._entries.extend(table["path"], table["subset"])
        entries = np.arange(start, len(self._entries), dtype=np.int64)
        for name, column in (("sha256", table["sha256"]), ("phash", table["phash"])):
            values, valid = hex64(column)
            found.append((name, values[valid], entries[valid]))
        linked = pc.fill_null(
            pc.and_(pc.is_valid(table["duplicate_of"]), pc.is_valid(table["subset"])), False
        )
        if pc.any(linked).as_py():  # occurrences whose split follows a near duplicate
            rows = table.filter(linked)
            for gbif_id, subset in zip(
                rows["gbifID"].to_pylist(), rows["subset"].to_pylist(), strict=True
            ):
                if gbif_id:
                    self.overrides[gbif_id] = subset

    # deciding ----------------------------------------------------------------------------------

    def follow(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` in the split of its occurrence when that follows a near duplicate."""
        gbif_id = record.get("gbifID")
        if gbif_id not in (None, "") and record.get("subset") is not None:
            split = self.overrides.get(str(gbif_id))
            if split is not None:
                record["subset"] = split
        return record

    def claim(
        self,
        record: Mapping[str, Any],
        sha256: str,
        phash: int | None,
        *,
        own: str | None = None,
    ) -> Claim:
        """Decide what to do with a fetched image of ``record`` (its hashes given; ``own``: the
        file the record itself had, rewritten, never its own duplicate); a SUCCESS claim
        reserves an entry that :meth:`complete` (or :meth:`abandon`) must settle."""
        key = sha_key(sha256)
        while True:
            with self._lock:
                kept = self._exact.find(key)
                if not kept:
                    near = self._near.near(phash) if phash is not None else []
                    event = self._pending_neighbour(near, own)
                    if event is None:
                        return self._reserve(record, key, phash, own=own, near=near)
                    entry = -1
                else:
                    entry = kept[-1]  # the latest file with these bytes (a moved one's new place)
                    event = self._ready.get(entry)
                if event is None:
                    path = self._entries.path(entry)
                    if path is not None and path != own:
                        subset = self._entries.split(entry)
                        released = self._copied(entry, record)
                        return Claim(DUPLICATE, subset=subset, duplicate_of=path, released=released)
            if event is not None:
                event.wait()  # the same photo is being stored by another thread
                continue
            with self._lock:  # its write failed, or it is this record's own file: rewritten
                return self._reserve(record, key, phash, replace=entry, own=own)

    def _copied(self, entry: int, record: Mapping[str, Any]) -> str | None:
        """(under the lock) note that ``record`` gave the bytes of this run's ``entry``; the
        stream of ``entry`` when that makes it a placeholder (the first time only)."""
        kept = self._entries.occurrence(entry)  # 0: a file of an earlier run
        occurrence = _occurrence_key(record)
        if self.placeholders is None or not kept or not occurrence or entry in self._released:
            return None
        copies = self._copies.setdefault(entry, set())
        copies.add(occurrence)
        if len(copies | {kept}) < self.placeholders:
            return None
        self._released.add(entry)
        del self._copies[entry]
        return self._entries.stream(entry)

    def _pending_neighbour(
        self, near: list[tuple[int, int]], own: str | None
    ) -> threading.Event | None:
        """(under the lock) the event of the nearest of the ``near`` neighbours when it is
        being stored (its split is known, not yet its path: the claim waits for it), else
        None."""
        for entry, _ in near:
            path = self._entries.path(entry)
            if path is not None and path != own:
                return None  # a stored neighbour: _reserve uses it
            event = self._ready.get(entry)
            if event is not None:
                return event
        return None

    def _reserve(
        self,
        record: Mapping[str, Any],
        key: int,
        phash: int | None,
        *,
        replace: int | None = None,
        own: str | None = None,
        near: list[tuple[int, int]] | None = None,
    ) -> Claim:
        """(under the lock) a SUCCESS claim, in a near neighbour's split when there is one
        (``near``: the neighbours of ``phash``, when the caller has them already)."""
        subset = record.get("subset")
        duplicate_of = None
        if phash is not None:
            for entry, _ in self._near.near(phash) if near is None else near:
                path = self._entries.path(entry)
                if path is None or path == own:  # being stored, failed, or its own old file
                    continue
                split = self._entries.split(entry)
                if self.drop_near:
                    return Claim(NEAR_DUPLICATE, subset=split, duplicate_of=path)
                duplicate_of = path
                if subset is not None and split is not None and split != subset:
                    subset = split
                    gbif_id = record.get("gbifID")
                    if gbif_id not in (None, ""):
                        self.overrides[str(gbif_id)] = split
                break
        if replace is not None:
            entry = replace
            self._entries.set_path(entry, None)
            self._entries.set_split(entry, subset)
        else:
            entry = self._entries.append(None, subset)
            self._exact.add(key, entry)
        stream = record.get("stream")
        self._entries.set_origin(
            entry, None if stream is None else str(stream), _occurrence_key(record)
        )
        self._ready[entry] = threading.Event()
        if phash is not None and replace is None:
            self._near.add(phash, entry)
        return Claim(SUCCESS, subset=subset, duplicate_of=duplicate_of, entry=entry)

    def complete(self, claim: Claim, path: str) -> None:
        """The reserved file of ``claim`` is stored at ``path``."""
        self._settle(claim, path)

    def abandon(self, claim: Claim) -> None:
        """The reserved file of ``claim`` could not be stored."""
        self._settle(claim, None)

    def _settle(self, claim: Claim, path: str | None) -> None:
        if claim.entry is None:
            return
        with self._lock:
            self._entries.set_path(claim.entry, path)
            event = self._ready.pop(claim.entry, None)
        if event is not None:
            event.set()

    def add(self, sha256: str | None, phash: int | None, subset: str | None, path: str) -> None:
        """Note a file stored outside :meth:`claim` (adopted from a killed run).

        Example:
            >>> index = ContentIndex(2)
            >>> index.add("ff" * 32, 5, "train", "train/a.jpg")
            >>> index.claim({"url": "u"}, "ff" * 32, None).duplicate_of
            'train/a.jpg'
        """
        with self._lock:
            entry = self._entries.append(path, subset)
            if sha256:
                self._exact.add(sha_key(sha256), entry)
            if phash is not None:
                self._near.add(phash, entry)


def _with_url(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    for table in tables:
        yield table.filter(pc.is_valid(table["url"])) if table["url"].null_count else table

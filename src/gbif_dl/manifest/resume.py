"""The resume index: ``url -> (status, path)`` of every record a dataset already knows.

A run loads it once (:func:`load_index`, streaming the manifest and the unmerged journal) and
then decides each record with a hash lookup: fetch it, skip it (stored), retry it (failed), or
leave it failed (:data:`GONE`: its latest row is a permanent failure, see
:func:`gbif_dl.fetch.result.is_permanent`). While the run goes on it marks the records it takes
(:data:`PENDING`) and finishes (:data:`FINISHED`).

Example:
    >>> import tempfile, pathlib
    >>> from gbif_dl.manifest.journal import Journal
    >>> from gbif_dl.manifest.table import SUCCESS, manifest_row
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with Journal(root) as journal:
    ...     journal.append(manifest_row({"url": "http://h/a.jpg"}, status=SUCCESS,
    ...                                 path="x/a.jpg"))
    >>> load_index(root)["http://h/a.jpg"]
    ('success', 'x/a.jpg')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.fetch.result import PERMANENT_REASONS, Reason, is_permanent
from gbif_dl.manifest.journal import JOURNAL_NAME, journal_blocks
from gbif_dl.manifest.table import (
    FAILED,
    MANIFEST_NAME,
    NOT_STORED,
    SUCCESS,
    TableSource,
    iter_manifest,
    latest_rows,
    url_digests,
)
from gbif_dl.records import url_digest

__all__ = ["FINISHED", "GONE", "PENDING", "ResumeIndex", "load_index"]

#: The state of a record a run has taken and not finished (its old path, if any, kept).
PENDING = "pending"
#: The state of a record a run has finished (no path: only its url digest is kept).
FINISHED = "finished"


#: The state of a record whose latest row is a permanent failure: a rerun does not request it
#: again unless asked to (``retry_failed``).
GONE = "gone"


_STATUS_NAMES = (FAILED, SUCCESS, PENDING, FINISHED, None)
_FAILED_CODE, _SUCCESS_CODE, _PENDING_CODE, _FINISHED_CODE, _REMOVED_CODE = range(5)
#: A GONE row's status byte is ``_GONE_BASE`` + the position of its reason here (the reason kept
#: in the same byte, so a rerun counts it under its reason without keeping the text).
_GONE_REASONS = tuple(sorted(reason.value for reason in {*PERMANENT_REASONS, Reason.HTTP_STATUS}))
_GONE_BASE = 8
#: Slot values of urls first seen in this run (no manifest row): their state only.
_NEW_PENDING, _NEW_FINISHED, _NEW_REMOVED = -1, -2, -3
_MAX_LOAD = 2 / 3
#: Urls turned into Python strings at a time while their digests are computed.
_DIGEST_STEP = 16_384


class ResumeIndex:
    """``url -> (status, path)`` for resume decisions, stored compactly; O(1) lookups.

    Rows known from the manifest live in Arrow arrays (the url and path text as in the
    manifest, the status as one byte, which for a :data:`GONE` row also names its reason); an
    open-addressing hash table maps the 64-bit blake2b digest of a url to its row (``uint64``
    key + ``int32`` value = 12 bytes a slot, at most 2/3 full). A digest hit is confirmed with
    the stored url, so two urls sharing a digest never mix.
    Urls first seen in this run keep only their digest and state (12-36 bytes each); two such
    urls would share an entry only on a 64-bit digest collision (about 3e-8 for a million
    urls), and the one then skipped is fetched by the next run, since no journal row names it.
    Anything else (a status or path that is not from the manifest) is kept in a small dict.

    Example:
        >>> index = ResumeIndex.from_arrays(pa.array(["http://h/a"]), pa.array(["success"]),
        ...                                 pa.array(["x/a.jpg"]))
        >>> index["http://h/a"], index.get("http://h/b")
        (('success', 'x/a.jpg'), None)
        >>> index["http://h/b"] = ("pending", None)
        >>> "http://h/b" in index, index.pop("http://h/b"), "http://h/b" in index
        (True, ('pending', None), False)
    """

    def __init__(self) -> None:
        # None until rows are loaded: a fresh run allocates nothing through Arrow (whose first
        # use costs some 30 MB of RSS for its own set-up)
        self._urls: pa.Array | None = None
        self._paths: pa.Array | None = None
        self._status = np.zeros(0, dtype=np.uint8)
        self._keys = np.zeros(1024, dtype=np.uint64)
        self._values = np.zeros(1024, dtype=np.int32)
        self._used = 0
        self._extra: dict[str, tuple[str, str | None]] = {}

    @classmethod
    def from_arrays(
        cls,
        urls: pa.Array,
        statuses: pa.Array,
        paths: pa.Array,
        reasons: pa.Array | None = None,
        http_statuses: pa.Array | None = None,
    ) -> ResumeIndex:
        """An index of distinct ``urls`` with their manifest ``statuses`` and ``paths``; with
        ``reasons`` (and ``http_statuses``), the permanent failures among them are :data:`GONE`.
        """
        gone = _gone_codes(statuses, reasons, http_statuses) if reasons is not None else None
        return cls._build(urls, statuses, paths, gone)

    @classmethod
    def _build(
        cls, urls: pa.Array, statuses: pa.Array, paths: pa.Array, gone: np.ndarray | None
    ) -> ResumeIndex:
        index = cls()
        if len(urls) == 0:
            return index
        index._urls = urls.cast(pa.large_string())
        index._paths = paths.cast(pa.large_string())
        status = np.full(len(urls), _FAILED_CODE, dtype=np.uint8)
        status[_mask(pc.equal(statuses, SUCCESS))] = _SUCCESS_CODE
        if gone is not None:
            status = np.where(gone > 0, gone, status)
        index._status = status
        step = _DIGEST_STEP  # a batch of url strings as Python objects at a time
        keys = np.concatenate(
            [
                url_digests(index._urls.slice(start, step).to_pylist())
                for start in range(0, len(urls), step)
            ]
        )
        index._rebuild(keys, np.arange(len(urls), dtype=np.int32))
        return index

    # the hash table ----------------------------------------------------------------------------

    def _rebuild(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Place ``keys`` -> ``values`` in a new table (vectorised linear probing)."""
        capacity = 1024
        while capacity < 2 * len(keys):  # half full at most after a rebuild
            capacity *= 2
        table_keys = np.zeros(capacity, dtype=np.uint64)
        table_values = np.zeros(capacity, dtype=np.int32)
        mask = np.uint64(capacity - 1)
        slots = (keys & mask).astype(np.int64)
        pending = np.arange(len(keys))
        while pending.size:
            at = slots[pending]
            free = table_keys[at] == 0
            candidates, candidate_slots = pending[free], at[free]
            taken, first = np.unique(candidate_slots, return_index=True)
            winners = candidates[first]
            table_keys[taken] = keys[winners]
            table_values[taken] = values[winners]
            placed = np.zeros(len(keys), dtype=bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slots[pending] = (slots[pending] + 1) & (capacity - 1)
        self._keys, self._values, self._used = table_keys, table_values, len(keys)

    def _find(self, url: str, key: int) -> tuple[int, int]:
        """(slot of ``url`` or -1, the first empty slot on its probe path)."""
        keys, values = self._keys, self._values
        mask = len(keys) - 1
        slot = key & mask
        while True:
            found = int(keys[slot])
            if found == 0:
                return -1, slot
            if found == key:
                value = int(values[slot])
                if value < 0 or self._urls[value].as_py() == url:  # type: ignore[index]
                    return slot, slot
            slot = (slot + 1) & mask

    def _insert(self, key: int, value: int) -> None:
        if (self._used + 1) > len(self._keys) * _MAX_LOAD:
            live = (self._keys != 0) & (self._values != _NEW_REMOVED)
            self._rebuild(self._keys[live], self._values[live])
        slot = self._empty_slot(key)
        self._keys[slot] = key
        self._values[slot] = value
        self._used += 1

    def _empty_slot(self, key: int) -> int:
        keys = self._keys
        mask = len(keys) - 1
        slot = key & mask
        while int(keys[slot]) != 0:
            slot = (slot + 1) & mask
        return slot

    # the mapping -------------------------------------------------------------------------------

    def get(self, url: str, default: Any = None) -> Any:
        """``(status, path)`` of ``url``, or ``default``."""
        if self._extra and url in self._extra:
            return self._extra[url]
        slot, _ = self._find(url, url_digest(url))
        if slot < 0:
            return default
        value = int(self._values[slot])
        if value < 0:
            if value == _NEW_REMOVED:
                return default
            return (PENDING, None) if value == _NEW_PENDING else (FINISHED, None)
        code = int(self._status[value])
        if code == _REMOVED_CODE:
            return default
        if code == _FINISHED_CODE:
            return (FINISHED, None)
        status = GONE if code >= _GONE_BASE else _STATUS_NAMES[code]
        return (status, self._paths[value].as_py())  # type: ignore[index]

    def gone_reason(self, url: str) -> str | None:
        """The failure reason of ``url`` when it is :data:`GONE`, else None.

        Example:
            >>> index = ResumeIndex.from_arrays(pa.array(["http://h/a"]), pa.array(["failed"]),
            ...     pa.array([None], pa.string()), pa.array(["not_image"]))
            >>> index["http://h/a"], index.gone_reason("http://h/a")
            (('gone', None), 'not_image')
        """
        if self._extra and url in self._extra:
            return None
        slot, _ = self._find(url, url_digest(url))
        value = int(self._values[slot]) if slot >= 0 else -1
        code = int(self._status[value]) if value >= 0 else 0
        return _GONE_REASONS[code - _GONE_BASE] if code >= _GONE_BASE else None

    def __getitem__(self, url: str) -> tuple[str, str | None]:
        found = self.get(url)
        if found is None:
            raise KeyError(url)
        return found

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and self.get(url) is not None

    def __setitem__(self, url: str, entry: tuple[str, str | None]) -> None:
        status, path = entry
        key = url_digest(url)
        slot, _ = self._find(url, key)
        self._extra.pop(url, None)
        value = int(self._values[slot]) if slot >= 0 else None
        if value is not None and value >= 0:
            if status == FINISHED and path is None:
                self._status[value] = _FINISHED_CODE
                return
            if status in _STATUS_NAMES[:3] and path == self._paths[value].as_py():  # type: ignore[index]
                self._status[value] = _STATUS_NAMES.index(status)
                return
            self._status[value] = _REMOVED_CODE  # the dict below holds it now
        elif path is None and status in (PENDING, FINISHED):
            state = _NEW_PENDING if status == PENDING else _NEW_FINISHED
            if slot >= 0:
                self._values[slot] = state
            else:
                self._insert(key, state)
            return
        elif slot >= 0:
            self._values[slot] = _NEW_REMOVED
        self._extra[url] = (status, path)

    def pop(self, url: str, default: Any = None) -> Any:
        """Remove ``url``; return its ``(status, path)`` or ``default``."""
        found = self.get(url)
        if found is None:
            return default
        self._extra.pop(url, None)
        slot, _ = self._find(url, url_digest(url))
        if slot >= 0:
            value = int(self._values[slot])
            if value >= 0:
                self._status[value] = _REMOVED_CODE
            else:
                self._values[slot] = _NEW_REMOVED
        return found

    def __len__(self) -> int:
        used = self._values[self._keys != 0]
        new = int(np.count_nonzero((used == _NEW_PENDING) | (used == _NEW_FINISHED)))
        return new + int(np.count_nonzero(self._status != _REMOVED_CODE)) + len(self._extra)

    def items(self) -> Iterator[tuple[str, tuple[str, str | None]]]:
        """The entries whose url text is kept (manifest rows and overrides, not new urls)."""
        for row, url in enumerate(self._urls.to_pylist() if self._urls is not None else ()):
            code = int(self._status[row])
            if code != _REMOVED_CODE and url not in self._extra:
                yield url, self.get(url)
        yield from self._extra.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResumeIndex):
            other = dict(other.items())
        if not isinstance(other, Mapping):
            return NotImplemented
        return len(self) == len(other) and dict(self.items()) == dict(other)

    __hash__ = None  # type: ignore[assignment]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the hash table, the status bytes, the url and path text)."""
        return int(
            self._keys.nbytes
            + self._values.nbytes
            + self._status.nbytes
            + (self._urls.nbytes if self._urls is not None else 0)
            + (self._paths.nbytes if self._paths is not None else 0)
        )


def load_index(
    root: Path | str, *, manifest_name: str = MANIFEST_NAME, journal_name: str = JOURNAL_NAME
) -> ResumeIndex:
    """``url -> (status, path)`` for every manifest row plus unmerged journal rows (journal wins);
    a url whose latest row is a permanent failure is :data:`GONE`.

    Loaded once per run (streaming: a batch of rows at a time) into a compact
    :class:`ResumeIndex`; afterwards each resume decision is a hash lookup.

    Example:
        >>> import tempfile
        >>> len(load_index(tempfile.mkdtemp()))
        0
    """
    root = Path(root)
    manifest = root / manifest_name
    columns = ("url", "status", "path", "reason", "http_status")
    sources: list[TableSource] = []
    if manifest.exists():
        sources.append(lambda: _with_url(iter_manifest(manifest, columns)))
    sources.append(lambda: _with_url(journal_blocks(root, journal_name, columns)))
    parts: dict[str, list[pa.Array]] = {name: [] for name in columns[:3]}
    gone: list[np.ndarray] = []  # a byte a row: the reason and http_status are not kept
    for table in latest_rows(sources):
        for name in parts:
            parts[name].extend(table[name].cast(pa.large_string()).chunks)
        gone.append(_gone_codes(table["status"], table["reason"], table["http_status"]))
    if not parts["url"]:
        return ResumeIndex()
    urls, statuses, paths = (pa.concat_arrays(parts[name]) for name in parts)
    return ResumeIndex._build(urls, statuses, paths, np.concatenate(gone))


def _mask(condition: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean numpy mask of an Arrow condition (null = False)."""
    return np.asarray(pc.fill_null(condition, False), dtype=bool)


def _gone_codes(
    statuses: pa.Array | pa.ChunkedArray,
    reasons: pa.Array | pa.ChunkedArray,
    http_statuses: pa.Array | pa.ChunkedArray | None,
) -> np.ndarray:
    """A byte a row: the GONE code of a failed row whose failure is permanent (by
    :func:`~gbif_dl.fetch.result.is_permanent`, asked once per distinct status), else 0."""
    codes = np.zeros(len(reasons), dtype=np.uint8)
    failed = _mask(pc.is_in(statuses, pa.array([FAILED, *NOT_STORED])))
    if not failed.any():
        return codes
    http = failed & _mask(pc.equal(reasons, Reason.HTTP_STATUS.value))
    if http_statuses is not None and http.any():
        seen = pc.unique(pc.drop_null(http_statuses.filter(pa.array(http)))).to_pylist()
        permanent = [code for code in seen if is_permanent(Reason.HTTP_STATUS, code)]
        http &= _mask(pc.is_in(http_statuses, pa.array(permanent, pa.int64())))
    else:
        http[:] = False
    for position, reason in enumerate(_GONE_REASONS):
        if reason == Reason.HTTP_STATUS.value:
            codes[http] = _GONE_BASE + position
        else:
            codes[failed & _mask(pc.equal(reasons, reason))] = _GONE_BASE + position
    return codes


def _with_url(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """``tables`` without their rows that have no url."""
    for table in tables:
        yield table.filter(pc.is_valid(table["url"])) if table["url"].null_count else table

"""The resume index: ``url -> (status, path)`` of every record a dataset already knows.

A run loads it once (:func:`load_index`, streaming the manifest and the unmerged journal) and
then decides each record with a lookup: fetch it, skip it (stored), retry it (failed), or
leave it failed (:data:`GONE`: its latest row is a permanent failure, see
:func:`gbif_dl.fetch.result.is_permanent`). While the run goes on it marks the records it takes
(:data:`PENDING`) and finishes (:data:`FINISHED`).

Memory does not grow with the dataset or the run: the manifest's rows are kept on disk (in a
anonymous temporary files, see :mod:`gbif_dl.manifest.spill`) as url digests sorted for lookups,
a status byte per row and the url and path text; the run's marks live in bounded tables
spilled to sorted runs. What stays in memory is a fence of about 16 bytes per 1,000 rows.

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

import os
import struct
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.fetch.result import PERMANENT_REASONS, Reason, is_permanent
from gbif_dl.manifest.journal import JOURNAL_NAME, journal_blocks
from gbif_dl.manifest.spill import ExternalSorter, KeyFilter, RunFile, SpillFiles, SpillMap
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

__all__ = ["FINISHED", "GONE", "PENDING", "ManifestRows", "ResumeIndex", "load_index"]

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
#: States of urls first seen in this run (no manifest row), kept by url digest only.
_NEW_PENDING, _NEW_FINISHED, _NEW_REMOVED = 1, 2, 3

#: A sorted entry of the manifest rows' lookup file: url digest, row number, where the row's
#: text is (offset and length) and its status byte, so a lookup reads a block and the text.
_KEYED_ROW = np.dtype(
    {
        "names": ["key", "row", "offset", "length", "code"],
        "formats": ["u8", "u8", "u8", "u4", "u1"],
        "offsets": [0, 8, 16, 24, 28],
        "itemsize": 32,
    }
)
#: A row's text: the lengths of its url and path (+1; 0: no path), then the url and the path.
_TEXT_HEAD = struct.Struct("<II")
#: Where the length and the status byte sit in the fourth 8-byte word of a keyed row.
_CODE_SHIFT = 32 if sys.byteorder == "little" else 24


class ManifestRows:
    """The rows of a manifest, on disk: ``url -> (row, status byte, path)`` by digest lookup.

    Built with :meth:`add` (lists of urls and paths, a status byte and a url digest per row)
    and :meth:`finish`; then :meth:`find` reads one block of sorted digests (found through an
    in-memory fence) and, for a digest hit, the row's text, whose url must equal the url asked
    (two urls sharing a digest never mix).

    Example:
        >>> with SpillFiles() as files:
        ...     rows = ManifestRows(files)
        ...     rows.add(["http://h/a", "http://h/b"], ["a.jpg", None],
        ...              np.array([1, 0], np.uint8), url_digests(["http://h/a", "http://h/b"]))
        ...     rows.finish()
        ...     rows.find("http://h/a", url_digest("http://h/a")), len(rows)
        ((0, 1, 'a.jpg'), 2)
    """

    def __init__(self, files: SpillFiles) -> None:
        self.files = files
        self.count = 0
        self._sorter = ExternalSorter(_KEYED_ROW, ("key", "row"), files)
        self._text = files.new_file()
        self._offset = 0
        self._keys: RunFile | None = None
        self._present = KeyFilter()  # most absent urls are answered without a disk read

    def add(
        self, urls: list[str], paths: list[str | None], codes: np.ndarray, digests: np.ndarray
    ) -> None:
        """Append rows (``codes``: a status byte each; ``digests``: the urls' digests)."""
        keyed = np.zeros(len(urls), dtype=_KEYED_ROW)
        keyed["key"] = digests
        keyed["row"] = np.arange(self.count, self.count + len(urls), dtype=np.uint64)
        keyed["code"] = codes
        texts = []
        offset = self._offset
        for i, (url, path) in enumerate(zip(urls, paths, strict=True)):
            url_bytes = url.encode("utf-8", "surrogatepass")
            path_bytes = path.encode("utf-8", "surrogatepass") if path is not None else b""
            head = _TEXT_HEAD.pack(len(url_bytes), len(path_bytes) + 1 if path is not None else 0)
            text = head + url_bytes + path_bytes
            keyed["offset"][i], keyed["length"][i] = offset, len(text)
            texts.append(text)
            offset += len(text)
        self._text.write(b"".join(texts))
        self._sorter.add(keyed)
        self._present.add(keyed["key"])
        self.count += len(urls)
        self._offset = offset

    def finish(self) -> None:
        """Sort the digests (an external sort: bounded memory); the rows can be found then."""
        self._text.flush()  # the reads go through the descriptor
        self._keys = RunFile.write(self.files, self._sorter.sorted_chunks(), _KEYED_ROW)

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        """Bytes in memory (the fence of the sorted digests and the filter)."""
        fence = self._keys.fence_bytes if self._keys is not None else 0
        return fence + self._present.nbytes

    @staticmethod
    def _parse(text: bytes) -> tuple[str, str | None]:
        url_length, path_length = _TEXT_HEAD.unpack_from(text)
        start = _TEXT_HEAD.size
        url = text[start : start + url_length].decode("utf-8", "surrogatepass")
        if not path_length:
            return url, None
        start += url_length
        return url, text[start : start + path_length - 1].decode("utf-8", "surrogatepass")

    def find(self, url: str, key: int) -> tuple[int, int, str | None] | None:
        """``(row, status byte, path)`` of ``url`` (whose digest is ``key``), or None."""
        if self._keys is None or key not in self._present:
            return None
        for _, row, offset, word in self._keys.find_words(key):
            length, code = word & 0xFFFFFFFF, (word >> _CODE_SHIFT) & 0xFF
            found_url, path = self._parse(os.pread(self._text.fileno(), length, offset))
            if found_url == url:
                return row, code, path
        return None

    def urls(self) -> Iterator[str]:
        """Every row's url, in row order (the text read from the start, a row at a time)."""
        fd, offset = self._text.fileno(), 0
        for _ in range(self.count):
            url_length, path_length = _TEXT_HEAD.unpack(os.pread(fd, _TEXT_HEAD.size, offset))
            offset += _TEXT_HEAD.size
            yield os.pread(fd, url_length, offset).decode("utf-8", "surrogatepass")
            offset += url_length + max(path_length - 1, 0)

    def close(self) -> None:
        """Free the files."""
        self.files.forget(self._text)
        if self._keys is not None:
            self._keys.remove()
            self._keys = None


class ResumeIndex:
    """``url -> (status, path)`` for resume decisions, on disk; memory does not grow with it.

    Rows known from the manifest live in :class:`ManifestRows` (sorted 64-bit blake2b url
    digests, a status byte per row, which for a :data:`GONE` row also names its reason, and the
    url and path text); a digest hit is confirmed with the stored url, so two urls sharing a
    digest never mix. The run's changes to those rows are status bytes by row number, and urls
    first seen in this run keep only their digest and state, both in a
    :class:`~gbif_dl.manifest.spill.SpillMap` (a bounded table spilled to sorted runs). Two new
    urls would share an entry only on a 64-bit digest collision (about 3e-8 for a million
    urls), and the one then skipped is fetched by the next run, since no journal row names it.
    Anything else (a status or path that is not from the manifest) is kept in a small dict.
    The files are anonymous temporary files, freed by :meth:`close` (or when the index is
    collected, or the process ends, even killed).

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
        # nothing on disk until something is kept: files are made on first use
        self._files: SpillFiles | None = None
        self._base: ManifestRows | None = None
        self._rows: SpillMap | None = None  # row number + 1 -> status byte (the run's changes)
        self._new: SpillMap | None = None  # url digest -> _NEW_* (urls without a manifest row)
        self._extra: dict[str, tuple[str, str | None]] = {}

    def _spill_files(self) -> SpillFiles:
        if self._files is None:
            self._files = SpillFiles()
        return self._files

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
        index = cls()
        if len(urls):
            rows = ManifestRows(index._spill_files())
            gone = _gone_codes(statuses, reasons, http_statuses) if reasons is not None else None
            _add_rows(rows, urls, statuses, paths, gone)
            rows.finish()
            index._base = rows
        return index

    def _row_code(self, row: int, code: int) -> int:
        """The status byte of manifest row ``row`` (``code`` unless this run changed it)."""
        if self._rows is None:
            return code
        changed = self._rows.get(row + 1)
        return code if changed is None else changed

    def _find_row(self, url: str, key: int) -> tuple[int, int, str | None] | None:
        """``(row, current status byte, manifest path)`` of a manifest url, or None."""
        if self._base is None:
            return None
        found = self._base.find(url, key)
        if found is None:
            return None
        row, code, path = found
        return row, self._row_code(row, code), path

    def _new_state(self, key: int) -> int | None:
        return self._new.get(key) if self._new is not None else None

    # the mapping -------------------------------------------------------------------------------

    def get(self, url: str, default: Any = None) -> Any:
        """``(status, path)`` of ``url``, or ``default``."""
        if self._extra and url in self._extra:
            return self._extra[url]
        key = url_digest(url)
        found = self._find_row(url, key)
        if found is not None:
            _, code, path = found
            if code == _REMOVED_CODE:
                return default
            if code == _FINISHED_CODE:
                return (FINISHED, None)
            return (GONE if code >= _GONE_BASE else _STATUS_NAMES[code], path)
        state = self._new_state(key)
        if state == _NEW_PENDING:
            return (PENDING, None)
        if state == _NEW_FINISHED:
            return (FINISHED, None)
        return default

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
        found = self._find_row(url, url_digest(url))
        code = found[1] if found is not None else 0
        return _GONE_REASONS[code - _GONE_BASE] if code >= _GONE_BASE else None

    def __getitem__(self, url: str) -> tuple[str, str | None]:
        found = self.get(url)
        if found is None:
            raise KeyError(url)
        return found

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and self.get(url) is not None

    def _set_row(self, row: int, code: int) -> None:
        if self._rows is None:
            self._rows = SpillMap(self._spill_files())
        self._rows[row + 1] = code

    def _set_new(self, key: int, state: int) -> None:
        if self._new is None:
            self._new = SpillMap(self._spill_files())
        self._new[key] = state

    def __setitem__(self, url: str, entry: tuple[str, str | None]) -> None:
        status, path = entry
        key = url_digest(url)
        found = self._find_row(url, key)
        self._extra.pop(url, None)
        if found is not None:
            row, _, manifest_path = found
            if status == FINISHED and path is None:
                self._set_row(row, _FINISHED_CODE)
                return
            if status in _STATUS_NAMES[:3] and path == manifest_path:
                self._set_row(row, _STATUS_NAMES.index(status))
                return
            self._set_row(row, _REMOVED_CODE)  # the dict below holds it now
        elif path is None and status in (PENDING, FINISHED):
            self._set_new(key, _NEW_PENDING if status == PENDING else _NEW_FINISHED)
            return
        elif self._new_state(key) is not None:
            self._set_new(key, _NEW_REMOVED)
        self._extra[url] = (status, path)

    def pop(self, url: str, default: Any = None) -> Any:
        """Remove ``url``; return its ``(status, path)`` or ``default``."""
        found = self.get(url)
        if found is None:
            return default
        self._extra.pop(url, None)
        key = url_digest(url)
        row = self._find_row(url, key)
        if row is not None:
            self._set_row(row[0], _REMOVED_CODE)
        elif self._new_state(key) is not None:
            self._set_new(key, _NEW_REMOVED)
        return found

    def __len__(self) -> int:
        count = len(self._extra)
        if self._new is not None:
            count += sum(state != _NEW_REMOVED for _, state in self._new.items())
        if self._base is not None:
            count += len(self._base)
            if self._rows is not None:
                count -= sum(code == _REMOVED_CODE for _, code in self._rows.items())
        return count

    def items(self) -> Iterator[tuple[str, tuple[str, str | None]]]:
        """The entries whose url text is kept (manifest rows and overrides, not new urls)."""
        for url in self._base.urls() if self._base is not None else ():
            if url not in self._extra:
                entry = self.get(url)
                if entry is not None:
                    yield url, entry
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
        """Bytes held in memory (the bounded tables and the fences of the sorted files)."""
        parts = (self._base, self._rows, self._new)
        return sum(part.nbytes for part in parts if part is not None)

    def close(self) -> None:
        """Remove the index's files (the index is empty afterwards; idempotent)."""
        if self._base is not None:
            self._base.close()
        for states in (self._rows, self._new):
            if states is not None:
                states.close()
        if self._files is not None:
            self._files.close()
        self._files = self._base = self._rows = self._new = None
        self._extra.clear()


def _add_rows(
    rows: ManifestRows,
    urls: pa.Array | pa.ChunkedArray,
    statuses: pa.Array | pa.ChunkedArray,
    paths: pa.Array | pa.ChunkedArray,
    gone: np.ndarray | None,
) -> None:
    """Append distinct manifest rows to ``rows`` (a batch of url strings at a time)."""
    codes = np.full(len(urls), _FAILED_CODE, dtype=np.uint8)
    codes[_mask(pc.equal(statuses, SUCCESS))] = _SUCCESS_CODE
    if gone is not None:
        codes = np.where(gone > 0, gone, codes)
    step = _DIGEST_STEP
    for start in range(0, len(urls), step):
        batch = urls.slice(start, step).to_pylist()
        rows.add(
            batch,
            paths.slice(start, step).to_pylist(),
            codes[start : start + step],
            url_digests(batch),
        )


#: Urls turned into Python strings at a time while their digests are computed.
_DIGEST_STEP = 16_384


def load_index(
    root: Path | str, *, manifest_name: str = MANIFEST_NAME, journal_name: str = JOURNAL_NAME
) -> ResumeIndex:
    """``url -> (status, path)`` for every manifest row plus unmerged journal rows (journal wins);
    a url whose latest row is a permanent failure is :data:`GONE`.

    Loaded once per run (streaming: a batch of rows at a time) into a
    :class:`ResumeIndex` on disk; afterwards each resume decision is a lookup (an in-memory
    fence, then a block of sorted digests and the row's text read from the page cache).

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
    index = ResumeIndex()
    rows: ManifestRows | None = None
    for table in latest_rows(sources):
        if rows is None:
            rows = ManifestRows(index._spill_files())
        gone = _gone_codes(table["status"], table["reason"], table["http_status"])
        _add_rows(rows, table["url"], table["status"], table["path"], gone)
    if rows is not None:
        rows.finish()
        index._base = rows
    return index


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

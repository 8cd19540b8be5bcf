"""The manifest (``manifest.parquet``) and its append-only journal (``.gbif-dl-journal.jsonl``).

The manifest has one row per record, failures included: where the file is, which GBIF record,
licence and rights holder it comes from, and how the download went (status, typed reason, HTTP
status, bytes, sha256, pixel size). It drives resume and feeds the attribution files.

During a run every finished item appends one JSON line to the journal, *after* its file was
renamed into place. At the end of a run (and at the start of the next one, after a crash) the
journal is merged into the parquet file atomically, deduplicated by url (the latest row wins),
and then truncated. A torn last line, left by a killed process, is ignored.

Both files live at the root of the output folder, never in a sub-folder, so image-folder loaders
see only class folders.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with Journal(root) as journal:
    ...     journal.append(manifest_row({"url": "http://h/a.jpg", "label": "x"}, status=SUCCESS,
    ...                                 path="x/a.jpg", nbytes=10))
    >>> table = merge_journal(root)
    >>> table.num_rows, table["status"][0].as_py()
    (1, 'success')
    >>> load_index(root)["http://h/a.jpg"]
    ('success', 'x/a.jpg')
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from gbif_dl._memory import release_memory
from gbif_dl.records import url_basename
from gbif_dl.writers._atomic import atomic_path

__all__ = [
    "FAILED",
    "JOURNAL_NAME",
    "MANIFEST_NAME",
    "SCHEMA",
    "SUCCESS",
    "Journal",
    "ResumeIndex",
    "iter_manifest",
    "load_index",
    "manifest_row",
    "merge_journal",
    "merge_journal_file",
    "merge_manifest_files",
    "read_journal",
    "read_manifest",
    "url_digests",
    "url_host",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.parquet"
JOURNAL_NAME = ".gbif-dl-journal.jsonl"

SUCCESS = "success"
FAILED = "failed"

#: Columns of ``manifest.parquet``. GBIF spellings (``gbifID``, ``rightsHolder``) as in records.
SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("basename", pa.string()),
        ("path", pa.string()),  # relative to the root, "/"-separated; null when failed
        ("label", pa.string()),  # dict labels as JSON text
        ("subset", pa.string()),
        ("gbifID", pa.string()),
        ("datasetKey", pa.string()),
        ("license", pa.string()),
        ("license_code", pa.string()),
        ("rightsHolder", pa.string()),
        ("creator", pa.string()),
        ("publisher", pa.string()),
        ("references", pa.string()),
        ("scientificName", pa.string()),
        ("downloadDOI", pa.string()),
        ("status", pa.string()),  # "success" | "failed"
        ("reason", pa.string()),  # a gbif_dl.fetch.result.Reason value when failed
        ("http_status", pa.int32()),
        ("detail", pa.string()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("mime", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("attempts", pa.int32()),
        ("host", pa.string()),  # "host:port" of the url ("host" alone for the default port)
        ("elapsed_s", pa.float64()),  # seconds from the first request to the result
        ("updated", pa.timestamp("ms", tz="UTC")),
    ]
)

_RECORD_FIELDS = (
    "gbifID",
    "datasetKey",
    "license",
    "license_code",
    "rightsHolder",
    "creator",
    "publisher",
    "references",
    "scientificName",
    "downloadDOI",
)
_MAX_TEXT = 2000  # bound on free-text cells taken from untrusted records


def _utf8(text: str) -> str:
    """``text`` with lone surrogates (unencodable, e.g. JSON's ``"\\ud800"``) replaced by ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return _utf8(text[:_MAX_TEXT])


def url_host(url: str) -> str | None:
    """The ``host:port`` of ``url`` as the fetch engine names hosts (no port when implicit).

    Example:
        >>> url_host("http://Img.Example.org:8080/a.jpg"), url_host("https://x.org/a.jpg")
        ('img.example.org:8080', 'x.org')
        >>> url_host("invalid:abc") is None
        True
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    hostname = (parts.hostname or "").lower()
    if not hostname:
        return None
    return _utf8(f"{hostname}:{port}" if port else hostname)[:_MAX_TEXT]


def manifest_row(
    record: Mapping[str, Any],
    *,
    status: str,
    path: str | None = None,
    reason: str | None = None,
    http_status: int | None = None,
    detail: str = "",
    nbytes: int | None = None,
    sha256: str | None = None,
    mime: str | None = None,
    width: int | None = None,
    height: int | None = None,
    attempts: int = 0,
    host: str | None = None,
    elapsed_s: float | None = None,
) -> dict[str, Any]:
    """One manifest row (a JSON-serialisable dict) for ``record``.

    ``host`` defaults to the ``host:port`` of the record's url (:func:`url_host`);
    ``elapsed_s`` (seconds from the first request to the result) is None when no request was
    made.

    Example:
        >>> row = manifest_row({"url": "http://h:81/a.jpg", "gbifID": 12}, status=FAILED,
        ...                    reason="http_status", http_status=404, attempts=1, elapsed_s=0.5)
        >>> row["gbifID"], row["reason"], row["path"], row["host"], row["elapsed_s"]
        ('12', 'http_status', None, 'h:81', 0.5)
    """
    url = _utf8(str(record.get("url") or ""))
    row: dict[str, Any] = {
        "url": url,
        "basename": _text(record.get("basename")) or url_basename(url),
        "path": path,
        "label": _text(record.get("label")),
        "subset": _text(record.get("subset")),
    }
    for name in _RECORD_FIELDS:
        row[name] = _text(record.get(name))
    row.update(
        status=status,
        reason=str(getattr(reason, "value", reason)) if reason is not None else None,
        http_status=int(http_status) if http_status is not None else None,
        detail=_utf8((detail or "")[:_MAX_TEXT]) or None,
        bytes=nbytes,
        sha256=sha256,
        mime=mime,
        width=width,
        height=height,
        attempts=attempts,
        host=_utf8(host[:_MAX_TEXT]) if host else url_host(url),
        elapsed_s=float(elapsed_s) if elapsed_s is not None else None,
        updated=time.time(),
    )
    return row


class Journal:
    """Append-only JSON-lines journal at ``root/.gbif-dl-journal.jsonl``.

    Each :meth:`append` writes one line and hands it to the operating system at once, so a killed
    process loses at most the line being written (which the reader then ignores).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with Journal(root) as journal:
        ...     journal.append({"url": "http://h/a.jpg", "status": "failed"})
        >>> [row["url"] for row in read_journal(root)]
        ['http://h/a.jpg']
    """

    def __init__(self, root: Path | str, name: str = JOURNAL_NAME) -> None:
        self.path = Path(root) / name
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._pending: list[str] = []
        self.lines = 0

    def append(self, row: Mapping[str, Any], *, flush: bool = True) -> None:
        """Append one row and flush it to the OS; ``flush=False`` keeps it until :meth:`flush`.

        Buffered rows are lost if the process is killed, which is safe when their files are in
        place (a rerun adopts stored files that no journal line names), and saves a write per
        row on fast downloads.
        """
        self._pending.append(json.dumps(row, ensure_ascii=False, default=str))
        self.lines += 1
        if flush:
            self.flush()

    @property
    def buffered(self) -> int:
        """Rows appended with ``flush=False`` and not yet handed to the OS."""
        return len(self._pending)

    def flush(self) -> None:
        """Hand every buffered row to the OS in one write."""
        if self._pending:
            lines, self._pending = self._pending, []
            self._handle.write("\n".join(lines) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if not self._handle.closed:
            try:
                self.flush()
            finally:
                self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_journal(root: Path | str, name: str = JOURNAL_NAME) -> list[dict[str, Any]]:
    """The rows of the journal, oldest first; a torn or corrupt line is skipped.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / JOURNAL_NAME).write_text('{"url": "a"}\\n{"url": "b", "sta')
        >>> [row["url"] for row in read_journal(root)]
        ['a']
    """
    return list(_iter_journal(root, name))


def _iter_journal(root: Path | str, name: str = JOURNAL_NAME) -> Iterator[dict[str, Any]]:
    """The rows of the journal one at a time (memory stays flat whatever its length)."""
    path = Path(root) / name
    try:
        handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except FileNotFoundError:
        return
    with handle:
        for number, line in enumerate(handle, 1):
            row = _journal_line(line, path, number)
            if row is not None:
                yield row


def _journal_line(line: str, path: Path, number: int | None = None) -> dict[str, Any] | None:
    """One journal line as a row; None for a blank, torn (logged) or url-less line."""
    line = line.strip()
    if not line:
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        where = f"line {number} of " if number is not None else "a line of "
        logger.warning("ignoring torn %s%s", where, path)
        return None
    if isinstance(row, dict) and isinstance(row.get("url"), str):
        return row
    return None


def read_manifest(
    root: Path | str, columns: Iterable[str] | None = None, *, name: str = MANIFEST_NAME
) -> pa.Table | None:
    """``root/manifest.parquet`` conformed to :data:`SCHEMA` (or only ``columns``), or None.

    Example:
        >>> import tempfile
        >>> read_manifest(tempfile.mkdtemp()) is None
        True
    """
    path = Path(root) / name
    if not path.exists():
        return None
    wanted = list(columns) if columns is not None else SCHEMA.names
    present = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[name for name in wanted if name in present])
    arrays = []
    for name in wanted:
        field = SCHEMA.field(name)
        if name in present:
            arrays.append(table[name].cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([SCHEMA.field(n) for n in wanted]))


def _rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    clean = []
    for row in rows:
        item = {name: row.get(name) for name in SCHEMA.names}
        updated = item["updated"]
        if isinstance(updated, (int, float)):
            item["updated"] = datetime.fromtimestamp(updated, tz=timezone.utc)
        elif isinstance(updated, str):
            try:
                item["updated"] = datetime.fromisoformat(updated)
            except ValueError:
                item["updated"] = None
        clean.append(item)
    return pa.Table.from_pylist(clean, schema=SCHEMA)


_MERGE_BATCH = 1024  # rows per Arrow batch: small, so the Python objects of a batch stay few


def _batched(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


#: The journal's JSON types: ``updated`` is epoch seconds there, a timestamp in the manifest.
_JOURNAL_SCHEMA = pa.schema(
    [pa.field(f.name, pa.float64()) if f.name == "updated" else f for f in SCHEMA]
)


#: Bytes of journal text parsed at a time by the merge (a block of rows, never the whole file).
#: Small on purpose: Arrow's JSON parser needs several times a block in temporary memory,
#: which the allocator keeps (measured: 8 MiB blocks leave ~80 MiB of RSS behind, 1 MiB ~4).
_JOURNAL_BLOCK = 1 << 20
#: Rows per batch when the manifest parquet file is read back.
_MANIFEST_BATCH = 16_384
#: Batches read between two hand-backs of freed memory to the OS.
_RELEASE_EVERY = 8


def _conform(table: pa.Table | pa.RecordBatch, columns: Iterable[str] | None = None) -> pa.Table:
    """``table`` with exactly ``columns`` (default: all of :data:`SCHEMA`) in their types."""
    wanted = list(columns) if columns is not None else SCHEMA.names
    present = set(table.schema.names)
    arrays = []
    for name in wanted:
        field = SCHEMA.field(name)
        if name in present:
            column = table.column(name)
            arrays.append(column if column.type == field.type else column.cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([SCHEMA.field(n) for n in wanted]))


def _parse_journal_block(data: bytes, path: Path) -> pa.Table | None:
    """One block of whole journal lines as a table conformed to :data:`SCHEMA` (None: no rows).

    Arrow's JSON reader builds the columns directly (no Python object per cell); a block it
    cannot take as is (a torn line, rows of an older format) is read row by row, skipping bad
    lines.
    """
    try:
        table = pa_json.read_json(
            pa.py_buffer(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_JOURNAL_SCHEMA, unexpected_field_behavior="ignore"
            ),
            # malloc gives the parser's memory back at once (the default pool keeps ~4x more)
            memory_pool=pa.system_memory_pool(),
        )
    except pa.ArrowException:
        lines = data.decode("utf-8", errors="replace").splitlines()
        rows = [row for row in (_journal_line(line, path) for line in lines) if row is not None]
        return _rows_to_table(rows) if rows else None
    if table["url"].null_count:
        table = table.filter(pc.is_valid(table["url"]))
    if table.num_rows == 0:
        return None
    epoch_ms = pc.cast(pc.floor(pc.multiply(table["updated"], 1000.0)), pa.int64())
    updated = pc.cast(epoch_ms, SCHEMA.field("updated").type)
    index = table.schema.get_field_index("updated")
    return table.set_column(index, SCHEMA.field("updated"), updated)


def _journal_blocks(
    root: Path, name: str, columns: Iterable[str] | None = None
) -> Iterator[pa.Table]:
    """The journal's rows as tables of at most about :data:`_JOURNAL_BLOCK` bytes of text each.

    Deterministic (the same file gives the same blocks), so a merge can read it twice and line
    up positions. Memory: one block of text and its table, whatever the journal's length.
    """
    path = root / name
    wanted = list(columns) if columns is not None else None
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    blocks = 0
    with handle:
        rest = b""
        while True:
            chunk = handle.read(_JOURNAL_BLOCK)
            data = rest + chunk
            if not chunk:  # the end: a last line without newline (maybe torn) is parsed alone
                rest = b""
            else:
                cut = data.rfind(b"\n")
                if cut < 0:  # a line longer than a block: read on
                    rest = data
                    continue
                data, rest = data[: cut + 1], data[cut + 1 :]
            if data.strip():
                table = _parse_journal_block(data, path)
                if table is not None and table.num_rows:
                    yield table if wanted is None else table.select(wanted)
                blocks += 1
                if blocks % _RELEASE_EVERY == 0:
                    release_memory()
            if not chunk:
                return


def _manifest_file_batches(path: Path, columns: Iterable[str] | None = None) -> Iterator[pa.Table]:
    """``path`` (a manifest parquet file) in tables of at most :data:`_MANIFEST_BATCH` rows."""
    wanted = list(columns) if columns is not None else SCHEMA.names
    # no pre-buffering: it keeps whole column chunks resident while they are read
    parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    present = set(parquet.schema_arrow.names)
    read = [name for name in wanted if name in present]
    if not read:  # (only columns the file lacks: nulls, one batch per row group)
        for group in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            yield _conform(pa.table({"_": pa.nulls(rows)}), wanted)
        return
    batches = parquet.iter_batches(batch_size=_MANIFEST_BATCH, columns=read, use_threads=False)
    for i, batch in enumerate(batches, 1):
        yield _conform(batch, wanted)
        if i % _RELEASE_EVERY == 0:  # the allocator keeps freed batches resident otherwise
            release_memory()


def iter_manifest(
    manifest: pa.Table | str | os.PathLike[str],
    columns: Iterable[str] | None = None,
    *,
    batch_size: int = _MANIFEST_BATCH,
) -> Iterator[pa.Table]:
    """The rows of a manifest (a table or a parquet file) in tables of ``batch_size`` rows at most.

    Reading a file this way keeps memory at one batch whatever the manifest's length; the
    batches are conformed to :data:`SCHEMA` (only ``columns``, when given).

    Example:
        >>> table = pa.Table.from_pylist([{"url": "http://h/a", "status": SUCCESS}], schema=SCHEMA)
        >>> [t.num_rows for t in iter_manifest(table, ("url", "status"))]
        [1]
    """
    if isinstance(manifest, pa.Table):
        for batch in manifest.to_batches(max_chunksize=batch_size):
            yield _conform(batch, columns)
        return
    path = Path(os.fspath(manifest))
    if batch_size == _MANIFEST_BATCH:
        yield from _manifest_file_batches(path, columns)
        return
    for table in _manifest_file_batches(path, columns):
        for batch in table.to_batches(max_chunksize=batch_size):
            yield pa.Table.from_batches([batch], schema=table.schema)


def url_digests(urls: Iterable[str | None]) -> np.ndarray:
    """64-bit blake2b digests of ``urls`` (``uint64``; never 0, which marks an empty slot).

    Example:
        >>> url_digests(["http://h/a", "http://h/a", "http://h/b"]).tolist()[0] != 0
        True
    """
    blake2b = hashlib.blake2b
    values = np.fromiter(
        (
            int.from_bytes(
                blake2b((u or "").encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                "little",
            )
            for u in urls
        ),
        dtype=np.uint64,
    )
    values[values == 0] = 1
    return values


def _url_digest(url: str) -> int:
    value = int.from_bytes(
        hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )
    return value or 1


def _digests_of(tables: Iterable[pa.Table]) -> tuple[np.ndarray, int]:
    """The url digests of every row of ``tables`` (in order) and how many rows came from them."""
    parts = [url_digests(t["url"].to_pylist()) for t in tables]
    digests = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    return digests, len(digests)


def _latest_mask(
    digests: np.ndarray,
    rows_at: Callable[[np.ndarray, tuple[str, ...]], pa.Table],
    *,
    by_updated: bool = False,
) -> np.ndarray | None:
    """Which rows are the latest of their url (a bool per row), or None when every url is new.

    The latest is the last row, or with ``by_updated`` the row with the latest ``updated``
    (ties: the last one). Rows are told apart by their 64-bit url digest (8 bytes per row,
    sorted with numpy); only rows whose digest is shared are compared by their url text, which
    ``rows_at(positions, columns)`` returns for the (usually few) positions asked, in their
    order. Memory: about 24 bytes per row, plus the url text of the rows that share a digest.
    """
    n = len(digests)
    if n < 2:
        return None
    order = np.argsort(digests, kind="stable")
    ordered = digests[order]
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return None
    in_group = np.zeros(n, dtype=bool)
    in_group[1:] |= same
    in_group[:-1] |= same
    shared = np.sort(order[in_group])  # positions whose digest another row has
    del order, ordered, same, in_group
    keep = np.ones(n, dtype=bool)
    keep[shared] = False
    if not by_updated:
        urls = rows_at(shared, ("url",))["url"]
        latest = (
            pa.table({"url": urls, "position": pa.array(shared, pa.int64())})
            .group_by("url", use_threads=False)
            .aggregate([("position", "max")])["position_max"]
        )
        keep[latest.to_numpy()] = True
        return keep
    rows = rows_at(shared, ("url", "updated"))
    ranked = pa.table(
        {"url": rows["url"], "updated": rows["updated"], "position": pa.array(shared, pa.int64())}
    ).sort_by([("url", "ascending"), ("updated", "ascending"), ("position", "ascending")])
    urls = ranked["url"]
    is_last = np.ones(len(shared), dtype=bool)
    if len(shared) > 1:
        same_url = pc.equal(urls.slice(0, len(shared) - 1), urls.slice(1))
        is_last[:-1] = ~np.asarray(pc.fill_null(same_url, False).to_numpy(zero_copy_only=False))
    keep[ranked["position"].to_numpy()[is_last]] = True
    return keep


def _take_positions(
    tables: Iterable[pa.Table], positions: np.ndarray, columns: tuple[str, ...]
) -> pa.Table:
    """The ``columns`` of the rows at sorted global ``positions`` of the rows of ``tables``."""
    parts = []
    offset = 0
    for table in tables:
        end = offset + table.num_rows
        lo, hi = np.searchsorted(positions, [offset, end])
        if hi > lo:
            local = pa.array(positions[lo:hi] - offset, pa.int64())
            parts.append(table.select(list(columns)).take(local))
        offset = end
    schema = pa.schema([SCHEMA.field(name) for name in columns])
    return pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()


def _merge_sources(
    sources: list[Callable[[], Iterator[pa.Table]]],
    target: Path,
    *,
    fsync: bool = False,
    by_updated: bool = False,
) -> int:
    """Write the rows of ``sources`` (one per url, the latest) to the parquet file ``target``.

    The latest row of a url is the last one, or with ``by_updated`` the one with the latest
    ``updated`` (ties: the last one). Each source is a function returning a fresh iterator over
    the same tables (conformed to :data:`SCHEMA`), so the rows are streamed twice (digests, then
    writing with a ``ParquetWriter``) and never held all at once. Kept rows keep their order.
    ``target`` is replaced atomically (it may be one of the sources). Returns the rows written.
    """

    def every_table() -> Iterator[pa.Table]:
        for source in sources:
            yield from source()

    digests, _ = _digests_of(every_table())
    keep = _latest_mask(
        digests,
        lambda positions, columns: _take_positions(every_table(), positions, columns),
        by_updated=by_updated,
    )
    del digests
    written = 0
    with atomic_path(target, fsync=fsync) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
        pending: list[pa.Table] = []  # rows of the next row group (a few blocks of the journal)
        pending_rows = 0
        offset = 0
        for table in every_table():
            end = offset + table.num_rows
            if keep is not None:
                mask = keep[offset:end]
                if not mask.all():
                    table = table.filter(pa.array(mask))
            offset = end
            if table.num_rows:
                pending.append(table)
                pending_rows += table.num_rows
                written += table.num_rows
            if pending_rows >= _MANIFEST_BATCH:
                writer.write_table(pa.concat_tables(pending), row_group_size=_MANIFEST_BATCH)
                pending, pending_rows = [], 0
        if pending or written == 0:
            writer.write_table(pa.concat_tables(pending) if pending else SCHEMA.empty_table())
    return written


def merge_manifest_files(
    paths: Iterable[Path | str], target: Path | str, *, fsync: bool = False
) -> int:
    """Write one row per url, the one with the latest ``updated``, of the manifest parquet
    files ``paths`` (ties: the later file) to ``target``, atomically; return the row count.

    Streaming, as :func:`merge_journal_file`: a batch of rows at a time plus about 24 bytes per
    row. ``target`` may be one of ``paths``.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> merge_manifest_files([], root / MANIFEST_NAME)
        0
    """
    sources: list[Callable[[], Iterator[pa.Table]]] = [
        functools.partial(_manifest_file_batches, Path(os.fspath(p))) for p in paths
    ]
    return _merge_sources(sources, Path(os.fspath(target)), fsync=fsync, by_updated=True)


def merge_journal_file(
    root: Path | str,
    *,
    fsync: bool = False,
    manifest_name: str = MANIFEST_NAME,
    journal_name: str = JOURNAL_NAME,
) -> Path | None:
    """:func:`merge_journal` without loading the result: returns the manifest's path, or None.

    Streaming: the journal is parsed in blocks and the old manifest read in row batches, twice
    (url digests to find the latest row of each url, then writing with a ``ParquetWriter``), so
    memory stays at a block plus about 24 bytes per row, whatever the number of rows.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with Journal(root) as journal:
        ...     journal.append(manifest_row({"url": "http://h/a.jpg"}, status=FAILED))
        ...     journal.append(manifest_row({"url": "http://h/a.jpg"}, status=SUCCESS))
        >>> path = merge_journal_file(root)
        >>> pq.read_table(path)["status"].to_pylist()
        ['success']
    """
    root = Path(root)
    manifest = root / manifest_name
    journal = root / journal_name
    try:
        has_rows = journal.stat().st_size > 0
    except FileNotFoundError:
        has_rows = False
    if has_rows:  # (only torn or invalid lines: nothing to merge)
        has_rows = next(_journal_blocks(root, journal_name), None) is not None
    if not has_rows:
        _truncate_journal(root, journal_name)
        return manifest if manifest.exists() else None
    sources: list[Callable[[], Iterator[pa.Table]]] = []
    if manifest.exists():
        sources.append(lambda: _manifest_file_batches(manifest))
    sources.append(lambda: _journal_blocks(root, journal_name))
    rows = _merge_sources(sources, manifest, fsync=fsync)
    _truncate_journal(root, journal_name)
    logger.debug("merged the journal into %s (%d rows)", manifest, rows)
    return manifest


def merge_journal(
    root: Path | str,
    *,
    fsync: bool = False,
    manifest_name: str = MANIFEST_NAME,
    journal_name: str = JOURNAL_NAME,
) -> pa.Table | None:
    """Merge the journal into ``manifest.parquet`` (dedupe by url, latest wins), then truncate it.

    The parquet file is replaced atomically; if the process dies before the journal is
    truncated, the next merge applies the same rows again with the same result.
    Returns the merged manifest (None when there is neither a manifest nor a journal).
    ``manifest_name`` / ``journal_name`` select another pair of files at the root (a shard's
    manifest part and journal, see :mod:`gbif_dl.shard`). The merge itself streams
    (:func:`merge_journal_file`); only the returned table is whole: large jobs call
    :func:`merge_journal_file` and read the result with :func:`iter_manifest`.
    """
    path = merge_journal_file(
        root, fsync=fsync, manifest_name=manifest_name, journal_name=journal_name
    )
    return read_manifest(root, name=manifest_name) if path is not None else None


def _truncate_journal(root: Path, name: str = JOURNAL_NAME) -> None:
    path = root / name
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size:
            os.truncate(path, 0)


_STATUS_NAMES = (FAILED, SUCCESS, "pending", "finished", None)
_FAILED_CODE, _SUCCESS_CODE, _PENDING_CODE, _FINISHED_CODE, _REMOVED_CODE = range(5)
#: Slot values of urls first seen in this run (no manifest row): their state only.
_NEW_PENDING, _NEW_FINISHED, _NEW_REMOVED = -1, -2, -3
_MAX_LOAD = 2 / 3


class ResumeIndex:
    """``url -> (status, path)`` for resume decisions, stored compactly; O(1) lookups.

    Rows known from the manifest live in Arrow arrays (the url and path text as in the
    manifest, the status as one byte); an open-addressing hash table maps the 64-bit blake2b
    digest of a url to its row (``uint64`` key + ``int32`` value = 12 bytes a slot, at most 2/3
    full). A digest hit is confirmed with the stored url, so two urls sharing a digest never mix.
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
    def from_arrays(cls, urls: pa.Array, statuses: pa.Array, paths: pa.Array) -> ResumeIndex:
        """An index of distinct ``urls`` with their manifest ``statuses`` and ``paths``."""
        index = cls()
        if len(urls) == 0:
            return index
        index._urls = urls.cast(pa.large_string())
        index._paths = paths.cast(pa.large_string())
        status = np.full(len(urls), _FAILED_CODE, dtype=np.uint8)
        status[np.asarray(pc.fill_null(pc.equal(statuses, SUCCESS), False))] = _SUCCESS_CODE
        index._status = status
        step = _MANIFEST_BATCH  # a batch of url strings as Python objects at a time
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
        slot, _ = self._find(url, _url_digest(url))
        if slot < 0:
            return default
        value = int(self._values[slot])
        if value < 0:
            if value == _NEW_REMOVED:
                return default
            return ("pending", None) if value == _NEW_PENDING else ("finished", None)
        code = int(self._status[value])
        if code == _REMOVED_CODE:
            return default
        if code == _FINISHED_CODE:
            return ("finished", None)
        return (_STATUS_NAMES[code], self._paths[value].as_py())  # type: ignore[index]

    def __getitem__(self, url: str) -> tuple[str, str | None]:
        found = self.get(url)
        if found is None:
            raise KeyError(url)
        return found

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and self.get(url) is not None

    def __setitem__(self, url: str, entry: tuple[str, str | None]) -> None:
        status, path = entry
        key = _url_digest(url)
        slot, _ = self._find(url, key)
        self._extra.pop(url, None)
        value = int(self._values[slot]) if slot >= 0 else None
        if value is not None and value >= 0:
            if status == "finished" and path is None:
                self._status[value] = _FINISHED_CODE
                return
            if status in _STATUS_NAMES[:3] and path == self._paths[value].as_py():  # type: ignore[index]
                self._status[value] = _STATUS_NAMES.index(status)
                return
            self._status[value] = _REMOVED_CODE  # the dict below holds it now
        elif path is None and status in ("pending", "finished"):
            state = _NEW_PENDING if status == "pending" else _NEW_FINISHED
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
        slot, _ = self._find(url, _url_digest(url))
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
    """``url -> (status, path)`` for every manifest row plus unmerged journal rows (journal wins).

    Loaded once per run (streaming: a batch of rows at a time) into a compact
    :class:`ResumeIndex`; afterwards each resume decision is a hash lookup.
    """
    root = Path(root)
    manifest = root / manifest_name
    columns = ("url", "status", "path")
    sources: list[Callable[[], Iterator[pa.Table]]] = []
    if manifest.exists():
        sources.append(lambda: _manifest_file_batches(manifest, columns))
    sources.append(lambda: _journal_blocks(root, journal_name, columns))

    def every_table() -> Iterator[pa.Table]:
        for source in sources:
            for table in source():
                yield table.filter(pc.is_valid(table["url"])) if table["url"].null_count else table

    digests, _ = _digests_of(every_table())
    keep = _latest_mask(
        digests, lambda positions, names: _take_positions(every_table(), positions, names)
    )
    del digests
    parts: dict[str, list[pa.Array]] = {name: [] for name in columns}
    offset = 0
    for table in every_table():
        end = offset + table.num_rows
        if keep is not None:
            table = table.filter(pa.array(keep[offset:end]))
        offset = end
        for name in columns:
            parts[name].extend(table[name].cast(pa.large_string()).chunks)
    if not parts["url"]:
        return ResumeIndex()
    urls, statuses, paths = (
        pa.concat_arrays(parts[name]) if parts[name] else pa.array([], pa.large_string())
        for name in columns
    )
    return ResumeIndex.from_arrays(urls, statuses, paths)

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
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from gbif_dl.records import url_basename
from gbif_dl.writers._atomic import atomic_path

__all__ = [
    "FAILED",
    "JOURNAL_NAME",
    "MANIFEST_NAME",
    "SCHEMA",
    "SUCCESS",
    "Journal",
    "load_index",
    "manifest_row",
    "merge_journal",
    "read_journal",
    "read_manifest",
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
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("ignoring torn line %d of %s", number, path)
                continue
            if isinstance(row, dict) and isinstance(row.get("url"), str):
                yield row


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


def _journal_table(root: Path, name: str) -> pa.Table | None:
    """The journal as an Arrow table conformed to :data:`SCHEMA` (None when it has no rows).

    Arrow's JSON reader builds the columns directly (fast, and no Python object per cell, so
    memory stays near the table's own size); a journal it cannot take as is (a torn last line,
    rows of an older format) is read row by row, skipping bad lines.
    """
    path = root / name
    try:
        if path.stat().st_size == 0:
            return None
        with pa.OSFile(str(path)) as source:  # read, not memory-mapped: RSS stays the table's
            table = pa_json.read_json(
                source,
                read_options=pa_json.ReadOptions(use_threads=False),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=_JOURNAL_SCHEMA, unexpected_field_behavior="ignore"
                ),
            )
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError):
        parts = [_rows_to_table(rows) for rows in _batched(_iter_journal(root, name), _MERGE_BATCH)]
        return pa.concat_tables(parts) if parts else None
    if table["url"].null_count:  # (a filter copies every column)
        table = table.filter(pc.is_valid(table["url"]))
    if table.num_rows == 0:
        return None
    epoch_ms = pc.cast(pc.floor(pc.multiply(table["updated"], 1000.0)), pa.int64())
    updated = pc.cast(epoch_ms, SCHEMA.field("updated").type)
    index = table.schema.get_field_index("updated")
    return table.set_column(index, SCHEMA.field("updated"), updated)


def _latest_per_url(table: pa.Table) -> pa.Table:
    """One row per url, the latest one, in the order of the latest occurrences."""
    if pc.count_distinct(table["url"]).as_py() == table.num_rows:
        return table
    positions = pa.array(range(table.num_rows), pa.int64())
    latest = (
        pa.table({"url": table["url"], "position": positions})
        .group_by("url")
        .aggregate([("position", "max")])["position_max"]
    )
    return table.take(pc.take(latest, pc.sort_indices(latest)))


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
    manifest part and journal, see :mod:`gbif_dl.shard`).
    """
    root = Path(root)
    journal = _journal_table(root, journal_name)
    old = read_manifest(root, name=manifest_name)
    if journal is None:
        _truncate_journal(root, journal_name)
        return old
    journaled = journal.num_rows
    new = _latest_per_url(journal)
    del journal
    if old is not None and old.num_rows:
        keep = pc.invert(pc.is_in(old["url"], value_set=new["url"]))
        merged = pa.concat_tables([old.filter(keep), new])
    else:
        merged = new
    with atomic_path(root / manifest_name, fsync=fsync) as tmp:
        pq.write_table(merged, tmp)
    _truncate_journal(root, journal_name)
    logger.debug("merged %d journal rows into %s", journaled, root / manifest_name)
    return merged


def _truncate_journal(root: Path, name: str = JOURNAL_NAME) -> None:
    path = root / name
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size:
            os.truncate(path, 0)


def load_index(
    root: Path | str, *, manifest_name: str = MANIFEST_NAME, journal_name: str = JOURNAL_NAME
) -> dict[str, tuple[str, str | None]]:
    """``url -> (status, path)`` for every manifest row plus unmerged journal rows (journal wins).

    Loaded once per run; afterwards each resume decision is a dict lookup.
    """
    index: dict[str, tuple[str, str | None]] = {}
    table = read_manifest(root, columns=("url", "status", "path"), name=manifest_name)
    if table is not None:
        for url, status, path in zip(
            table["url"].to_pylist(),
            table["status"].to_pylist(),
            table["path"].to_pylist(),
            strict=True,
        ):
            if url is not None:
                index[url] = (status or FAILED, path)
    for row in _iter_journal(root, journal_name):
        index[row["url"]] = (row.get("status") or FAILED, row.get("path"))
    return index

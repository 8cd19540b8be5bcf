"""The manifest table (``manifest.parquet``): its schema, its rows, reading and merging files.

The manifest has one row per record, failures included: where the file is, which GBIF record,
licence and rights holder it comes from, and how the download went (status, typed reason, HTTP
status, bytes, sha256, pixel size). It drives resume and feeds the attribution files and the
report. Its ``status`` is one of :data:`STATUSES`: :data:`SUCCESS`, :data:`FAILED`, or (the same
photo as a stored file, see :mod:`gbif_dl.dedupe`) :data:`DUPLICATE`, :data:`NEAR_DUPLICATE` or
:data:`PLACEHOLDER`; ``duplicate_of`` then names the kept file.

Reading streams: :func:`iter_manifest` yields batches of rows conformed to :data:`SCHEMA`, so
memory stays at one batch whatever the manifest's length. Merging streams too
(:func:`latest_rows`, :func:`write_manifest`): the rows are read twice, once for their url
digests (sorted on disk, so memory does not grow with the rows) and once to write the latest
row of each url.

Example:
    >>> row = manifest_row({"url": "http://h/a.jpg", "label": "x"}, status=SUCCESS,
    ...                    path="x/a.jpg", nbytes=10)
    >>> table = rows_to_table([row])
    >>> table.num_rows, table["status"][0].as_py(), table["host"][0].as_py()
    (1, 'success', 'h')
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gbif_dl._memory import release_memory
from gbif_dl.manifest.spill import ExternalSorter, SpillFiles
from gbif_dl.records import RECORD_FIELDS, host_key, public_url, url_basename, url_digest
from gbif_dl.writers._atomic import atomic_path

__all__ = [
    "DUPLICATE",
    "FAILED",
    "MANIFEST_NAME",
    "NEAR_DUPLICATE",
    "NOT_STORED",
    "PLACEHOLDER",
    "RECORD_COLUMNS",
    "REPLAY_BYTES",
    "SCHEMA",
    "STATUSES",
    "SUCCESS",
    "TRIMMED",
    "TableSource",
    "conform",
    "iter_manifest",
    "latest_rows",
    "manifest_row",
    "merge_manifest_files",
    "read_manifest",
    "rows_to_table",
    "stored_counts",
    "url_digests",
    "url_host",
    "write_manifest",
]

MANIFEST_NAME = "manifest.parquet"

SUCCESS = "success"
FAILED = "failed"
#: A stored file removed to keep a balanced request equal (``short_streams="trim"``).
TRIMMED = "trimmed"
#: The same bytes as a stored file (``duplicate_of``): not stored again.
DUPLICATE = "duplicate"
#: Looks like a stored file (``duplicate_of``; dropped on request, or to keep splits apart).
NEAR_DUPLICATE = "near_duplicate"
#: One image behind the URLs of many occurrences (a publisher's "no image" picture): removed.
PLACEHOLDER = "placeholder"
#: Every ``status`` the manifest writes.
STATUSES = (SUCCESS, FAILED, TRIMMED, DUPLICATE, NEAR_DUPLICATE, PLACEHOLDER)
#: The statuses of a fetched image that is deliberately not stored: permanent, like a 404
#: (a rerun does not request them again), with the status as their ``reason`` too.
NOT_STORED = (DUPLICATE, NEAR_DUPLICATE, PLACEHOLDER)

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
        ("status", pa.string()),  # one of STATUSES
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
        ("fetched_url", pa.string()),  # the URL requested: url, or a rendition of it
        ("stream", pa.string()),  # the sampling stream of a quota'd item (gbif_dl.sampling.spares)
        ("quota", pa.int64()),  # that stream's target count of stored items
        ("spare", pa.bool_()),  # drawn as a spare (fetched only when its stream needed it)
        ("phash", pa.string()),  # 64-bit dHash of the stored image, 16 hex digits
        ("duplicate_of", pa.string()),  # the path of the kept file this one duplicates / follows
    ]
)

#: Columns that :func:`manifest_row` takes from the record itself rather than from the result.
_ROW_HEAD = ("url", "basename", "label", "subset")
#: The other record fields a manifest row copies (in :data:`SCHEMA` order): the fields of
#: :data:`gbif_dl.records.RECORD_FIELDS` that are manifest columns, and the download's DOI.
RECORD_COLUMNS: tuple[str, ...] = (
    *(n for n in SCHEMA.names if n in RECORD_FIELDS and n not in _ROW_HEAD),
    "downloadDOI",
)
_MAX_TEXT = 2000  # bound on free-text cells taken from untrusted records
#: Rows per batch when a manifest parquet file is read (and per row group when one is written).
_MANIFEST_BATCH = 16_384
#: Batches read between two hand-backs of freed memory to the OS.
_RELEASE_EVERY = 8

#: A function returning a fresh iterator over the same tables (conformed to :data:`SCHEMA`):
#: the merges read their sources twice.
TableSource = Callable[[], Iterator[pa.Table]]


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
    """:func:`gbif_dl.records.host_key` of ``url`` as a manifest cell (valid UTF-8, bounded).

    Example:
        >>> url_host("http://Img.Example.org:8080/a.jpg"), url_host("https://x.org/a.jpg")
        ('img.example.org:8080', 'x.org')
        >>> url_host("invalid:abc") is None
        True
    """
    host = host_key(url)
    return _utf8(host)[:_MAX_TEXT] if host else None


def _without_credentials(text: str, url: str) -> str:
    """``text`` with the ``user:password@`` part of ``url`` (and ``url`` itself) removed."""
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    text = text.replace(url, public_url(url))
    return text.replace(userinfo + "@", "") if userinfo else text


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
    fetched_url: str | None = None,
    phash: str | None = None,
    duplicate_of: str | None = None,
) -> dict[str, Any]:
    """One manifest row (a JSON-serialisable dict) for ``record``.

    ``host`` defaults to the ``host:port`` of the record's url (:func:`url_host`);
    ``elapsed_s`` (seconds from the first request to the result) is None when no request was
    made. ``fetched_url`` is the URL requested, when it was: the url itself, or a smaller
    rendition of it (:mod:`gbif_dl.fetch.renditions`). The urls are stored without
    credentials (:func:`gbif_dl.records.public_url`; the same form keys the resume index), and
    they are removed from ``detail`` too.

    Example:
        >>> row = manifest_row({"url": "http://h:81/a.jpg", "gbifID": 12}, status=FAILED,
        ...                    reason="http_status", http_status=404, attempts=1, elapsed_s=0.5)
        >>> row["gbifID"], row["reason"], row["path"], row["host"], row["elapsed_s"]
        ('12', 'http_status', None, 'h:81', 0.5)
        >>> manifest_row({"url": "http://u:pw@h/a.jpg"}, status=FAILED, detail="at u:pw@h")["url"]
        'http://h/a.jpg'

    """
    raw_url = str(record.get("url") or "")
    url = _utf8(public_url(raw_url))
    if detail and url != raw_url:
        detail = _without_credentials(detail, raw_url)
    row: dict[str, Any] = {
        "url": url,
        "basename": _text(record.get("basename")) or url_basename(url),
        "path": path,
        "label": _text(record.get("label")),
        "subset": _text(record.get("subset")),
    }
    for name in RECORD_COLUMNS:
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
        fetched_url=_utf8(public_url(fetched_url))[:_MAX_TEXT] if fetched_url else None,
        phash=phash,
        duplicate_of=duplicate_of,
    )
    if record.get("stream") is not None:  # a quota'd item (gbif_dl.sampling.spares)
        quota = record.get("quota")
        row.update(
            stream=_text(record["stream"]),
            quota=int(quota) if isinstance(quota, int) else None,
            spare=bool(record.get("spare")),
        )
    return row


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts as :func:`manifest_row` makes them) as a table of :data:`SCHEMA`.

    ``updated`` may be epoch seconds (as in the journal), ISO text or a datetime.

    Example:
        >>> rows_to_table([{"url": "http://h/a", "updated": 0}])["updated"][0].as_py().year
        1970
    """
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


def conform(table: pa.Table | pa.RecordBatch, columns: Iterable[str] | None = None) -> pa.Table:
    """``table`` with exactly ``columns`` (default: all of :data:`SCHEMA`) in their types;
    a column the table lacks is all nulls.

    Example:
        >>> conform(pa.table({"url": ["http://h/a"]}), ("url", "status")).to_pylist()
        [{'url': 'http://h/a', 'status': None}]
    """
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


def read_manifest(
    root: Path | str, columns: Iterable[str] | None = None, *, name: str = MANIFEST_NAME
) -> pa.Table | None:
    """``root/manifest.parquet`` conformed to :data:`SCHEMA` (or only ``columns``), or None.

    The whole table: large manifests are read in batches with :func:`iter_manifest`.

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
    return conform(pq.read_table(path, columns=[n for n in wanted if n in present]), wanted)


def _file_batches(path: Path, columns: Iterable[str] | None = None) -> Iterator[pa.Table]:
    """``path`` (a manifest parquet file) in tables of at most :data:`_MANIFEST_BATCH` rows."""
    wanted = list(columns) if columns is not None else SCHEMA.names
    # no pre-buffering: it keeps whole column chunks resident while they are read
    parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    present = set(parquet.schema_arrow.names)
    read = [name for name in wanted if name in present]
    if not read:  # (only columns the file lacks: nulls, one batch per row group)
        for group in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            yield conform(pa.table({"_": pa.nulls(rows)}), wanted)
        return
    batches = parquet.iter_batches(batch_size=_MANIFEST_BATCH, columns=read, use_threads=False)
    for i, batch in enumerate(batches, 1):
        yield conform(batch, wanted)
        if i % _RELEASE_EVERY == 0:  # the allocator keeps freed batches resident otherwise
            release_memory()


def iter_manifest(
    manifest: pa.Table | str | os.PathLike[str],
    columns: Iterable[str] | None = None,
    *,
    batch_size: int | None = None,
) -> Iterator[pa.Table]:
    """The rows of a manifest (a table or a parquet file) in tables of ``batch_size`` rows at
    most (default 16,384).

    Reading a file this way keeps memory at one batch whatever the manifest's length; the
    batches are conformed to :data:`SCHEMA` (only ``columns``, when given).

    Example:
        >>> table = pa.Table.from_pylist([{"url": "http://h/a", "status": SUCCESS}], schema=SCHEMA)
        >>> [t.num_rows for t in iter_manifest(table, ("url", "status"))]
        [1]
    """
    if isinstance(manifest, pa.Table):
        for batch in manifest.to_batches(max_chunksize=batch_size or _MANIFEST_BATCH):
            yield conform(batch, columns)
        return
    path = Path(os.fspath(manifest))
    if batch_size is None or batch_size == _MANIFEST_BATCH:
        yield from _file_batches(path, columns)
        return
    for table in _file_batches(path, columns):
        for batch in table.to_batches(max_chunksize=batch_size):
            yield pa.Table.from_batches([batch], schema=table.schema)


def stored_counts(manifest: Path | str, by: str) -> dict[Any, int]:
    """How many stored images (status :data:`SUCCESS`) a manifest file holds per value of its
    column ``by`` (for example the sampling ``stream`` of each item); rows whose value is null
    are not counted, and ``{}`` comes back when the file or the column is missing.

    Reads the two columns a batch at a time: memory is a batch plus one count per value.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / MANIFEST_NAME
        >>> _ = write_manifest([rows_to_table([
        ...     {"url": "http://h/a", "status": SUCCESS, "label": "bee"},
        ...     {"url": "http://h/b", "status": FAILED, "label": "bee"},
        ...     {"url": "http://h/c", "status": SUCCESS, "label": "ant"}])], path)
        >>> stored_counts(path, "label"), stored_counts(path, "no such column")
        ({'bee': 1, 'ant': 1}, {})
    """
    path = Path(manifest)
    if not path.is_file():
        return {}
    parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    if by not in parquet.schema_arrow.names or "status" not in parquet.schema_arrow.names:
        return {}
    counts: dict[Any, int] = {}
    columns = [by, "status"]
    for batch in parquet.iter_batches(
        batch_size=_MANIFEST_BATCH, columns=columns, use_threads=False
    ):
        stored = batch.column(0).filter(pc.fill_null(pc.equal(batch.column(1), SUCCESS), False))
        for item in pc.value_counts(stored.drop_null()).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + int(item["counts"])
    return counts


# --- merging: one row per url, the latest -----------------------------------------------------


def url_digests(urls: Iterable[str | None]) -> np.ndarray:
    """:func:`gbif_dl.records.url_digest` of each of ``urls``, as a ``uint64`` array.

    Example:
        >>> url_digests(["http://h/a", None]).tolist() == [url_digest("http://h/a"), url_digest("")]
        True
    """
    return np.fromiter(map(url_digest, urls), dtype=np.uint64)


def _check_digests(urls: list[str | None]) -> np.ndarray:
    """A second 64-bit digest of each url, independent of :func:`url_digests`: the first 64
    bits of its sha1 (:func:`gbif_dl.records.url_basename`). Two urls are taken as one when
    both digests agree (128 bits: about 1e-21 for a billion urls)."""
    return np.fromiter(
        (int(url_basename(url or "")[:16], 16) for url in urls), dtype=np.uint64, count=len(urls)
    )


#: What the merge sorts for each row: its url digests, ``updated`` (ms) and global position.
_MERGE_KEY = np.dtype([("key", "u8"), ("check", "u8"), ("updated", "i8"), ("pos", "u8")])
#: A row position to leave out of the merged rows.
_POSITION = np.dtype([("key", "u8")])
_NO_TIME = np.iinfo(np.int64).max  # a row without ``updated`` sorts last (as Arrow's nulls)


def _merge_keys(table: pa.Table, offset: int, by_updated: bool) -> np.ndarray:
    """The :data:`_MERGE_KEY` records of ``table``'s rows (positions from ``offset``)."""
    urls = table["url"].to_pylist()
    keys = np.zeros(len(urls), dtype=_MERGE_KEY)
    keys["key"] = url_digests(urls)
    keys["check"] = _check_digests(urls)
    if by_updated:
        updated = pc.cast(table["updated"], pa.int64())
        keys["updated"] = np.asarray(pc.fill_null(updated, _NO_TIME), dtype=np.int64)
    keys["pos"] = np.arange(offset, offset + len(urls), dtype=np.uint64)
    return keys


def _dropped_positions(
    tables: Iterable[pa.Table], files: SpillFiles, *, by_updated: bool
) -> Iterator[np.ndarray]:
    """The positions of the rows that are not the latest of their url, ascending, in chunks.

    An external sort by (url digests, [updated,] position): the last row of each url group
    wins; the positions of the others are sorted again (externally) to be read in order.
    Memory: a chunk of the sorts and a block per sorted run, whatever the number of rows.
    """
    order = ("key", "check", "updated", "pos") if by_updated else ("key", "check", "pos")
    rows = ExternalSorter(_MERGE_KEY, order, files)
    for table in tables:
        rows.add(_merge_keys(table, rows.count, by_updated))
    dropped = ExternalSorter(_POSITION, ("key",), files)
    for chunk in rows.sorted_chunks():
        if len(chunk) < 2:
            continue
        keys, checks = chunk["key"], chunk["check"]
        superseded = (keys[1:] == keys[:-1]) & (checks[1:] == checks[:-1])
        if superseded.any():
            positions = np.zeros(int(superseded.sum()), dtype=_POSITION)
            positions["key"] = chunk["pos"][:-1][superseded]
            dropped.add(positions)
    for chunk in dropped.sorted_chunks():
        yield chunk["key"]


#: :func:`latest_rows` keeps the tables of its first reading for the second while they hold at
#: most this many bytes (a shard's journal, a small run's manifest): parsing a 2,000-row
#: journal again took about 16 of the 56 ms (medians) of writing a shard's manifest part.
REPLAY_BYTES = 16 * 2**20


class _Replay:
    """The tables of ``sources``, read by :meth:`first`, then by :meth:`again` (after
    ``first`` is exhausted): from memory while they total at most ``limit`` bytes, else read
    from the sources again."""

    def __init__(self, sources: list[TableSource], limit: int) -> None:
        self.sources = sources
        self.limit = limit
        self.kept: list[pa.Table] | None = []
        self.size = 0

    def first(self) -> Iterator[pa.Table]:
        for source in self.sources:
            for table in source():
                if self.kept is not None:
                    self.size += table.nbytes
                    if self.size <= self.limit:
                        self.kept.append(table)
                    else:  # too many to keep: the sources are read again
                        self.kept = None
                yield table

    def again(self) -> Iterator[pa.Table]:
        if self.kept is not None:
            kept, self.kept = self.kept[::-1], None
            while kept:  # each table is let go once it is handed on
                yield kept.pop()
            return
        for source in self.sources:
            yield from source()


def latest_rows(
    sources: Iterable[TableSource], *, by_updated: bool = False, replay_bytes: int = REPLAY_BYTES
) -> Iterator[pa.Table]:
    """The rows of ``sources``, one per url, in their order: the latest row of each url.

    The latest row is the last one, or with ``by_updated`` the one with the latest ``updated``
    (ties: the last one). The rows are read twice: once for the url digests, sorted on disk
    (:class:`~gbif_dl.manifest.spill.ExternalSorter`) to find the rows that another row of
    their url supersedes, then to yield the rows kept. The second reading comes from memory
    when the tables hold at most ``replay_bytes``, else from the sources again. Memory stays at
    ``replay_bytes``, a batch of rows and the sorts' chunks, whatever the number of rows.

    Example:
        >>> rows = rows_to_table([{"url": "http://h/a", "status": FAILED},
        ...                       {"url": "http://h/b", "status": SUCCESS},
        ...                       {"url": "http://h/a", "status": SUCCESS}])
        >>> [t.to_pydict()["status"] for t in latest_rows([lambda: iter([rows])])]
        [['success', 'success']]
    """
    tables = _Replay(list(sources), replay_bytes)
    with SpillFiles() as files:
        dropped = _dropped_positions(tables.first(), files, by_updated=by_updated)
        pending = next(dropped, np.zeros(0, np.uint64))  # (the first reading is done)
        offset = 0
        for table in tables.again():
            end = offset + table.num_rows
            here = []  # the dropped positions of this table
            while len(pending) and int(pending[0]) < end:
                cut = int(np.searchsorted(pending, end))
                here.append(pending[:cut])
                pending = pending[cut:] if cut < len(pending) else next(dropped, pending[:0])
            if here:
                mask = np.ones(table.num_rows, dtype=bool)
                mask[(np.concatenate(here) - offset).astype(np.int64)] = False
                table = table.filter(pa.array(mask))
            offset = end
            if table.num_rows:
                yield table


def write_manifest(tables: Iterable[pa.Table], target: Path | str, *, fsync: bool = False) -> int:
    """Write ``tables`` (conformed to :data:`SCHEMA`) to the parquet file ``target``, atomically,
    in row groups of 16,384 rows; return the rows written. ``target`` may be read by ``tables``
    while they are written (it is replaced only at the end).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / MANIFEST_NAME
        >>> write_manifest([rows_to_table([{"url": "http://h/a"}])], target)
        1
    """
    written = 0
    with atomic_path(Path(target), fsync=fsync) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
        pending: list[pa.Table] = []  # rows of the next row group (a few blocks of the journal)
        pending_rows = 0
        for table in tables:
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

    Streaming (:func:`latest_rows`): a batch of rows at a time and the sorts' bounded chunks.
    ``target`` may be one of ``paths``.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> merge_manifest_files([], root / MANIFEST_NAME)
        0
    """
    sources: list[TableSource] = [
        functools.partial(_file_batches, Path(os.fspath(p))) for p in paths
    ]
    return write_manifest(latest_rows(sources, by_updated=True), target, fsync=fsync)

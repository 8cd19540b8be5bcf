"""The manifest table (``manifest.parquet``): its schema, its rows, reading and merging files.

The manifest has one row per record, failures included: where the file is, which GBIF record,
licence and rights holder it comes from, and how the download went (status, typed reason, HTTP
status, bytes, sha256, pixel size). It drives resume and feeds the attribution files and the
report. Its ``status`` is one of :data:`STATUSES`: :data:`SUCCESS`, :data:`FAILED`, or (the same
photo as a stored file, see :mod:`gbif_dl.dedupe`) :data:`DUPLICATE`, :data:`NEAR_DUPLICATE` or
:data:`PLACEHOLDER`; ``duplicate_of`` then names the kept file.

Reading streams: :func:`iter_manifest` yields batches of rows conformed to :data:`SCHEMA`, so
memory stays at one batch whatever the manifest's length. Merging streams too
(:func:`latest_rows`, :func:`write_manifest`): the rows are read twice, once for their 64-bit
url digests (8 bytes a row) and once to write the latest row of each url.

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
    "SCHEMA",
    "STATUSES",
    "SUCCESS",
    "TableSource",
    "conform",
    "iter_manifest",
    "latest_rows",
    "manifest_row",
    "merge_manifest_files",
    "read_manifest",
    "rows_to_table",
    "url_digests",
    "url_host",
    "write_manifest",
]

MANIFEST_NAME = "manifest.parquet"

SUCCESS = "success"
FAILED = "failed"
#: The same bytes as a stored file (``duplicate_of``): not stored again.
DUPLICATE = "duplicate"
#: Looks like a stored file (``duplicate_of``; dropped on request, or to keep splits apart).
NEAR_DUPLICATE = "near_duplicate"
#: One image behind the URLs of many occurrences (a publisher's "no image" picture): removed.
PLACEHOLDER = "placeholder"
#: Every ``status`` the manifest writes.
STATUSES = (SUCCESS, FAILED, DUPLICATE, NEAR_DUPLICATE, PLACEHOLDER)
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
    phash: str | None = None,
    duplicate_of: str | None = None,
) -> dict[str, Any]:
    """One manifest row (a JSON-serialisable dict) for ``record``.

    ``host`` defaults to the ``host:port`` of the record's url (:func:`url_host`);
    ``elapsed_s`` (seconds from the first request to the result) is None when no request was
    made. The url is stored without credentials (:func:`gbif_dl.records.public_url`; the same
    form keys the resume index), and they are removed from ``detail`` too.

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
        phash=phash,
        duplicate_of=duplicate_of,
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


# --- merging: one row per url, the latest -----------------------------------------------------


def url_digests(urls: Iterable[str | None]) -> np.ndarray:
    """:func:`gbif_dl.records.url_digest` of each of ``urls``, as a ``uint64`` array.

    Example:
        >>> url_digests(["http://h/a", None]).tolist() == [url_digest("http://h/a"), url_digest("")]
        True
    """
    return np.fromiter(map(url_digest, urls), dtype=np.uint64)


def _digests_of(tables: Iterable[pa.Table]) -> np.ndarray:
    """The url digests of every row of ``tables``, in order."""
    parts = [url_digests(t["url"].to_pylist()) for t in tables]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def _shared_positions(digests: np.ndarray) -> np.ndarray:
    """The positions (sorted) of the rows whose digest another row has."""
    order = np.argsort(digests, kind="stable")
    ordered = digests[order]
    same = ordered[1:] == ordered[:-1]
    in_group = np.zeros(len(digests), dtype=bool)
    in_group[1:] |= same
    in_group[:-1] |= same
    return np.sort(order[in_group])


def _last_of_each_url(rows: pa.Table, shared: np.ndarray) -> np.ndarray:
    """The positions (of ``shared``) of the last row of each url of ``rows``."""
    return (
        pa.table({"url": rows["url"], "position": pa.array(shared, pa.int64())})
        .group_by("url", use_threads=False)
        .aggregate([("position", "max")])["position_max"]
        .to_numpy()
    )


def _latest_updated_of_each_url(rows: pa.Table, shared: np.ndarray) -> np.ndarray:
    """The positions of the row of each url with the latest ``updated`` (ties: the last)."""
    ranked = pa.table(
        {"url": rows["url"], "updated": rows["updated"], "position": pa.array(shared, pa.int64())}
    ).sort_by([("url", "ascending"), ("updated", "ascending"), ("position", "ascending")])
    urls = ranked["url"]
    is_last = np.ones(len(shared), dtype=bool)
    if len(shared) > 1:
        same_url = pc.equal(urls.slice(0, len(shared) - 1), urls.slice(1))
        is_last[:-1] = ~np.asarray(pc.fill_null(same_url, False).to_numpy(zero_copy_only=False))
    return ranked["position"].to_numpy()[is_last]


def _latest_mask(
    digests: np.ndarray,
    rows_at: Callable[[np.ndarray, tuple[str, ...]], pa.Table],
    *,
    by_updated: bool = False,
) -> np.ndarray | None:
    """Which rows are the latest of their url (a bool per row), or None when every url is new.

    Rows are told apart by their 64-bit url digest (8 bytes per row, sorted with numpy); only
    rows whose digest is shared are compared by their url text, which
    ``rows_at(positions, columns)`` returns for the (usually few) positions asked, in order.
    Memory: about 24 bytes per row, plus the url text of the rows that share a digest.
    """
    if len(digests) < 2:
        return None
    shared = _shared_positions(digests)
    if not shared.size:
        return None
    keep = np.ones(len(digests), dtype=bool)
    keep[shared] = False
    if by_updated:
        keep[_latest_updated_of_each_url(rows_at(shared, ("url", "updated")), shared)] = True
    else:
        keep[_last_of_each_url(rows_at(shared, ("url",)), shared)] = True
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


def latest_rows(sources: Iterable[TableSource], *, by_updated: bool = False) -> Iterator[pa.Table]:
    """The rows of ``sources``, one per url, in their order: the latest row of each url.

    The latest row is the last one, or with ``by_updated`` the one with the latest ``updated``
    (ties: the last one). Each source is read twice (url digests, then the rows kept), so the
    rows are never held all at once: memory is a batch plus about 24 bytes per row.

    Example:
        >>> rows = rows_to_table([{"url": "http://h/a", "status": FAILED},
        ...                       {"url": "http://h/b", "status": SUCCESS},
        ...                       {"url": "http://h/a", "status": SUCCESS}])
        >>> [t.to_pydict()["status"] for t in latest_rows([lambda: iter([rows])])]
        [['success', 'success']]
    """
    sources = list(sources)

    def every_table() -> Iterator[pa.Table]:
        for source in sources:
            yield from source()

    keep = _latest_mask(
        _digests_of(every_table()),
        lambda positions, columns: _take_positions(every_table(), positions, columns),
        by_updated=by_updated,
    )
    offset = 0
    for table in every_table():
        end = offset + table.num_rows
        if keep is not None:
            mask = keep[offset:end]
            if not mask.all():
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

    Streaming (:func:`latest_rows`): a batch of rows at a time plus about 24 bytes per row.
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

"""Read a list of media URLs (.txt, .csv, .parquet) as MediaRecords, lazily.

* ``.txt``: one URL per line; blank lines and lines starting with ``#`` are ignored.
* ``.csv``: a header row with a ``url`` column (name configurable); the other columns are kept
  as record fields, so a ``label`` or ``subset`` column is used as such.
* ``.parquet``: a ``url`` column, other columns kept; read in batches (bounded memory).

Only absolute http(s) URLs are yielded; other lines are skipped and logged. ``basename`` is the
sha1 of the URL, as everywhere.

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "urls.txt"
    >>> _ = path.write_text("https://example.org/a.jpg\\n# comment\\nfile:///etc/passwd\\n")
    >>> [r["url"] for r in read_urls(path, label="bees")]
    ['https://example.org/a.jpg']
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError
from gbif_dl.records import MediaRecord, is_http_url, make_record

__all__ = ["read_urls"]

logger = logging.getLogger(__name__)

#: Largest CSV field accepted (a URL is at most 4096 characters; other columns stay small).
_CSV_FIELD_LIMIT = 1 << 20


def read_urls(
    path: str | os.PathLike[str],
    *,
    label: Any = None,
    url_column: str = "url",
    batch_size: int = 10_000,
) -> Iterator[MediaRecord]:
    """Yield a MediaRecord for every http(s) URL in a ``.txt``, ``.csv`` or ``.parquet`` file.

    Args:
        path: the file; its suffix picks the format (``.tsv`` is read as tab-separated CSV).
        label: the label of records that do not carry one in a ``label`` column.
        url_column: the column holding URLs in CSV and Parquet files.
        batch_size: Parquet rows read at a time.

    Raises:
        ConfigError: missing file, unknown suffix, or no ``url_column`` in the file.

    Example:
        >>> recs = read_urls("urls.csv", label="unknown")  # doctest: +SKIP
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"URL list {str(file)!r} does not exist or is not a file")
    suffix = file.suffix.lower()
    if suffix == ".txt":
        rows: Iterator[dict[str, Any]] = _txt_rows(file, url_column)
    elif suffix in (".csv", ".tsv"):
        rows = _csv_rows(file, url_column, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        rows = _parquet_rows(file, url_column, batch_size)
    else:
        raise ConfigError(
            f"cannot read URLs from {file.name!r}: use a .txt (one URL per line), .csv or "
            f".parquet file with a {url_column!r} column"
        )
    skipped = 0
    for row in rows:
        url = row.pop(url_column, None)
        url = url.strip() if isinstance(url, str) else url
        if not is_http_url(url):
            skipped += 1
            continue
        row_label = row.pop("label", None)
        row.pop("basename", None)
        fields = {k: v for k, v in row.items() if v is not None and v != ""}
        yield make_record(url, label=row_label if row_label not in (None, "") else label, **fields)
    if skipped:
        logger.warning("%s: skipped %d entries that are not http(s) URLs", file.name, skipped)


def _txt_rows(file: Path, url_column: str) -> Iterator[dict[str, Any]]:
    with file.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            text = line.strip()
            if text and not text.startswith("#"):
                yield {url_column: text}


def _csv_rows(file: Path, url_column: str, delimiter: str) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    with file.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if reader.fieldnames is None or url_column not in reader.fieldnames:
            raise ConfigError(
                f"{file.name} has no {url_column!r} column (columns: {reader.fieldnames}); "
                "add a header row or pass url_column="
            )
        for row in reader:
            yield {k: v for k, v in row.items() if k is not None}


def _parquet_rows(file: Path, url_column: str, batch_size: int) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file)
    if url_column not in parquet.schema_arrow.names:
        raise ConfigError(
            f"{file.name} has no {url_column!r} column (columns: {parquet.schema_arrow.names}); "
            "pass url_column="
        )
    for batch in parquet.iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()

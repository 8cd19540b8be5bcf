"""Summarise a downloaded dataset: a terminal report and one self-contained HTML page.

The report reads ``ROOT/manifest.parquet`` through :mod:`gbif_dl.manifest`, streaming it in
batches, and tells per-class counts per split, the licences, why images failed and which hosts
were slow or unreliable.

    gbif_dl.report.summary     summarize -> DatasetSummary (the numbers, one pass)
    gbif_dl.report.thumbnails  the bounded sample of images and their small JPEGs
    gbif_dl.report.text        format_text, format_table: aligned, control characters escaped
    gbif_dl.report.html        render_html, write_html: one page, inline SVG and images

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> root = Path(tempfile.mkdtemp())
    >>> pq.write_table(pa.table({"url": ["http://h/a.jpg"], "label": ["bee"],
    ...     "status": ["success"], "license": ["CC_BY_4_0"]}), root / "manifest.parquet")
    >>> summary = summarize(root)
    >>> summary.n_success, summary.classes[0].label
    (1, 'bee')
    >>> "bee" in format_text(summary)
    True
"""

from __future__ import annotations

from gbif_dl.report.html import REPORT_NAME, render_html, write_html
from gbif_dl.report.summary import ClassCount, DatasetSummary, HostSummary, summarize
from gbif_dl.report.text import format_table, format_text, printable
from gbif_dl.report.thumbnails import DEFAULT_THUMBNAILS, THUMBNAIL_PX, Thumbnail

__all__ = [
    "DEFAULT_THUMBNAILS",
    "REPORT_NAME",
    "THUMBNAIL_PX",
    "ClassCount",
    "DatasetSummary",
    "HostSummary",
    "Thumbnail",
    "format_table",
    "format_text",
    "printable",
    "render_html",
    "summarize",
    "write_html",
]

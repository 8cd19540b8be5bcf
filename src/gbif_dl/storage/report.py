"""``gbif-dl report s3://bucket/ds``: the report of a store root, read from its objects.

The manifest, ``ATTRIBUTION.csv`` and ``CITATION.txt`` are copied to a temporary folder and
summarised there (:func:`gbif_dl.report.summarize`, without thumbnails: they would read every
sampled image from the store); the HTML page goes to ``report.html`` in the store, or to the
local file given.

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> from gbif_dl.storage.read import DatasetRoot
    >>> data = DatasetRoot("memory://doc-report/ds")
    >>> buffer = pa.BufferOutputStream()
    >>> pq.write_table(pa.table({"url": ["http://h/a.jpg"], "status": ["success"],
    ...     "label": ["bee"], "license": ["CC_BY_4_0"]}), buffer)
    >>> data.mirror.put_bytes("manifest.parquet", buffer.getvalue().to_pybytes())
    >>> text, page = report_store(data)
    >>> text.splitlines()[0].startswith("Dataset memory://doc-report/ds: 1 images"), page
    (True, 'memory://doc-report/ds/report.html')
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gbif_dl.errors import OutputError
from gbif_dl.manifest.table import MANIFEST_NAME
from gbif_dl.report import REPORT_NAME, format_text, summarize, write_html
from gbif_dl.storage.read import DatasetRoot
from gbif_dl.writers.attribution import ATTRIBUTION_NAME, CITATION_NAME

__all__ = ["report_store"]


def report_store(
    data: DatasetRoot, *, html: bool = True, html_path: str | os.PathLike[str] | None = None
) -> tuple[str, str | None]:
    """The text report of the store root ``data`` and where its HTML page went (None: none).

    Raises:
        OutputError: the root holds no manifest.

    Example:
        >>> report_store(DatasetRoot("memory://doc-no-manifest/ds"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbif_dl.errors.OutputError: no manifest.parquet in memory://doc-no-manifest/ds; ...
    """
    assert data.mirror is not None, "report_store reads a store root"
    if not data.mirror.exists(MANIFEST_NAME):
        raise OutputError(
            f"no {MANIFEST_NAME} in {data.display}; is it a gbif-dl dataset? Run "
            "`gbif-dl download --root URL` first (an interrupted run writes it on its rerun)"
        )
    with tempfile.TemporaryDirectory(prefix="gbif-dl-report-") as folder:
        local = Path(folder)
        names = [MANIFEST_NAME, ATTRIBUTION_NAME, CITATION_NAME]
        data.copy_to(local, [name for name in names if data.mirror.exists(name)])
        summary = summarize(local, thumbnails=0)
        text = format_text(summary).replace(str(local), data.display)
        if not html:
            return text, None
        if html_path is not None:
            return text, str(write_html(summary, html_path))
        page = write_html(summary, local / REPORT_NAME)
        data.mirror.put_file(page, REPORT_NAME)
        return text, data.url_of(REPORT_NAME)

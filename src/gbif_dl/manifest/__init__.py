"""The dataset's record of every item: the manifest table, its journal and the resume index.

    gbif_dl.manifest.table    ``manifest.parquet``: SCHEMA, manifest_row, statuses, reading in
                              batches (iter_manifest), merging files (latest row of each url)
    gbif_dl.manifest.journal  ``.gbif-dl-journal.jsonl``: Journal, reading, merge_journal_file
    gbif_dl.manifest.resume   ResumeIndex, load_index: ``url -> (status, path)`` for resume
    gbif_dl.manifest.spill    sorted runs on disk: what the index and the merges keep instead
                              of memory (external sort, block-wise merge, spilled state table)

Every reader of a dataset (the writers' derived files, the loaders, the report) reads the
manifest through this package.

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

from gbif_dl.manifest.journal import (
    JOURNAL_NAME,
    Journal,
    iter_journal,
    journal_blocks,
    merge_journal,
    merge_journal_file,
    read_journal,
)
from gbif_dl.manifest.resume import FINISHED, GONE, PENDING, ResumeIndex, load_index
from gbif_dl.manifest.table import (
    DUPLICATE,
    FAILED,
    MANIFEST_NAME,
    NEAR_DUPLICATE,
    NOT_STORED,
    PLACEHOLDER,
    RECORD_COLUMNS,
    SCHEMA,
    STATUSES,
    SUCCESS,
    TRIMMED,
    conform,
    iter_manifest,
    latest_rows,
    manifest_row,
    merge_manifest_files,
    read_manifest,
    rows_to_table,
    stored_counts,
    url_digests,
    url_host,
    write_manifest,
)

__all__ = [
    "DUPLICATE",
    "FAILED",
    "FINISHED",
    "GONE",
    "JOURNAL_NAME",
    "MANIFEST_NAME",
    "NEAR_DUPLICATE",
    "NOT_STORED",
    "PENDING",
    "PLACEHOLDER",
    "RECORD_COLUMNS",
    "SCHEMA",
    "STATUSES",
    "SUCCESS",
    "TRIMMED",
    "Journal",
    "ResumeIndex",
    "conform",
    "iter_journal",
    "iter_manifest",
    "journal_blocks",
    "latest_rows",
    "load_index",
    "manifest_row",
    "merge_journal",
    "merge_journal_file",
    "merge_manifest_files",
    "read_journal",
    "read_manifest",
    "rows_to_table",
    "stored_counts",
    "url_digests",
    "url_host",
    "write_manifest",
]

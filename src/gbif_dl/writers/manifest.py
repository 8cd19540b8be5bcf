"""Temporary: the manifest moved to :mod:`gbif_dl.manifest` (table, journal, resume).

This module only re-exports its public names for the code that still imports them from here;
it goes away once those imports read ``gbif_dl.manifest``. ``_rows_to_table`` is the old
private name of :func:`gbif_dl.manifest.table.rows_to_table`, kept for the same reason.
"""

from __future__ import annotations

from gbif_dl.manifest.journal import (
    JOURNAL_NAME,
    Journal,
    merge_journal,
    merge_journal_file,
    read_journal,
)
from gbif_dl.manifest.resume import ResumeIndex, load_index
from gbif_dl.manifest.table import (
    FAILED,
    MANIFEST_NAME,
    SCHEMA,
    SUCCESS,
    iter_manifest,
    manifest_row,
    merge_manifest_files,
    read_manifest,
    rows_to_table,
    url_digests,
    url_host,
)

_rows_to_table = rows_to_table

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

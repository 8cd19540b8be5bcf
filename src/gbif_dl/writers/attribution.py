"""Attribution and citation files, derived from the manifest.

- ``ATTRIBUTION.csv``: one row per stored image: file, licence, rights holder, creator,
  publisher, GBIF occurrence page and media URL. What a CC-BY licence asks of anyone who reuses
  the images.
- ``CITATION.txt``: the GBIF datasets the images come from with their record counts (what GBIF
  asks for to register a derived dataset, https://www.gbif.org/derived-dataset/register), plus
  the download DOI(s) when the records came from a GBIF download.

Both are rewritten atomically from the whole manifest after every run.

Example:
    >>> import tempfile, pathlib
    >>> from gbif_dl.writers.manifest import SUCCESS, manifest_row, SCHEMA
    >>> import pyarrow as pa
    >>> row = manifest_row({"url": "http://h/a.jpg", "gbifID": 5, "datasetKey": "d1",
    ...                     "license": "CC_BY_4_0", "rightsHolder": "Ann"},
    ...                    status=SUCCESS, path="x/a.jpg")
    >>> row["updated"] = None
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> write_attribution(root, pa.Table.from_pylist([row], schema=SCHEMA))
    >>> "https://www.gbif.org/occurrence/5" in (root / ATTRIBUTION_NAME).read_text()
    True
    >>> "d1,1" in (root / CITATION_NAME).read_text()
    True
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TextIO

import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.writers._atomic import atomic_path, atomic_write_bytes
from gbif_dl.writers.manifest import SUCCESS

__all__ = ["ATTRIBUTION_COLUMNS", "ATTRIBUTION_NAME", "CITATION_NAME", "write_attribution"]

ATTRIBUTION_NAME = "ATTRIBUTION.csv"
CITATION_NAME = "CITATION.txt"
ATTRIBUTION_COLUMNS = (
    "file",
    "license",
    "rightsHolder",
    "creator",
    "publisher",
    "occurrence",
    "url",
)
OCCURRENCE_PAGE = "https://www.gbif.org/occurrence/{}"
DOI_URL = "https://doi.org/{}"
_BATCH = 10_000


def _doi_link(doi: str) -> str:
    doi = doi.strip()
    for prefix in ("https://doi.org/", "http://doi.org/", "doi:"):
        if doi.lower().startswith(prefix):
            doi = doi[len(prefix) :]
    return DOI_URL.format(doi)


def _write_attribution_csv(out: TextIO, manifest: pa.Table) -> None:
    """Stream the rows of stored images to ``out``, a batch at a time (memory stays flat)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ATTRIBUTION_COLUMNS)
    columns = ["path", "license", "rightsHolder", "creator", "publisher", "gbifID", "url"]
    for batch in manifest.select([*columns, "status"]).to_batches(max_chunksize=_BATCH):
        batch = batch.filter(pc.equal(batch.column(len(columns)), SUCCESS))
        for path, lic, holder, creator, publisher, gbif_id, url in zip(
            *(batch.column(i).to_pylist() for i in range(len(columns))), strict=True
        ):
            writer.writerow(
                [
                    path,
                    lic or "",
                    holder or "",
                    creator or "",
                    publisher or "",
                    OCCURRENCE_PAGE.format(gbif_id) if gbif_id else "",
                    url,
                ]
            )


def _dataset_counts(stored: pa.Table) -> list[tuple[str, int]]:
    """(datasetKey, number of distinct occurrences) among stored images, largest first."""
    if stored.num_rows == 0:
        return []
    dataset = pc.fill_null(stored["datasetKey"], "unknown")
    has_id = pc.is_valid(stored["gbifID"])
    counts: dict[str, int] = {}
    # An image without gbifID is its own occurrence (urls are unique in a manifest): counting
    # rows needs no hash set of urls, which costs tens of MB for 100,000 images.
    for item in pc.value_counts(dataset.filter(pc.invert(has_id))).to_pylist():
        key = str(item["values"])
        counts[key] = counts.get(key, 0) + int(item["counts"])
    with_id = pa.table({"datasetKey": dataset, "gbifID": stored["gbifID"]}).filter(has_id)
    if with_id.num_rows:
        grouped = with_id.group_by("datasetKey").aggregate([("gbifID", "count_distinct")])
        for key, n in zip(
            grouped["datasetKey"].to_pylist(),
            grouped["gbifID_count_distinct"].to_pylist(),
            strict=True,
        ):
            counts[str(key)] = counts.get(str(key), 0) + int(n)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _citation_text(stored: pa.Table, dois: list[str]) -> bytes:
    counts = _dataset_counts(stored)
    lines = [
        "This image dataset was built with gbif-dl from occurrence media shared through GBIF,",
        "the Global Biodiversity Information Facility (https://www.gbif.org).",
        "",
        f"Images: {stored.num_rows}. Occurrences: {sum(n for _, n in counts)}. "
        f"Source datasets: {len(counts)}.",
        "",
    ]
    if dois:
        lines += ["GBIF occurrence download(s) the records come from (cite these):"]
        lines += [f"  GBIF.org, {_doi_link(doi)}" for doi in dois]
        lines += [""]
    lines += [
        "Each image keeps the licence of its record; see ATTRIBUTION.csv for the licence,",
        "rights holder and GBIF occurrence page of every file.",
        "",
        "To cite this derived dataset, register it with GBIF at",
        "https://www.gbif.org/derived-dataset/register using the dataset keys and record",
        "counts below (the format GBIF asks for):",
        "",
        "datasetKey,count",
        *(f"{key},{count}" for key, count in counts),
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def write_attribution(root: Path | str, manifest: pa.Table, *, fsync: bool = False) -> None:
    """Rewrite ``root/ATTRIBUTION.csv`` and ``root/CITATION.txt`` from ``manifest``.

    Only rows with status ``success`` (stored images) are listed.
    """
    root = Path(root)
    with (
        atomic_path(root / ATTRIBUTION_NAME, fsync=fsync) as tmp,
        open(tmp, "w", encoding="utf-8", newline="") as out,
    ):
        _write_attribution_csv(out, manifest)
    # only the columns the citation needs are copied (not the whole manifest)
    stored = manifest.select(["gbifID", "url", "datasetKey", "downloadDOI", "status"])
    stored = stored.filter(pc.equal(stored["status"], SUCCESS))
    dois = sorted({d for d in pc.drop_null(stored["downloadDOI"]).to_pylist() if d and d.strip()})
    atomic_write_bytes(root / CITATION_NAME, _citation_text(stored, dois), fsync=fsync)

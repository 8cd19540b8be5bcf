"""Attribution and citation files, derived from the manifest.

- ``ATTRIBUTION.csv``: one row per stored image: file, licence, rights holder, creator,
  publisher, GBIF occurrence page and media URL (without credentials). What a CC-BY licence asks
  of anyone who reuses the images. A cell a spreadsheet would run as a formula (``=...``,
  ``+``, ``-``, ``@``, tab, CR) gets a ``'`` in front (:mod:`gbif_dl.writers.cells`).
- ``CITATION.txt``: the GBIF datasets the images come from with their record counts (what GBIF
  asks for to register a derived dataset, https://www.gbif.org/derived-dataset/register), plus
  the download DOI(s) when the records came from a GBIF download.

Both are rewritten atomically from the whole manifest after every run.

Example:
    >>> import tempfile, pathlib
    >>> from gbif_dl.manifest import SUCCESS, manifest_row, SCHEMA
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

import os
from pathlib import Path
from typing import TextIO, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.manifest import SUCCESS, iter_manifest, url_digests
from gbif_dl.manifest.spill import ExternalSorter, SpillFiles
from gbif_dl.records import public_url
from gbif_dl.writers._atomic import atomic_path, atomic_write_bytes
from gbif_dl.writers.cells import SafeCsvWriter

#: A manifest as a table, or the path of a manifest parquet file (read a batch at a time).
Manifest = Union[pa.Table, str, "os.PathLike[str]"]

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


def _write_attribution_csv(out: TextIO, manifest: Manifest) -> None:
    """Stream the rows of stored images to ``out``, a batch at a time (memory stays flat)."""
    writer = SafeCsvWriter(out)  # every cell: never a spreadsheet formula
    writer.writerow(ATTRIBUTION_COLUMNS)
    columns = ["path", "license", "rightsHolder", "creator", "publisher", "gbifID", "url"]
    for batch in iter_manifest(manifest, [*columns, "status"], batch_size=_BATCH):
        batch = batch.filter(pc.equal(batch.column(len(columns)), SUCCESS))
        for path, lic, holder, creator, publisher, gbif_id, url in zip(
            *(batch.column(i).to_pylist() for i in range(len(columns))), strict=True
        ):
            writer.writerow(
                [
                    path,
                    lic,
                    holder,
                    creator,
                    publisher,
                    OCCURRENCE_PAGE.format(gbif_id) if gbif_id else "",
                    public_url(url or ""),
                ]
            )


def _occurrence_keys(gbif_ids: pa.Array) -> np.ndarray:
    """One 64-bit key per (non-null) gbifID: its value when it is a plain decimal number
    (exact), else a blake2b digest with the top bit set (distinct from every number).

    The choice depends on the value alone, so equal ids of different batches get equal keys.
    """
    keys = np.zeros(len(gbif_ids), dtype=np.uint64)
    plain = pc.fill_null(pc.match_substring_regex(gbif_ids, r"^(0|[1-9][0-9]{0,17})$"), False)
    plain_np = np.asarray(plain)
    if plain_np.any():
        keys[plain_np] = np.asarray(pc.cast(gbif_ids.filter(plain), pa.int64())).astype(np.uint64)
    if not plain_np.all():
        others = np.flatnonzero(~plain_np)
        texts = pc.take(gbif_ids, pa.array(others)).to_pylist()
        keys[others] = url_digests(texts) | np.uint64(1 << 63)
    return keys


#: Low bits of a packed (occurrence, dataset) key that hold the dataset number.
_DATASET_BITS = 16


def _distinct_per_dataset(keys: np.ndarray, codes: np.ndarray, n_datasets: int) -> np.ndarray:
    """How many distinct ``keys`` each dataset code has, with ``keys`` and ``codes`` in step.

    Plain numeric gbifIDs (below 2**47, every GBIF id) and the dataset code are packed into one
    ``uint64`` and sorted in place: 8 bytes a row. Other keys (digests of odd ids, rare) and
    more than 65,536 datasets take an exact lexsort.
    """
    distinct = np.zeros(n_datasets, dtype=np.int64)
    if n_datasets <= 1 << _DATASET_BITS:
        packable = keys < np.uint64(1 << (64 - _DATASET_BITS - 1))
        packed = keys[packable] << np.uint64(_DATASET_BITS)
        packed |= codes[packable].astype(np.uint64)
        keys, codes = keys[~packable], codes[~packable]
        packed.sort()
        if packed.size:
            first = np.ones(packed.size, dtype=bool)
            np.not_equal(packed[1:], packed[:-1], out=first[1:])
            low = np.uint64((1 << _DATASET_BITS) - 1)
            distinct += np.bincount((packed[first] & low).astype(np.int64), minlength=n_datasets)
        del packed
    if keys.size:
        order = np.lexsort((keys, codes))
        keys, codes = keys[order], codes[order]
        first = np.ones(keys.size, dtype=bool)
        first[1:] = (codes[1:] != codes[:-1]) | (keys[1:] != keys[:-1])
        distinct += np.bincount(codes[first], minlength=n_datasets)
    return distinct


#: What the citation count sorts per stored image: its occurrence key and dataset number.
_OCCURRENCE = np.dtype([("key", "u8"), ("dataset", "u8")])


def _dataset_counts(manifest: Manifest) -> tuple[list[tuple[str, int]], list[str], int]:
    """(datasetKey, distinct occurrences) among stored images, largest first; the download
    DOIs; the number of stored images.

    Streams the manifest: per stored image an (occurrence key, dataset number) pair goes to an
    external sort (:class:`~gbif_dl.manifest.spill.ExternalSorter`, runs on disk), whose
    chunks hold every pair of an occurrence key together and are counted one at a time, so
    memory does not grow with the rows.
    """
    datasets: dict[str, int] = {}
    counts: dict[str, int] = {}
    dois: set[str] = set()
    stored = 0
    columns = ["gbifID", "datasetKey", "downloadDOI", "status"]
    with SpillFiles() as files:
        pairs = ExternalSorter(_OCCURRENCE, ("key", "dataset"), files)
        for batch in iter_manifest(manifest, columns):
            batch = batch.filter(pc.equal(batch["status"], SUCCESS))
            if batch.num_rows == 0:
                continue
            stored += batch.num_rows
            dois.update(d for d in pc.unique(pc.drop_null(batch["downloadDOI"])).to_pylist() if d)
            dataset = pc.fill_null(batch["datasetKey"], "unknown")
            has_id = pc.is_valid(batch["gbifID"])
            # An image without gbifID is its own occurrence (urls are unique in a manifest)
            for item in pc.value_counts(dataset.filter(pc.invert(has_id))).to_pylist():
                key = str(item["values"])
                counts[key] = counts.get(key, 0) + int(item["counts"])
            with_id = pa.table({"datasetKey": dataset, "gbifID": batch["gbifID"]}).filter(has_id)
            if with_id.num_rows:
                encoded = pc.dictionary_encode(with_id["datasetKey"]).combine_chunks()
                names = encoded.dictionary.to_pylist()
                mapping = np.array([datasets.setdefault(str(n), len(datasets)) for n in names])
                chunk = np.zeros(with_id.num_rows, dtype=_OCCURRENCE)
                chunk["dataset"] = mapping[np.asarray(encoded.indices)]
                chunk["key"] = _occurrence_keys(with_id["gbifID"].combine_chunks())
                pairs.add(chunk)
        distinct = np.zeros(len(datasets), dtype=np.int64)
        for chunk in pairs.sorted_chunks():  # an occurrence key never spans two chunks
            codes = chunk["dataset"].astype(np.int32)
            distinct += _distinct_per_dataset(chunk["key"].copy(), codes, len(datasets))
    for name, code in datasets.items():
        counts[name] = counts.get(name, 0) + int(distinct[code])
    dois_sorted = sorted(d for d in dois if d.strip())
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), dois_sorted, stored


def _citation_text(manifest: Manifest) -> bytes:
    counts, dois, stored = _dataset_counts(manifest)
    lines = [
        "This image dataset was built with gbif-dl from occurrence media shared through GBIF,",
        "the Global Biodiversity Information Facility (https://www.gbif.org).",
        "",
        f"Images: {stored}. Occurrences: {sum(n for _, n in counts)}. "
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


def write_attribution(root: Path | str, manifest: Manifest, *, fsync: bool = False) -> None:
    """Rewrite ``root/ATTRIBUTION.csv`` and ``root/CITATION.txt`` from ``manifest``.

    ``manifest`` is a table or the path of a manifest parquet file, which is then read a batch
    at a time (memory stays flat however many rows it has). Only rows with status ``success``
    (stored images) are listed.
    """
    root = Path(root)
    with (
        atomic_path(root / ATTRIBUTION_NAME, fsync=fsync) as tmp,
        open(tmp, "w", encoding="utf-8", newline="") as out,
    ):
        _write_attribution_csv(out, manifest)
    atomic_write_bytes(root / CITATION_NAME, _citation_text(manifest), fsync=fsync)

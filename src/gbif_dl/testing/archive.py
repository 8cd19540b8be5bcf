"""Write a real-format GBIF Darwin Core Archive (DwC-A) download for records of a population.

The layout follows a real GBIF download (see ``data/PROVENANCE.md``): ``meta.xml`` with the
interpreted core ``occurrence.txt`` (the 241 columns of the real archive's meta.xml), the
``verbatim.txt`` extension (219 columns) and the ``multimedia.txt`` extension (15 columns),
plus ``metadata.xml`` (EML of the download), ``citations.txt``, ``rights.txt`` and one
``dataset/<datasetKey>.xml`` per constituent dataset. Data files are UTF-8, TAB separated,
``\\n`` line ends, one header line and no quoting; columns the population does not know stay
empty. Rows are written in chunks straight into the zip entry, so the archive is never held in
memory, and the zip appears atomically (temp file in the target folder, then ``os.replace``).

Example:
    >>> import tempfile, pathlib, zipfile
    >>> from gbif_dl.testing.population import Population
    >>> pop = Population(seed=0, size=50)
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "dl.zip"
    >>> summary = write_dwca(pop, range(50), out)
    >>> summary.occurrences, "meta.xml" in zipfile.ZipFile(out).namelist()
    (50, True)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt

from gbif_dl.testing.population import Population
from gbif_dl.testing.tables import (
    BASE_KEY,
    BASIS_OF_RECORD,
    COUNTRIES,
    FIRST_NAMES,
    ISSUES,
    KIND_IIIF,
    KIND_IMAGE,
    KIND_NO_ID,
    KIND_NO_TYPE,
    KIND_NONE,
    KIND_SOUND,
    KIND_VIDEO,
    LAST_NAMES,
    MEDIA_LICENSES,
    MEDIA_TYPES,
)

__all__ = ["DwcaSummary", "write_dwca"]

logger = logging.getLogger(__name__)

_CHUNK = 20_000
_ROW_TYPE_OCCURRENCE = "http://rs.tdwg.org/dwc/terms/Occurrence"
_ROW_TYPE_MULTIMEDIA = "http://rs.gbif.org/terms/1.0/Multimedia"
_PUBLISHER = "Simulated publisher"


@dataclass(frozen=True, slots=True)
class DwcaSummary:
    """What :func:`write_dwca` wrote.

    Attributes:
        path: the zip file.
        occurrences: rows in ``occurrence.txt`` (and ``verbatim.txt``).
        multimedia_rows: rows in ``multimedia.txt``.
        size: the zip's size in bytes.
        datasets: the constituent dataset keys.
    """

    path: Path
    occurrences: int
    multimedia_rows: int
    size: int
    datasets: tuple[str, ...]


@cache
def dwca_columns() -> dict[str, list[str]]:
    """Column terms of the real archive's meta.xml: ``occurrence``, ``verbatim``, ``multimedia``.

    Example:
        >>> dwca_columns()["multimedia"][3]
        'http://purl.org/dc/terms/identifier'
    """
    path = resources.files("gbif_dl.testing").joinpath("data").joinpath("dwca_columns.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: list(terms) for name, terms in data.items()}


def _short(term: str) -> str:
    return term.rsplit("/", 1)[-1]


def _table(values: Sequence[Any]) -> npt.NDArray[np.object_]:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


class _Lookups:
    """String tables indexed by the population's compact columns."""

    def __init__(self, pop: Population) -> None:
        species = pop._species
        datasets = pop._datasets
        self.species = {
            field: _table([s[field] for s in species])
            for field in (
                "scientificName",
                "canonicalName",
                "kingdom",
                "phylum",
                "class",
                "order",
                "family",
                "genus",
                "genericName",
                "specificEpithet",
            )
        }
        self.species_keys = {
            field: _table([str(s[field]) for s in species])
            for field in (
                "kingdomKey",
                "phylumKey",
                "classKey",
                "orderKey",
                "familyKey",
                "genusKey",
                "speciesKey",
            )
        }
        self.dataset = {
            field: _table([d[field] for d in datasets])
            for field in (
                "key",
                "title",
                "publishingCountry",
                "license",
                "licenseUrl",
                "institutionCode",
                "collectionCode",
            )
        }
        self.basis = _table(BASIS_OF_RECORD)
        self.country = _table([c[0] for c in COUNTRIES])
        self.numbers = _table([""] + [str(n) for n in range(1, 3000)])
        self.person = _table(
            [
                f"{FIRST_NAMES[p % len(FIRST_NAMES)]} {LAST_NAMES[p // len(FIRST_NAMES)]}"
                for p in range(len(FIRST_NAMES) * len(LAST_NAMES))
            ]
        )
        self.media_types = _table(
            [
                ";".join(name for bit, name in enumerate(MEDIA_TYPES) if mask & (1 << bit))
                for mask in range(1 << len(MEDIA_TYPES))
            ]
        )
        self.issues = _table([";".join(issue) for issue in ISSUES])
        self.media_license = _table([text or "" for text, _ in MEDIA_LICENSES])
        kind_type = {
            KIND_NONE: "",
            KIND_IMAGE: "StillImage",
            KIND_NO_ID: "StillImage",
            KIND_NO_TYPE: "",
            KIND_SOUND: "Sound",
            KIND_IIIF: "InteractiveResource",
            KIND_VIDEO: "MovingImage",
        }
        kind_format = {
            KIND_IMAGE: "image/jpeg",
            KIND_NO_TYPE: "image/jpeg",
            KIND_SOUND: "audio/mpeg",
            KIND_IIIF: "application/ld+json",
            KIND_VIDEO: "video/mp4",
        }
        self.kind_type = _table([kind_type[k] for k in range(7)])
        self.kind_format = _table([kind_format.get(k, "") for k in range(7)])


def _floats(values: npt.NDArray[np.float64]) -> list[str]:
    return [repr(v) if v == v else "" for v in values.tolist()]


def _references(pop: Population, idx: npt.NDArray[np.int64], keys: list[int]) -> list[str]:
    """The ``references`` (and ``occurrenceID``) URL of each record ``idx``."""
    n_bases = len(pop.media_base_urls)
    bases = pop.media_base_urls
    return [
        f"{bases[i % n_bases]}/observations/{k}" for i, k in zip(idx.tolist(), keys, strict=True)
    ]


def _event_dates(pop: Population, idx: npt.NDArray[np.int64]) -> list[str]:
    """The ``eventDate`` of each record ``idx`` ("" without a year)."""
    year, month, day = pop.year[idx], pop.month[idx], pop.day[idx]
    minute = pop.minute_of_day[idx]
    return [
        f"{y:04d}-{m:02d}-{d:02d}T{t // 60:02d}:{t % 60:02d}" if y else ""
        for y, m, d, t in zip(
            year.tolist(), month.tolist(), day.tolist(), minute.tolist(), strict=True
        )
    ]


def _occurrence_chunk(
    pop: Population, idx: npt.NDArray[np.int64], look: _Lookups, verbatim: bool
) -> dict[str, list[str] | npt.NDArray[np.object_]]:
    """Per-column string values for the records ``idx`` (interpreted or verbatim)."""
    sp = pop.sp[idx]
    has = pop.has_species[idx]
    ds = pop.ds[idx]
    keys = (idx + BASE_KEY).tolist()
    gbif_ids = [str(k) for k in keys]
    refs = _references(pop, idx, keys)
    year, month, day = pop.year[idx], pop.month[idx], pop.day[idx]
    event = _event_dates(pop, idx)
    person = look.person[pop.person[idx]]
    species_name = np.where(has, look.species["scientificName"][sp], look.species["genus"][sp])
    lat = _floats(pop.lat[idx])
    cols: dict[str, list[str] | npt.NDArray[np.object_]] = {
        "gbifID": gbif_ids,
        "occurrenceID": refs,
        "catalogNumber": gbif_ids,
        "basisOfRecord": look.basis[pop.bor[idx]],
        "institutionCode": look.dataset["institutionCode"][ds],
        "collectionCode": look.dataset["collectionCode"][ds],
        "recordedBy": person,
        "identifiedBy": person,
        "rightsHolder": person,
        "references": refs,
        "eventDate": event,
        "year": look.numbers[year],
        "month": look.numbers[month],
        "day": look.numbers[day],
        "countryCode": look.country[pop.ctry[idx]],
        "decimalLatitude": lat,
        "decimalLongitude": _floats(pop.lon[idx]),
        "scientificName": species_name,
        "kingdom": look.species["kingdom"][sp],
        "phylum": look.species["phylum"][sp],
        "class": look.species["class"][sp],
        "order": look.species["order"][sp],
        "family": look.species["family"][sp],
        "genus": look.species["genus"][sp],
        "occurrenceStatus": np.where(pop.absent[idx], "ABSENT", "PRESENT").astype(object),
    }
    if verbatim:
        cols["license"] = look.dataset["licenseUrl"][ds]
        return cols
    taxon_key = np.where(
        has, look.species_keys["speciesKey"][sp], look.species_keys["genusKey"][sp]
    )
    cols.update(
        {
            "identifier": gbif_ids,
            "license": look.dataset["license"][ds],
            "datasetName": look.dataset["title"][ds],
            "datasetKey": look.dataset["key"][ds],
            "publishingCountry": look.dataset["publishingCountry"][ds],
            "elevation": _floats(pop.elevation[idx]),
            "specificEpithet": np.where(has, look.species["specificEpithet"][sp], ""),
            "genericName": look.species["genericName"][sp],
            "taxonRank": np.where(has, "SPECIES", "GENUS").astype(object),
            "taxonomicStatus": ["ACCEPTED"] * len(idx),
            "acceptedScientificName": species_name,
            "species": np.where(has, look.species["canonicalName"][sp], ""),
            "taxonKey": taxon_key,
            "acceptedTaxonKey": taxon_key,
            "speciesKey": np.where(has, look.species_keys["speciesKey"][sp], ""),
            "issue": look.issues[idx % len(ISSUES)],
            "mediaType": look.media_types[pop.media_mask[idx]],
            "hasCoordinate": ["true" if v else "false" for v in lat],
            "hasGeospatialIssues": ["false"] * len(idx),
            "protocol": ["DWC_ARCHIVE"] * len(idx),
            "repatriated": ["false"] * len(idx),
        }
    )
    for rank_key in ("kingdomKey", "phylumKey", "classKey", "orderKey", "familyKey", "genusKey"):
        cols[rank_key] = look.species_keys[rank_key][sp]
    return cols


def _multimedia_chunk(
    pop: Population, idx: npt.NDArray[np.int64], look: _Lookups
) -> dict[str, list[str] | npt.NDArray[np.object_]]:
    kinds = pop.media_kind[idx]
    rows, slots = np.nonzero(kinds != KIND_NONE)  # row-major: grouped by record, slot order
    records = idx[rows]
    kind = kinds[rows, slots]
    no_id = kind == KIND_NO_ID
    bases = pop.media_base_urls
    n_bases = len(bases)
    # media_url semantics, vectorised: slot 0 of a duplicate points at the previous record
    source = records - ((slots == 0) & pop.duplicate_of_previous[records])
    query = pop.url_query[source]
    urls = []
    for src, slot, k, q, missing in zip(
        source.tolist(), slots.tolist(), kind.tolist(), query.tolist(), no_id.tolist(), strict=True
    ):
        if missing:
            urls.append("")
            continue
        base = bases[src % n_bases]
        gbif_id = BASE_KEY + src
        if k == KIND_SOUND:
            urls.append(f"{base}/media/{gbif_id}/{slot}.mp3")
        elif k == KIND_VIDEO:
            urls.append(f"{base}/media/{gbif_id}/{slot}.mp4")
        elif k == KIND_IIIF:
            urls.append(f"{base}/iiif/{gbif_id}/{slot}/manifest.json")
        elif (shared := pop.content_path(src, slot)) is not None:
            urls.append(f"{base}{shared}")
        elif q:
            stamp = 1_600_000_000 + (gbif_id * 7919) % 100_000_000
            urls.append(f"{base}/media/{gbif_id}/{slot}.jpg?{stamp}")
        else:
            urls.append(f"{base}/media/{gbif_id}/{slot}.jpg")
    record_list = records.tolist()
    refs = [
        f"{bases[r % n_bases]}/pages/{BASE_KEY + r}/{s}"
        for r, s in zip(record_list, slots.tolist(), strict=True)
    ]
    year, month, day = pop.year[records], pop.month[records], pop.day[records]
    minute = pop.minute_of_day[records]
    created = [
        f"{y:04d}-{m:02d}-{d:02d}T{t // 60:02d}:{t % 60:02d}:00Z" if y and not x else ""
        for y, m, d, t, x in zip(
            year.tolist(),
            month.tolist(),
            day.tolist(),
            minute.tolist(),
            no_id.tolist(),
            strict=True,
        )
    ]
    person = look.person[pop.person[records]]
    return {
        "gbifID": [str(BASE_KEY + r) for r in record_list],
        "type": look.kind_type[kind],
        "format": look.kind_format[kind],
        "identifier": urls,
        "references": refs,
        "created": created,
        "creator": np.where(no_id, "", person),
        "publisher": np.where(no_id, "", _PUBLISHER).astype(object),
        "license": look.media_license[pop.media_license[records, slots]],
        "rightsHolder": person,
    }


def _write_table(
    zf: zipfile.ZipFile,
    name: str,
    terms: list[str],
    chunks: Iterable[dict[str, list[str] | npt.NDArray[np.object_]]],
) -> int:
    """Stream one TAB-separated table into the zip; returns the number of data rows."""
    header = [_short(t) for t in terms]
    rows = 0
    with zf.open(name, "w", force_zip64=True) as fh:
        fh.write(("\t".join(header) + "\n").encode("utf-8"))
        row_format: str | None = None
        filled: list[str] = []
        for columns in chunks:
            if row_format is None:
                filled = [h for h in header if h in columns]
                row_format = "\t".join("%s" if h in columns else "" for h in header) + "\n"
            values = [columns[h] for h in filled]
            fmt = row_format
            text = "".join([fmt % row for row in zip(*values, strict=True)])
            rows += len(values[0]) if values else 0
            fh.write(text.encode("utf-8"))
    return rows


def _meta_xml(columns: dict[str, list[str]]) -> str:
    attrs = (
        'encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" '
        'ignoreHeaderLines="1"'
    )
    parts = ['<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="metadata.xml">']

    def section(tag: str, row_type: str, location: str, terms: list[str], id_tag: str) -> None:
        parts.append(f'  <{tag} {attrs} rowType="{row_type}">')
        parts.append(f"    <files>\n      <location>{location}</location>\n    </files>")
        parts.append(f'    <{id_tag} index="0" />')
        for index, term in enumerate(terms):
            parts.append(f'    <field index="{index}" term="{term}"/>')
        parts.append(f"  </{tag}>")

    section("core", _ROW_TYPE_OCCURRENCE, "occurrence.txt", columns["occurrence"], "id")
    section("extension", _ROW_TYPE_OCCURRENCE, "verbatim.txt", columns["verbatim"], "coreid")
    section("extension", _ROW_TYPE_MULTIMEDIA, "multimedia.txt", columns["multimedia"], "coreid")
    parts.append("</archive>")
    return "\n".join(parts) + "\n"


def _eml(package_id: str, title: str, abstract: str, date: str, identifiers: list[str]) -> str:
    ids = "".join(
        f"    <alternateIdentifier>{escape(i)}</alternateIdentifier>\n" for i in identifiers
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        '         xsi:schemaLocation="eml://ecoinformatics.org/eml-2.1.1 '
        'http://rs.gbif.org/schema/eml-gbif-profile/1.1/eml.xsd"\n'
        f'        packageId="{escape(package_id)}"  system="http://gbif.org" scope="system"\n'
        '  xml:lang="en">\n\n<dataset>\n'
        f"{ids}    <title>{escape(title)}</title>\n"
        "    <creator>\n      <individualName>\n        <surName>GBIF Download Service"
        "</surName>\n      </individualName>\n    </creator>\n"
        f"    <pubDate>{date}</pubDate>\n    <language>ENGLISH</language>\n"
        f"    <abstract>\n        <para>{escape(abstract)}</para>\n    </abstract>\n"
        "</dataset>\n</eml:eml>\n"
    )


def _write_metadata(
    zf: zipfile.ZipFile,
    used: list[tuple[dict[str, Any], int]],
    *,
    key: str,
    doi: str,
    link: str,
    today: str,
) -> None:
    """Write the download's EML, citations, rights and per-dataset EML into the zip."""
    abstract = (
        "A dataset containing all occurrences available in GBIF matching the query. "
        "The dataset includes records from the following constituent datasets:\n"
        + "\n".join(f"{n} records from {d['title']}" for d, n in used)
    )
    link = link or f"http://api.gbif.org/v1/occurrence/download/request/{key}.zip"
    zf.writestr(
        "metadata.xml",
        _eml(doi, f"GBIF Occurrence Download {doi}", abstract + f"\n{link}", today, [key]),
    )
    zf.writestr(
        "citations.txt",
        "When using this dataset please use the following citation and pay attention to "
        "the rights documented in rights.txt:\n"
        + "".join(
            f"{d['publishingOrgTitle']} ({today[:4]}). {d['title']}. Occurrence dataset "
            f"https://doi.org/{d['doi']} accessed via GBIF.org on {today}.\n"
            for d, _ in used
        ),
    )
    zf.writestr(
        "rights.txt",
        "".join(f"Dataset: {d['title']}\nRights as supplied: {d['licenseUrl']}\n" for d, _ in used),
    )
    for d, n in used:
        zf.writestr(
            f"dataset/{d['key']}.xml",
            _eml(d["key"], d["title"], f"{n} records in this download.", today, [d["doi"]]),
        )


def write_dwca(
    pop: Population,
    indices: Iterable[int] | npt.ArrayLike,
    path: str | os.PathLike[str],
    *,
    key: str = "0000000-000000000000000",
    doi: str = "10.15468/dl.simula",
    download_link: str = "",
    compresslevel: int = 1,
    chunk_size: int = _CHUNK,
) -> DwcaSummary:
    """Write the records ``indices`` of ``pop`` as a GBIF DwC-A download zip at ``path``.

    ``multimedia.txt`` holds one row per media object of each record (the same identifiers as
    :meth:`Population.record` gives). ``compresslevel`` is the zlib level of the deflated
    entries (1 keeps a million-record archive fast to build).

    Example:
        >>> import tempfile, pathlib
        >>> from dwca.read import DwCAReader
        >>> pop = Population(seed=3, size=20)
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "dl.zip"
        >>> _ = write_dwca(pop, [1, 2, 3], out)
        >>> with DwCAReader(str(out)) as dwca:
        ...     len(dwca.rows)
        3
    """
    idx = np.asarray(list(indices) if isinstance(indices, Iterable) else indices, dtype=np.int64)
    idx = idx.ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= pop.size):
        raise IndexError(f"indices must be within 0..{pop.size - 1}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    columns = dwca_columns()
    look = _Lookups(pop)
    chunk_starts = range(0, len(idx), max(1, chunk_size))

    def chunks(kind: str) -> Iterable[dict[str, Any]]:
        for start in chunk_starts:
            part = idx[start : start + chunk_size]
            if kind == "multimedia":
                yield _multimedia_chunk(pop, part, look)
            else:
                yield _occurrence_chunk(pop, part, look, verbatim=kind == "verbatim")

    ds_counts = np.bincount(pop.ds[idx], minlength=len(pop._datasets))
    used = [(pop._datasets[j], int(n)) for j, n in enumerate(ds_counts) if n]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    fd, tmp_name = tempfile.mkstemp(prefix=".dwca-", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(
            tmp_name, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
        ) as zf:
            zf.writestr("meta.xml", _meta_xml(columns))
            n_occ = _write_table(zf, "occurrence.txt", columns["occurrence"], chunks("occurrence"))
            _write_table(zf, "verbatim.txt", columns["verbatim"], chunks("verbatim"))
            n_media = _write_table(
                zf, "multimedia.txt", columns["multimedia"], chunks("multimedia")
            )
            _write_metadata(zf, used, key=key, doi=doi, link=download_link, today=today)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    size = target.stat().st_size
    logger.info("wrote DwC-A %s: %d occurrences, %d media rows", target, n_occ, n_media)
    return DwcaSummary(target, n_occ, n_media, size, tuple(d["key"] for d, _ in used))

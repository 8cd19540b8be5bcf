"""Compact JSON text of a population's records, assembled from precomputed fragments.

:meth:`RecordJsonMixin.records_json` gives exactly ``json.dumps(records, separators=(",", ":"),
ensure_ascii=False)`` of :meth:`~gbif_dl.testing.population.Population.records`, several times
faster, by joining JSON fragments precomputed per species, dataset, country and observer
(:class:`_JsonParts`). This module also owns the occurrence template (``load_template``) and the
taxonomy fields every record carries (``taxon_fields``), shared with the dict-building path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from functools import cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from gbif_dl.testing.columns import PopulationColumns
from gbif_dl.testing.tables import (
    BASE_KEY,
    BASIS_OF_RECORD,
    COUNTRIES,
    FIRST_NAMES,
    ISSUES,
    KIND_NO_ID,
    KIND_NONE,
    LAST_NAMES,
    MAX_MEDIA,
    MEDIA_LICENSES,
    MEDIA_TYPE_FORMAT,
    RANKS,
)

__all__ = ["RecordJsonMixin", "load_template", "taxon_fields"]

logger = logging.getLogger(__name__)


def load_template() -> dict[str, Any]:
    """The real GBIF occurrence record the synthetic records are shaped after."""
    path = resources.files("gbif_dl.testing").joinpath("data").joinpath("occurrence_template.json")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _field(name: str, value: Any) -> str:
    """``,"name":value`` as compact JSON."""
    return f",{_dumps(name)}:{_dumps(value)}"


def _inner(text: str) -> str:
    """A string JSON-escaped without its quotes (escaping is per character, so it concatenates)."""
    return _dumps(text)[1:-1]


#: Template keys, in order, that :meth:`Population.records_json` is written for.
_TEMPLATE_KEYS = (
    "key", "datasetKey", "publishingOrgKey", "publishingCountry", "protocol", "lastCrawled",
    "lastParsed", "crawlId", "extensions", "basisOfRecord", "occurrenceStatus", "taxonKey",
    "kingdomKey", "phylumKey", "classKey", "orderKey", "familyKey", "genusKey", "speciesKey",
    "acceptedTaxonKey", "scientificName", "acceptedScientificName", "kingdom", "phylum", "order",
    "family", "genus", "species", "genericName", "specificEpithet", "taxonRank",
    "taxonomicStatus", "decimalLatitude", "decimalLongitude", "year", "month", "day", "eventDate",
    "startDayOfYear", "endDayOfYear", "issues", "modified", "lastInterpreted", "references",
    "license", "isSequenced", "identifiers", "media", "facts", "relations", "isInCluster",
    "datasetName", "recordedBy", "identifiedBy", "geodeticDatum", "class", "countryCode",
    "recordedByIDs", "identifiedByIDs", "country", "rightsHolder", "identifier", "collectionCode",
    "gbifID", "occurrenceID", "catalogNumber", "institutionCode",
)  # fmt: skip
_TAXON_BLOCK = _TEMPLATE_KEYS[
    _TEMPLATE_KEYS.index("taxonKey") : _TEMPLATE_KEYS.index("taxonomicStatus") + 1
]


def taxon_fields(rec: dict[str, Any], sp: Mapping[str, Any], has_species: bool) -> None:
    """Set the taxonomy fields of ``rec`` (a template copy) for species ``sp``."""
    for rank in RANKS:
        rec[f"{rank}Key"] = sp[f"{rank}Key"]
        rec[rank] = sp[rank]
    if has_species:
        rec["taxonKey"] = rec["speciesKey"] = rec["acceptedTaxonKey"] = sp["key"]
        rec["scientificName"] = rec["acceptedScientificName"] = sp["scientificName"]
        rec["species"] = sp["canonicalName"]
        rec["genericName"], rec["specificEpithet"] = sp["genericName"], sp["specificEpithet"]
        rec["taxonRank"] = "SPECIES"
    else:
        rec["taxonKey"] = rec["acceptedTaxonKey"] = sp["genusKey"]
        rec["scientificName"] = rec["acceptedScientificName"] = sp["genus"]
        rec["genericName"] = sp["genus"]
        rec["taxonRank"] = "GENUS"
        for field in ("speciesKey", "species", "specificEpithet"):
            del rec[field]
    rec["taxonomicStatus"] = "ACCEPTED"


class _JsonParts:
    """JSON fragments of records, precomputed per species, dataset, country, observer, ..."""

    def __init__(self, pop: RecordJsonMixin) -> None:
        template = pop._template
        self.const_crawl = "".join(
            _field(k, template[k]) for k in ("protocol", "lastCrawled", "lastParsed", "crawlId")
        ) + _field("extensions", {})
        self.const_modified = "".join(
            _field(k, template[k]) for k in ("modified", "lastInterpreted")
        )
        self.const_sequenced = _field("isSequenced", template["isSequenced"])
        self.const_facts = (
            _field("facts", [])
            + _field("relations", [])
            + _field("isInCluster", template["isInCluster"])
        )
        self.const_ids = _field("recordedByIDs", []) + _field("identifiedByIDs", [])
        self.geodetic = _field("geodeticDatum", template["geodeticDatum"])
        self.bases = [_inner(b) for b in pop.media_base_urls]
        self.persons = [
            _dumps(f"{FIRST_NAMES[p % len(FIRST_NAMES)]} {LAST_NAMES[p // len(FIRST_NAMES)]}")
            for p in range(len(FIRST_NAMES) * len(LAST_NAMES))
        ]
        self.basis = [_field("basisOfRecord", b) for b in BASIS_OF_RECORD]
        self.issues = [_field("issues", list(issues)) for issues in ISSUES]
        self.taxon: list[tuple[str, str]] = []
        for sp in pop._species:
            blocks = []
            for has_species in (True, False):
                rec = {k: template[k] for k in _TAXON_BLOCK}
                taxon_fields(rec, sp, has_species)
                del rec["class"]  # "class" comes much later in a record, see self.klass
                blocks.append("".join(_field(k, v) for k, v in rec.items()))
            self.taxon.append((blocks[0], blocks[1]))
        self.klass = [_field("class", sp["class"]) for sp in pop._species]
        self.datasets = [
            (
                _field("datasetKey", ds["key"])
                + _field("publishingOrgKey", ds["publishingOrgKey"])
                + _field("publishingCountry", ds["publishingCountry"]),
                _field("license", ds["licenseUrl"]),
                _field("datasetName", ds["title"]),
                _field("collectionCode", ds["collectionCode"]),
                _field("institutionCode", ds["institutionCode"]),
            )
            for ds in pop._datasets
        ]
        self.countries = [
            (_field("countryCode", code), _field("country", title)) for code, title, *_ in COUNTRIES
        ]
        self.media_licenses = [
            _field("license", text) if text else "" for text, _ in MEDIA_LICENSES
        ]
        self.media_heads = {
            kind: (f'"type":"{media_type}",' if media_type else "") + f'"format":"{media_format}",'
            for kind, (media_type, media_format) in MEDIA_TYPE_FORMAT.items()
        }


class RecordJsonMixin(PopulationColumns):
    """:class:`~gbif_dl.testing.population.Population` methods that write records as JSON text."""

    if TYPE_CHECKING:  # provided by Population

        def records(self, indices: Iterable[int]) -> list[dict[str, Any]]: ...

        def media_url(self, index: int, slot: int) -> str: ...

        def _created(self, index: int) -> str | None: ...

    def records_json(self, indices: Iterable[int]) -> str:
        """``json.dumps(self.records(indices))`` in compact form, built without the dicts.

        The text is exactly ``json.dumps(records, separators=(",", ":"), ensure_ascii=False)``
        (same keys, order and values), assembled from JSON fragments precomputed per species,
        dataset, country and observer, several times faster than building and encoding the
        dicts. The simulator serialises search pages with it.

        Example:
            >>> from gbif_dl.testing.population import Population
            >>> pop = Population(seed=0, size=20)
            >>> text = pop.records_json(range(5))
            >>> json.loads(text) == pop.records(range(5))
            True
        """
        parts = self._json_parts
        if parts is None:  # the template changed shape: take the slow, always-right path
            return _dumps(self.records(indices))
        out = [self._record_json(int(i), parts) for i in indices]
        return "[" + ",".join(out) + "]"

    @cached_property
    def _json_parts(self) -> _JsonParts | None:
        if tuple(self._template) != _TEMPLATE_KEYS:
            logger.debug("occurrence template keys changed; records_json uses json.dumps")
            return None
        return _JsonParts(self)

    def _record_json(self, i: int, parts: _JsonParts) -> str:
        if not 0 <= i < self.size:
            raise IndexError(f"record index {i} out of range 0..{self.size - 1}")
        s = int(self.sp[i])
        d = int(self.ds[i])
        c = int(self.ctry[i])
        key = str(BASE_KEY + i)
        base = parts.bases[i % len(parts.bases)]
        person = parts.persons[int(self.person[i])]
        taxon = parts.taxon[s][0 if self.has_species[i] else 1]
        ds_head, ds_license, ds_name, ds_collection, ds_institution = parts.datasets[d]
        has_coord = not np.isnan(self.lat[i])
        coords, tail = self._coords_json(i)
        date = self._date_json(i)
        country_code, country = parts.countries[c]
        return "".join(
            (
                '{"key":',
                key,
                ds_head,
                parts.const_crawl,
                parts.basis[int(self.bor[i])],
                ',"occurrenceStatus":"ABSENT"'
                if self.absent[i]
                else ',"occurrenceStatus":"PRESENT"',
                taxon,
                coords,
                date,
                parts.issues[i % len(parts.issues)],
                parts.const_modified,
                ',"references":"',
                base,
                "/observations/",
                key,
                '"',
                ds_license,
                parts.const_sequenced,
                ',"identifiers":[{"identifier":"',
                key,
                '"}],"media":',
                self._media_json(i, parts, base, person),
                parts.const_facts,
                ds_name,
                ',"recordedBy":',
                person,
                ',"identifiedBy":',
                person,
                parts.geodetic if has_coord else "",
                parts.klass[s],
                country_code,
                parts.const_ids,
                country,
                ',"rightsHolder":',
                person,
                ',"identifier":"',
                key,
                '"',
                ds_collection,
                ',"gbifID":"',
                key,
                '","occurrenceID":"',
                base,
                "/observations/",
                key,
                '","catalogNumber":"',
                key,
                '"',
                ds_institution,
                tail,
            )
        )

    def _coords_json(self, i: int) -> tuple[str, str]:
        """The coordinate fields of record ``i`` and the record's closing text (with elevation)."""
        lat = self.lat[i]
        if np.isnan(lat):
            return "", "}"
        coords = f',"decimalLatitude":{float(lat)!r},"decimalLongitude":{float(self.lon[i])!r}'
        elevation = self.elevation[i]
        tail = "}" if np.isnan(elevation) else f',"elevation":{float(elevation)!r}}}'
        return coords, tail

    def _date_json(self, i: int) -> str:
        """The date fields of record ``i`` (``year`` ... ``endDayOfYear``), or "" without a year."""
        year = int(self.year[i])
        if not year:
            return ""
        month, day = int(self.month[i]), int(self.day[i])
        minute = int(self.minute_of_day[i])
        doy = min(365, (month - 1) * 30 + day)
        return (
            f',"year":{year},"month":{month},"day":{day},"eventDate":"{year:04d}-{month:02d}-'
            f'{day:02d}T{minute // 60:02d}:{minute % 60:02d}","startDayOfYear":{doy},'
            f'"endDayOfYear":{doy}'
        )

    def _media_json(self, i: int, parts: _JsonParts, base: str, person: str) -> str:
        kinds = self.media_kind[i]
        if not kinds[0]:
            return "[]"
        licenses = self.media_license[i]
        gbif_id = str(BASE_KEY + i)
        created_text = self._created(i)
        created = f',"created":"{created_text}"' if created_text else ""
        items = []
        for slot in range(MAX_MEDIA):
            kind = int(kinds[slot])
            if kind == KIND_NONE:
                continue
            license_part = parts.media_licenses[int(licenses[slot])]
            references = f'"references":"{base}/pages/{gbif_id}/{slot}"'
            if kind == KIND_NO_ID:
                items.append(
                    f'{{"type":"StillImage",{references}{license_part},"rightsHolder":{person}}}'
                )
                continue
            url = _dumps(self.media_url(i, slot))
            items.append(
                f'{{{parts.media_heads[kind]}{references}{created},"creator":{person},'
                f'"publisher":"Simulated publisher"{license_part},"rightsHolder":{person},'
                f'"identifier":{url}}}'
            )
        return "[" + ",".join(items) + "]"

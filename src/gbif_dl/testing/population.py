"""A deterministic synthetic GBIF occurrence population, queryable like the occurrence search API.

The filterable fields live in compact numpy columns (about 50 bytes per record), so millions of
records fit in memory and a search over a million records is a handful of vectorised boolean
masks. Full GBIF-shaped JSON records are built only when asked for, one index at a time, from a
template record taken from a real GBIF response (``data/occurrence_template.json``).

Everything is a pure function of the constructor arguments: two populations built with the same
arguments are identical, record by record and byte by byte.

The population is deliberately messy, like real GBIF data: about 10% of records have no media,
some media have no ``identifier`` or no ``type``, some are ``Sound``, ``MovingImage`` or
``InteractiveResource``, media licences include free text ("All rights reserved"), a few image
URLs are shared by two consecutive occurrences, about 3% of records are identified above species
rank (no ``speciesKey``), some have no year and some no coordinates.

This module builds the population (taxonomy, datasets, columns) and its records as dicts; the
search (:mod:`~gbif_dl.testing.population_search`), species match
(:mod:`~gbif_dl.testing.species_match`) and JSON text (:mod:`~gbif_dl.testing.record_json`)
methods come from mixins, the constant tables from :mod:`~gbif_dl.testing.tables` and search
parameter parsing from :mod:`~gbif_dl.testing.search_params` (re-exported here).

Example:
    >>> pop = Population(seed=0, size=1_000, n_species=5, n_datasets=3)
    >>> rec = pop.record(0)
    >>> rec["gbifID"] == str(rec["key"])
    True
    >>> hits = pop.select({"mediaType": "StillImage", "year": "2015,*"})
    >>> all(pop.record(int(i))["year"] >= 2015 for i in hits[:20])
    True
    >>> pop.match_name("Helianthus annuus")["matchType"] in ("EXACT", "NONE")
    True
"""

from __future__ import annotations

import copy
import hashlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from gbif_dl.errors import ConfigError
from gbif_dl.testing.population_search import PopulationSearchMixin
from gbif_dl.testing.record_json import RecordJsonMixin, load_template, taxon_fields
from gbif_dl.testing.search_params import (
    InvalidSearchError,
    canonical_param,
    facet_field_name,
    normalize_param,
)
from gbif_dl.testing.species_match import SpeciesMatchMixin
from gbif_dl.testing.tables import (
    BASE_KEY,
    BASIS_OF_RECORD,
    BASIS_P,
    COUNTRIES,
    COUNTRY_CODES,
    FIRST_NAMES,
    ISSUES,
    KIND_BIT,
    KIND_IIIF,
    KIND_IMAGE,
    KIND_NO_ID,
    KIND_NONE,
    KIND_P,
    KIND_SOUND,
    KIND_VIDEO,
    LAST_NAMES,
    LICENSE_ENUM,
    MAX_MEDIA,
    MEDIA_LICENSES,
    MEDIA_TYPE_FORMAT,
    MEDIA_TYPES,
    RANKS,
    RECORD_LICENSES,
    SPECIES_TABLE,
)

__all__ = [
    "BASE_KEY",
    "BASIS_OF_RECORD",
    "COUNTRY_CODES",
    "LICENSE_ENUM",
    "MAX_MEDIA",
    "MEDIA_LICENSES",
    "MEDIA_TYPES",
    "RECORD_LICENSES",
    "InvalidSearchError",
    "Population",
    "canonical_param",
    "facet_field_name",
    "normalize_param",
]

logger = logging.getLogger(__name__)


def _share(seed: int, what: str, index: int) -> float:
    """A uniform number in [0, 1) from ``(seed, what, index)`` (independent of the columns)."""
    digest = hashlib.blake2b(f"{seed}|{what}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Population(RecordJsonMixin, PopulationSearchMixin, SpeciesMatchMixin):
    """A deterministic synthetic set of GBIF occurrences, searchable with GBIF semantics.

    Args:
        seed: everything is derived from it.
        size: number of occurrence records.
        n_species: species drawn from a built-in list of real species (more than the list holds
            adds synthetic species in the same genera).
        n_datasets: datasets, each with a UUID key, a publishing organisation and a licence.
        media_base_urls: where media ``identifier`` URLs point, round-robin by record
            (``<base>/media/<gbifID>/<j>.jpg``); default ``http://127.0.0.1:9``, a dead port.
        species_weights: relative frequency of each species; None = Zipf-like skew.
        photo_copies: share of pairs of consecutive records (``2k``, ``2k+1``) that show one
            photo under two URLs (the first image of each): the same bytes, a copy resized to
            50% or one re-encoded at quality 60 (the media hosts' ``/copy``, ``/resized`` and
            ``/reencoded`` paths). Default 0: every record its own photo.
        placeholder_share: share of records whose first image is the publisher's "image not
            available" picture (``/placeholder/...``: one image behind many occurrences).

    Example:
        >>> pop = Population(seed=1, size=200, n_species=3, n_datasets=2)
        >>> len(pop.species), len(pop.dataset_keys)
        (3, 2)
        >>> counts = pop.facet(pop.select({}), "speciesKey")
        >>> sum(counts.values()) <= pop.size
        True
    """

    def __init__(
        self,
        seed: int = 0,
        size: int = 5_000,
        n_species: int = 12,
        n_datasets: int = 4,
        media_base_urls: Sequence[str] | None = None,
        species_weights: Sequence[float] | None = None,
        photo_copies: float = 0.0,
        placeholder_share: float = 0.0,
    ) -> None:
        if not (0 <= photo_copies <= 1 and 0 <= placeholder_share <= 1):
            raise ConfigError(
                "photo_copies and placeholder_share are shares in 0..1; got "
                f"{photo_copies!r} and {placeholder_share!r}"
            )
        self.photo_copies = float(photo_copies)
        self.placeholder_share = float(placeholder_share)
        if size < 0:
            raise ConfigError(f"Population size must be >= 0, got {size}; pass size=1000 or so")
        if n_species < 1 or n_datasets < 1:
            raise ConfigError(
                f"Population needs n_species >= 1 and n_datasets >= 1 "
                f"(got {n_species}, {n_datasets}); pass positive numbers"
            )
        if species_weights is not None and len(species_weights) != n_species:
            raise ConfigError(
                f"species_weights has {len(species_weights)} entries but n_species={n_species}; "
                "give one weight per species"
            )
        self.seed = int(seed)
        self.size = int(size)
        self.media_base_urls = [u.rstrip("/") for u in (media_base_urls or ["http://127.0.0.1:9"])]
        self._template = load_template()
        self._build_taxonomy(n_species)
        self._build_datasets(n_datasets)
        self._build_columns(species_weights)
        logger.debug("built population seed=%s size=%s", self.seed, self.size)

    # --- construction -------------------------------------------------------------------------

    def _build_taxonomy(self, n_species: int) -> None:
        species: list[dict[str, Any]] = []
        for k in range(n_species):
            row = SPECIES_TABLE[k % len(SPECIES_TABLE)]
            key, sci = row[0], row[1]
            canonical = " ".join(sci.split()[:2])
            if k >= len(SPECIES_TABLE):  # synthetic extra species in a known genus
                genus_name = row[7][1]
                key = 9_000_000 + k
                canonical = f"{genus_name} synthetica{k}"
                sci = f"{canonical} Simulator, 2024"
            info: dict[str, Any] = {
                "key": key,
                "scientificName": sci,
                "canonicalName": canonical,
                "rank": "SPECIES",
            }
            for rank, (rank_key, rank_name) in zip(RANKS, row[2:8], strict=True):
                info[rank] = rank_name
                info[f"{rank}Key"] = rank_key
            info["species"] = canonical
            info["speciesKey"] = key
            info["genericName"], info["specificEpithet"] = canonical.split()[:2]
            species.append(info)
        self._species = species
        self._rank_keys = {
            rank: np.array([s[f"{rank}Key"] for s in species], dtype=np.int64)
            for rank in (*RANKS, "species")
        }

    def _build_datasets(self, n_datasets: int) -> None:
        rng = np.random.default_rng([self.seed, 1])
        n_orgs = max(1, (n_datasets + 1) // 2)
        orgs = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n_orgs)]
        org_countries = [COUNTRY_CODES[(self.seed + j) % len(COUNTRY_CODES)] for j in range(n_orgs)]
        datasets = []
        for j in range(n_datasets):
            license_code, license_url = RECORD_LICENSES[j % len(RECORD_LICENSES)]
            datasets.append(
                {
                    "key": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
                    "title": f"Synthetic occurrence dataset {j + 1}",
                    "publishingOrgKey": orgs[j % n_orgs],
                    "publishingOrgTitle": f"Simulated publisher {j % n_orgs + 1}",
                    "publishingCountry": org_countries[j % n_orgs],
                    "license": license_code,
                    "licenseUrl": license_url,
                    "institutionCode": f"SIM{j % n_orgs + 1}",
                    "collectionCode": "Observations",
                    "doi": f"10.15468/sim{self.seed % 1000:03d}{j:03d}",
                }
            )
        self._datasets = datasets
        self._dataset_license = np.array(
            [LICENSE_ENUM.index(d["license"]) for d in datasets], dtype=np.int8
        )

    def _build_columns(self, species_weights: Sequence[float] | None) -> None:
        n = self.size
        rng = np.random.default_rng([self.seed, 2])
        n_species = len(self._species)
        if species_weights is None:
            weights = 1.0 / np.arange(1, n_species + 1) ** 1.1
        else:
            weights = np.asarray(species_weights, dtype=float)
            if (weights < 0).any() or weights.sum() <= 0:
                raise ConfigError("species_weights must be >= 0 with a positive sum")
        self.sp = rng.choice(n_species, size=n, p=weights / weights.sum()).astype(np.int16)
        self.has_species = rng.random(n) >= 0.03
        ds_w = 1.0 / np.arange(1, len(self._datasets) + 1) ** 0.7
        self.ds = rng.choice(len(self._datasets), size=n, p=ds_w / ds_w.sum()).astype(np.int16)
        self.bor = rng.choice(len(BASIS_P), size=n, p=BASIS_P).astype(np.int8)
        c_w = np.array([c[4] for c in COUNTRIES])
        self.ctry = rng.choice(len(COUNTRIES), size=n, p=c_w / c_w.sum()).astype(np.int8)
        has_year = rng.random(n) >= 0.04
        years = 2025 - np.minimum(rng.geometric(0.15, size=n), 35)
        self.year = np.where(has_year, years, 0).astype(np.int16)
        self.month = np.where(has_year, rng.integers(1, 13, size=n), 0).astype(np.int8)
        self.day = np.where(has_year, rng.integers(1, 29, size=n), 0).astype(np.int8)
        self.minute_of_day = rng.integers(0, 24 * 60, size=n).astype(np.int16)
        has_coord = rng.random(n) >= 0.07
        lat_box = np.array([c[2] for c in COUNTRIES])[self.ctry]
        lon_box = np.array([c[3] for c in COUNTRIES])[self.ctry]
        lat = lat_box[:, 0] + rng.random(n) * (lat_box[:, 1] - lat_box[:, 0])
        lon = lon_box[:, 0] + rng.random(n) * (lon_box[:, 1] - lon_box[:, 0])
        self.lat = np.where(has_coord, np.round(lat, 6), np.nan)
        self.lon = np.where(has_coord, np.round(lon, 6), np.nan)
        has_elev = has_coord & (rng.random(n) < 0.4)
        self.elevation = np.where(has_elev, rng.integers(0, 3000, size=n), np.nan)
        self.absent = rng.random(n) < 0.01
        # media: 10% none, else 1-3 slots of a kind
        n_media = np.where(rng.random(n) < 0.10, 0, rng.choice(3, size=n, p=(0.55, 0.3, 0.15)) + 1)
        kinds = rng.choice(np.arange(1, 7), size=(n, MAX_MEDIA), p=KIND_P).astype(np.uint8)
        kinds[np.arange(MAX_MEDIA)[None, :] >= n_media[:, None]] = KIND_NONE
        self.media_kind = kinds
        self.media_mask = np.bitwise_or.reduce(KIND_BIT[kinds], axis=1).astype(np.uint8)
        lic_p = np.array([p for _, p in MEDIA_LICENSES])
        self.media_license = rng.choice(
            len(MEDIA_LICENSES), size=(n, MAX_MEDIA), p=lic_p / lic_p.sum()
        ).astype(np.int8)
        self.url_query = rng.random(n) < 0.10
        self.person = rng.integers(0, len(FIRST_NAMES) * len(LAST_NAMES), size=n).astype(np.int16)
        image0 = kinds[:, 0] == KIND_IMAGE
        candidate = np.zeros(n, dtype=bool)
        if n > 1:
            candidate[1:] = image0[1:] & image0[:-1] & (rng.random(n - 1) < 0.01)
            candidate[1:] &= ~candidate[:-1]  # pairs only, never a chain of three
        self.duplicate_of_previous = candidate

    # --- public metadata ----------------------------------------------------------------------

    @property
    def species(self) -> list[dict[str, Any]]:
        """The population's species: ``key``, ``scientificName``, ``canonicalName``, rank keys."""
        return [dict(s) for s in self._species]

    @property
    def datasets(self) -> list[dict[str, Any]]:
        """Dataset metadata: ``key``, ``title``, ``publishingOrgKey``, ``license``, ..."""
        return [dict(d) for d in self._datasets]

    @property
    def dataset_keys(self) -> list[str]:
        """The dataset UUIDs, in index order."""
        return [d["key"] for d in self._datasets]

    @staticmethod
    def key_of(index: int) -> int:
        """The occurrence ``key`` of record ``index``."""
        return BASE_KEY + int(index)

    def index_of(self, key: int | str) -> int | None:
        """The record index of an occurrence key, or None if the population has no such key."""
        try:
            index = int(key) - BASE_KEY
        except (TypeError, ValueError):
            return None
        return index if 0 <= index < self.size else None

    # --- records ------------------------------------------------------------------------------

    def person_name(self, index: int) -> str:
        """The observer name of record ``index`` (recordedBy, creator, rightsHolder)."""
        p = int(self.person[index])
        return f"{FIRST_NAMES[p % len(FIRST_NAMES)]} {LAST_NAMES[p // len(FIRST_NAMES)]}"

    def media_url(self, index: int, slot: int) -> str:
        """The identifier URL of media ``slot`` of record ``index`` (duplicates resolved)."""
        if slot == 0 and self.duplicate_of_previous[index]:
            index -= 1
        kind = int(self.media_kind[index, slot])
        base = self.media_base_urls[index % len(self.media_base_urls)]
        gbif_id = BASE_KEY + index
        if kind == KIND_SOUND:
            return f"{base}/media/{gbif_id}/{slot}.mp3"
        if kind == KIND_VIDEO:
            return f"{base}/media/{gbif_id}/{slot}.mp4"
        if kind == KIND_IIIF:
            return f"{base}/iiif/{gbif_id}/{slot}/manifest.json"
        shared = self.content_path(index, slot)
        if shared is not None:
            return f"{base}{shared}"
        url = f"{base}/media/{gbif_id}/{slot}.jpg"
        if self.url_query[index]:
            url += f"?{1_600_000_000 + (gbif_id * 7919) % 100_000_000}"
        return url

    def content_path(self, index: int, slot: int) -> str | None:
        """The media-host path of record ``index``'s image ``slot`` when it shows a shared photo
        or a placeholder (``photo_copies``, ``placeholder_share``), else None.

        Example:
            >>> pop = Population(seed=1, size=20, placeholder_share=1.0)
            >>> pop.content_path(3, 0)
            '/placeholder/4000000003.jpg'
            >>> Population(seed=1, size=20).content_path(3, 0) is None
            True
        """
        if slot != 0 or not (self.photo_copies or self.placeholder_share):
            return None
        gbif_id = BASE_KEY + index
        if _share(self.seed, "placeholder", index) < self.placeholder_share:
            return f"/placeholder/{gbif_id}.jpg"
        pair = index // 2
        if _share(self.seed, "copies", pair) >= self.photo_copies:
            return None
        key = f"s{self.seed}g{pair}"
        if index % 2 == 0:
            return f"/copy/{key}/{gbif_id}.jpg"
        variant = ("copy", "resized/50", "reencoded/60")[int(_share(self.seed, "how", pair) * 3)]
        return f"/{variant}/{key}/{gbif_id}.jpg"

    def _created(self, index: int) -> str | None:
        year = int(self.year[index])
        if not year:
            return None
        minute = int(self.minute_of_day[index])
        return (
            f"{year:04d}-{int(self.month[index]):02d}-{int(self.day[index]):02d}"
            f"T{minute // 60:02d}:{minute % 60:02d}:00.000+00:00"
        )

    def media(self, index: int) -> list[dict[str, Any]]:
        """The ``media`` array of record ``index``, as GBIF's interpreted JSON carries it."""
        out = []
        person = self.person_name(index)
        created = self._created(index)
        base = self.media_base_urls[index % len(self.media_base_urls)]
        gbif_id = BASE_KEY + index
        for slot in range(MAX_MEDIA):
            kind = int(self.media_kind[index, slot])
            if kind == KIND_NONE:
                continue
            license_text = MEDIA_LICENSES[int(self.media_license[index, slot])][0]
            references = f"{base}/pages/{gbif_id}/{slot}"
            item: dict[str, Any]
            if kind == KIND_NO_ID:
                item = {"type": "StillImage", "references": references}
                if license_text:
                    item["license"] = license_text
                item["rightsHolder"] = person
                out.append(item)
                continue
            media_type, media_format = MEDIA_TYPE_FORMAT[kind]
            item = {}
            if media_type:
                item["type"] = media_type
            item["format"] = media_format
            item["references"] = references
            if created:
                item["created"] = created
            item["creator"] = person
            item["publisher"] = "Simulated publisher"
            if license_text:
                item["license"] = license_text
            item["rightsHolder"] = person
            item["identifier"] = self.media_url(index, slot)
            out.append(item)
        return out

    def record(self, index: int) -> dict[str, Any]:
        """One occurrence, shaped as ``GET /v1/occurrence/{key}`` returns it.

        Example:
            >>> rec = Population(seed=0, size=10).record(3)
            >>> type(rec["key"]).__name__, type(rec["gbifID"]).__name__
            ('int', 'str')
        """
        i = int(index)
        if not 0 <= i < self.size:
            raise IndexError(f"record index {i} out of range 0..{self.size - 1}")
        sp = self._species[int(self.sp[i])]
        ds = self._datasets[int(self.ds[i])]
        has_species = bool(self.has_species[i])
        key = BASE_KEY + i
        base = self.media_base_urls[i % len(self.media_base_urls)]
        person = self.person_name(i)
        rec = dict(self._template)
        rec["key"] = key
        rec["datasetKey"] = ds["key"]
        rec["publishingOrgKey"] = ds["publishingOrgKey"]
        rec["publishingCountry"] = ds["publishingCountry"]
        rec["extensions"] = {}
        rec["basisOfRecord"] = BASIS_OF_RECORD[int(self.bor[i])]
        rec["occurrenceStatus"] = "ABSENT" if self.absent[i] else "PRESENT"
        taxon_fields(rec, sp, has_species)
        if np.isnan(self.lat[i]):
            del rec["decimalLatitude"], rec["decimalLongitude"], rec["geodeticDatum"]
        else:
            rec["decimalLatitude"] = float(self.lat[i])
            rec["decimalLongitude"] = float(self.lon[i])
            if not np.isnan(self.elevation[i]):
                rec["elevation"] = float(self.elevation[i])
        year = int(self.year[i])
        if year:
            rec["year"], rec["month"], rec["day"] = year, int(self.month[i]), int(self.day[i])
            minute = int(self.minute_of_day[i])
            date = f"{year:04d}-{rec['month']:02d}-{rec['day']:02d}"
            rec["eventDate"] = f"{date}T{minute // 60:02d}:{minute % 60:02d}"
            doy = min(365, (rec["month"] - 1) * 30 + rec["day"])
            rec["startDayOfYear"] = rec["endDayOfYear"] = doy
        else:
            for field in ("year", "month", "day", "eventDate", "startDayOfYear", "endDayOfYear"):
                del rec[field]
        rec["issues"] = list(ISSUES[i % len(ISSUES)])
        rec["references"] = f"{base}/observations/{key}"
        rec["license"] = ds["licenseUrl"]
        rec["identifiers"] = [{"identifier": str(key)}]
        rec["media"] = self.media(i)
        rec["facts"], rec["relations"] = [], []
        rec["datasetName"] = ds["title"]
        rec["recordedBy"] = rec["identifiedBy"] = person
        rec["recordedByIDs"], rec["identifiedByIDs"] = [], []
        code, title = COUNTRIES[int(self.ctry[i])][:2]
        rec["countryCode"], rec["country"] = code, title
        rec["rightsHolder"] = person
        rec["identifier"] = str(key)
        rec["collectionCode"] = ds["collectionCode"]
        rec["gbifID"] = str(key)
        rec["occurrenceID"] = f"{base}/observations/{key}"
        rec["catalogNumber"] = str(key)
        rec["institutionCode"] = ds["institutionCode"]
        return rec

    def records(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        """Records for several indices (e.g. one search page)."""
        return [self.record(int(i)) for i in indices]

    def copy_template(self) -> dict[str, Any]:
        """A deep copy of the real GBIF record the population's records are shaped after."""
        return copy.deepcopy(self._template)

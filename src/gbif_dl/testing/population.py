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
import difflib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from gbif_dl.errors import ConfigError

__all__ = [
    "BASE_KEY",
    "MEDIA_TYPES",
    "InvalidSearchError",
    "Population",
    "canonical_param",
    "facet_field_name",
    "normalize_param",
]

logger = logging.getLogger(__name__)

#: ``key`` (and ``gbifID``) of record 0; record ``i`` has key ``BASE_KEY + i``.
BASE_KEY = 4_000_000_000

#: MediaType enum names in bit order of the ``mediaType`` column.
MEDIA_TYPES = ("StillImage", "MovingImage", "Sound", "InteractiveResource")

BASIS_OF_RECORD = (
    "HUMAN_OBSERVATION",
    "PRESERVED_SPECIMEN",
    "MACHINE_OBSERVATION",
    "MATERIAL_SAMPLE",
    "OBSERVATION",
    "LIVING_SPECIMEN",
    "FOSSIL_SPECIMEN",
    "LITERATURE",
    "MATERIAL_CITATION",
    "OCCURRENCE",
)
_BASIS_P = (0.82, 0.12, 0.04, 0.02)

#: Record (dataset) licences: enum name and the legal-code URL GBIF puts in records.
RECORD_LICENSES = (
    ("CC_BY_NC_4_0", "http://creativecommons.org/licenses/by-nc/4.0/legalcode"),
    ("CC_BY_4_0", "http://creativecommons.org/licenses/by/4.0/legalcode"),
    ("CC0_1_0", "http://creativecommons.org/publicdomain/zero/1.0/legalcode"),
)
LICENSE_ENUM = ("CC0_1_0", "CC_BY_4_0", "CC_BY_NC_4_0", "UNSPECIFIED", "UNSUPPORTED")

#: Media licences as publishers write them (free text included), with their frequencies.
MEDIA_LICENSES: tuple[tuple[str | None, float], ...] = (
    ("http://creativecommons.org/licenses/by-nc/4.0/", 0.40),
    ("http://creativecommons.org/licenses/by/4.0/", 0.22),
    ("http://creativecommons.org/publicdomain/zero/1.0/", 0.14),
    ("http://creativecommons.org/licenses/by-sa/4.0/", 0.05),
    ("http://creativecommons.org/licenses/by-nc-nd/4.0/", 0.04),
    ("All rights reserved", 0.07),
    ("Usage Conditions Apply", 0.03),
    (None, 0.05),
)

# Countries: ISO code, GBIF country title, latitude box, longitude box, weight.
_COUNTRIES: tuple[tuple[str, str, tuple[float, float], tuple[float, float], float], ...] = (
    ("US", "United States of America", (25.0, 49.0), (-124.0, -67.0), 0.35),
    ("CA", "Canada", (43.0, 60.0), (-130.0, -60.0), 0.08),
    ("DE", "Germany", (47.3, 55.0), (6.0, 15.0), 0.08),
    ("FR", "France", (43.0, 51.0), (-4.0, 8.0), 0.08),
    ("GB", "United Kingdom of Great Britain and Northern Ireland", (50.0, 58.5), (-6.0, 1.7), 0.08),
    ("NL", "Netherlands", (51.0, 53.5), (3.5, 7.0), 0.05),
    ("BR", "Brazil", (-30.0, 0.0), (-70.0, -35.0), 0.06),
    ("AU", "Australia", (-38.0, -12.0), (115.0, 153.0), 0.06),
    ("ZA", "South Africa", (-34.0, -23.0), (18.0, 32.0), 0.04),
    ("IN", "India", (8.0, 30.0), (70.0, 88.0), 0.04),
    ("JP", "Japan", (31.0, 43.0), (130.0, 145.0), 0.04),
    ("MX", "Mexico", (15.0, 30.0), (-115.0, -88.0), 0.04),
)
COUNTRY_CODES = tuple(c[0] for c in _COUNTRIES)

_RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")

# Built-in species: (speciesKey, scientificName, kingdom, phylum, class, order, family, genus),
# each higher taxon as (key, name). Keys are in the style of the GBIF backbone.
_A, _P, _F = (1, "Animalia"), (6, "Plantae"), (5, "Fungi")
_CHORDATA, _ARTHRO, _TRACHEO, _BASIDIO = (
    (44, "Chordata"),
    (54, "Arthropoda"),
    (7707728, "Tracheophyta"),
    (34, "Basidiomycota"),
)
_AVES, _MAMMALIA, _AMPHIBIA, _INSECTA, _ARACHNIDA = (
    (212, "Aves"),
    (359, "Mammalia"),
    (131, "Amphibia"),
    (216, "Insecta"),
    (367, "Arachnida"),
)
_MAGNOLIOPSIDA, _PINOPSIDA, _AGARICOMYCETES = (
    (220, "Magnoliopsida"),
    (194, "Pinopsida"),
    (186, "Agaricomycetes"),
)
# fmt: off
_SPECIES_TABLE: tuple[tuple[Any, ...], ...] = (
    (9206251, "Helianthus annuus L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (414, "Asterales"), (3065, "Asteraceae"), (3119134, "Helianthus")),
    (1427067, "Calopteryx splendens (Harris, 1780)", _A, _ARTHRO, _INSECTA,
     (789, "Odonata"), (5936, "Calopterygidae"), (1427007, "Calopteryx")),
    (5231190, "Passer domesticus (Linnaeus, 1758)", _A, _CHORDATA, _AVES,
     (729, "Passeriformes"), (5264, "Passeridae"), (2492321, "Passer")),
    (2431762, "Batrachoseps luciae Jockusch, Yanev & Wake, 2001", _A, _CHORDATA, _AMPHIBIA,
     (953, "Caudata"), (6748, "Plethodontidae"), (2431747, "Batrachoseps")),
    (2878688, "Quercus robur L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (1354, "Fagales"), (4689, "Fagaceae"), (2877951, "Quercus")),
    (5219243, "Vulpes vulpes (Linnaeus, 1758)", _A, _CHORDATA, _MAMMALIA,
     (732, "Carnivora"), (9701, "Canidae"), (5219234, "Vulpes")),
    (5133088, "Danaus plexippus (Linnaeus, 1758)", _A, _ARTHRO, _INSECTA,
     (797, "Lepidoptera"), (7017, "Nymphalidae"), (5133085, "Danaus")),
    (1341976, "Apis mellifera Linnaeus, 1758", _A, _ARTHRO, _INSECTA,
     (1457, "Hymenoptera"), (4334, "Apidae"), (1334757, "Apis")),
    (5248193, "Amanita muscaria (L.) Lam.", _F, _BASIDIO, _AGARICOMYCETES,
     (1499, "Agaricales"), (4248, "Amanitaceae"), (2522956, "Amanita")),
    (2490719, "Turdus merula Linnaeus, 1758", _A, _CHORDATA, _AVES,
     (729, "Passeriformes"), (5290, "Turdidae"), (2490686, "Turdus")),
    (5285637, "Pinus sylvestris L.", _P, _TRACHEO, _PINOPSIDA,
     (640, "Pinales"), (3925, "Pinaceae"), (2684241, "Pinus")),
    (2184301, "Amblyomma americanum (Linnaeus, 1758)", _A, _ARTHRO, _ARACHNIDA,
     (1425, "Ixodida"), (9167, "Ixodidae"), (7967293, "Amblyomma")),
    (4989904, "Coccinella septempunctata Linnaeus, 1758", _A, _ARTHRO, _INSECTA,
     (1470, "Coleoptera"), (7782, "Coccinellidae"), (4989885, "Coccinella")),
    (3117424, "Bellis perennis L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (414, "Asterales"), (3065, "Asteraceae"), (3117414, "Bellis")),
    (2422789, "Bufo bufo (Linnaeus, 1758)", _A, _CHORDATA, _AMPHIBIA,
     (952, "Anura"), (6727, "Bufonidae"), (2422765, "Bufo")),
    (8211070, "Sciurus vulgaris Linnaeus, 1758", _A, _CHORDATA, _MAMMALIA,
     (1459, "Rodentia"), (9456, "Sciuridae"), (2437489, "Sciurus")),
    (1938125, "Papilio machaon Linnaeus, 1758", _A, _ARTHRO, _INSECTA,
     (797, "Lepidoptera"), (9417, "Papilionidae"), (1938066, "Papilio")),
    (3189846, "Acer pseudoplatanus L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (933, "Sapindales"), (6657, "Sapindaceae"), (3189834, "Acer")),
    (5394222, "Taraxacum officinale F.H.Wigg.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (414, "Asterales"), (3065, "Asteraceae"), (3218823, "Taraxacum")),
    (2492462, "Erithacus rubecula (Linnaeus, 1758)", _A, _CHORDATA, _AVES,
     (729, "Passeriformes"), (9322, "Muscicapidae"), (2492455, "Erithacus")),
    (3189357, "Plantago lanceolata L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (408, "Lamiales"), (2420, "Plantaginaceae"), (3189235, "Plantago")),
    (2480242, "Cyanistes caeruleus (Linnaeus, 1758)", _A, _CHORDATA, _AVES,
     (729, "Passeriformes"), (9327, "Paridae"), (2480241, "Cyanistes")),
    (5410907, "Boletus edulis Bull.", _F, _BASIDIO, _AGARICOMYCETES,
     (1452, "Boletales"), (8789, "Boletaceae"), (2524169, "Boletus")),
    (8351737, "Hedera helix L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (1351, "Apiales"), (6745, "Araliaceae"), (3036250, "Hedera")),
)
# fmt: on

# Synonyms the species match knows: (usageKey, scientificName, accepted speciesKey).
_SYNONYMS: tuple[tuple[int, str, int], ...] = (
    (7412043, "Parus caeruleus Linnaeus, 1758", 2480242),
    (5219250, "Canis vulpes Linnaeus, 1758", 5219243),
    (8327571, "Leontodon taraxacum L.", 5394222),
    (3054130, "Quercus pedunculata Ehrh.", 2878688),
    (1427070, "Agrion splendens Harris, 1780", 1427067),
)

# fmt: off
_FIRST_NAMES = (
    "Ana", "Bram", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kofi",
    "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tomás",
)
# fmt: on
_LAST_NAMES = (
    "Silva",
    "Novak",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Kowalski",
    "Haddad",
    "Fischer",
    "Nguyen",
    "Oliveira",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Dubois",
    "Mensah",
    "García",
    "Jensen",
    "Kim",
    "Walsh",
)
_ISSUES: tuple[list[str], ...] = (
    ["COORDINATE_ROUNDED", "CONTINENT_DERIVED_FROM_COORDINATES"],
    ["CONTINENT_DERIVED_FROM_COORDINATES"],
    ["GEODETIC_DATUM_ASSUMED_WGS84"],
    [],
    ["COORDINATE_ROUNDED", "GEODETIC_DATUM_ASSUMED_WGS84", "TAXON_MATCH_TAXON_ID_IGNORED"],
)

# Media kinds (the ``media_kind`` column, per slot).
_KIND_NONE, _KIND_IMAGE, _KIND_NO_ID, _KIND_NO_TYPE, _KIND_SOUND, _KIND_IIIF, _KIND_VIDEO = range(7)
_KIND_P = (0.86, 0.04, 0.04, 0.03, 0.015, 0.015)
_KIND_BIT = np.array([0, 1, 1, 0, 4, 8, 2], dtype=np.uint8)  # MEDIA_TYPES bit per kind

MAX_MEDIA = 3
#: ``type`` (None: left out) and ``format`` of the media kinds that have an identifier.
_MEDIA_TYPE_FORMAT: dict[int, tuple[str | None, str]] = {
    _KIND_IMAGE: ("StillImage", "image/jpeg"),
    _KIND_NO_TYPE: (None, "image/jpeg"),
    _KIND_SOUND: ("Sound", "audio/mpeg"),
    _KIND_IIIF: ("InteractiveResource", "application/ld+json"),
    _KIND_VIDEO: ("MovingImage", "video/mp4"),
}
_RANGE_PARAMS = ("year", "month", "day", "decimalLatitude", "decimalLongitude", "elevation")


def normalize_param(name: str) -> str:
    """GBIF's lenient parameter-name key: upper case, with ``. _ -`` and spaces removed.

    Example:
        >>> normalize_param("media_type") == normalize_param("mediaType") == "MEDIATYPE"
        True
    """
    return re.sub(r"[. _\-]", "", name).upper()


# fmt: off
_SEARCH_PARAMS = (
    "taxonKey", "speciesKey", "kingdomKey", "phylumKey", "classKey", "orderKey", "familyKey",
    "genusKey", "acceptedTaxonKey", "scientificName", "datasetKey", "publishingOrg",
    "publishingCountry", "country", "basisOfRecord", "mediaType", "year", "month", "day",
    "decimalLatitude", "decimalLongitude", "elevation", "hasCoordinate", "license",
    "occurrenceStatus", "gbifId",
)
# fmt: on
_BY_NORMAL = {normalize_param(p): p for p in _SEARCH_PARAMS}

# fmt: off
_FACETS = (
    "speciesKey", "taxonKey", "kingdomKey", "phylumKey", "classKey", "orderKey", "familyKey",
    "genusKey", "datasetKey", "publishingOrg", "publishingCountry", "country", "basisOfRecord",
    "mediaType", "year", "month", "license", "occurrenceStatus",
)
# fmt: on


def canonical_param(name: str) -> str | None:
    """The canonical spelling of a search parameter GBIF would accept, or None if unknown.

    Example:
        >>> canonical_param("SPECIES_KEY"), canonical_param("publishingOrgKey")
        ('speciesKey', None)
    """
    return _BY_NORMAL.get(normalize_param(name))


def facet_field_name(param: str) -> str:
    """The GBIF enum name used as ``field`` in facet results (``speciesKey`` -> ``SPECIES_KEY``).

    Example:
        >>> facet_field_name("basisOfRecord")
        'BASIS_OF_RECORD'
    """
    return re.sub(r"(?<!^)([A-Z])", r"_\1", param).upper()


class InvalidSearchError(ConfigError):
    """A search value GBIF would reject with HTTP 400; ``gbif_message`` is GBIF's exact text.

    Example:
        >>> err = InvalidSearchError("Cannot parse x into a known MediaType", param="mediaType")
        >>> err.gbif_message
        'Cannot parse x into a known MediaType'
    """

    def __init__(self, gbif_message: str, *, param: str) -> None:
        super().__init__(f"{gbif_message} (fix the value of the {param!r} search parameter)")
        self.gbif_message = gbif_message
        self.param = param


def _as_values(value: Any) -> list[str]:
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        items: Iterable[Any] = value
    else:
        items = [value]
    out = []
    for item in items:
        text = ("true" if item else "false") if isinstance(item, bool) else str(item).strip()
        if text:
            out.append(text)
    return out


def _lookup_enum(value: str, names: Sequence[str], enum_name: str, param: str) -> int:
    wanted = normalize_param(value)
    for index, name in enumerate(names):
        if normalize_param(name) == wanted:
            return index
    raise InvalidSearchError(f"Cannot parse {value} into a known {enum_name}", param=param)


def _parse_range(
    text: str, param: str, *, decimal: bool
) -> tuple[float | None, float | None] | None:
    """``a,b`` / ``*,b`` / ``a,*`` / ``a`` / ``*`` -> (low, high); None means 'has any value'."""
    kind = "decimal" if decimal else "integer"

    def number(part: str) -> float | None:
        part = part.strip()
        if part in ("*", ""):
            return None
        try:
            return float(part) if decimal else float(int(part))
        except ValueError:
            raise InvalidSearchError(f"Invalid {kind} range: {text}", param=param) from None

    if text.strip() == "*":
        return None
    if "," in text:
        low_text, _, high_text = text.partition(",")
        return number(low_text), number(high_text)
    value = number(text)
    return value, value


def _uuid(text: str, param: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidSearchError(f"Invalid UUID string: {text}", param=param) from None


def _load_template() -> dict[str, Any]:
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


def _taxon_fields(rec: dict[str, Any], sp: Mapping[str, Any], has_species: bool) -> None:
    """Set the taxonomy fields of ``rec`` (a template copy) for species ``sp``."""
    for rank in _RANKS:
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

    def __init__(self, pop: Population) -> None:
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
            _dumps(f"{_FIRST_NAMES[p % len(_FIRST_NAMES)]} {_LAST_NAMES[p // len(_FIRST_NAMES)]}")
            for p in range(len(_FIRST_NAMES) * len(_LAST_NAMES))
        ]
        self.basis = [_field("basisOfRecord", b) for b in BASIS_OF_RECORD]
        self.issues = [_field("issues", list(issues)) for issues in _ISSUES]
        self.taxon: list[tuple[str, str]] = []
        for sp in pop._species:
            blocks = []
            for has_species in (True, False):
                rec = {k: template[k] for k in _TAXON_BLOCK}
                _taxon_fields(rec, sp, has_species)
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
            (_field("countryCode", code), _field("country", title))
            for code, title, *_ in _COUNTRIES
        ]
        self.media_licenses = [
            _field("license", text) if text else "" for text, _ in MEDIA_LICENSES
        ]
        self.media_heads = {
            kind: (f'"type":"{media_type}",' if media_type else "") + f'"format":"{media_format}",'
            for kind, (media_type, media_format) in _MEDIA_TYPE_FORMAT.items()
        }


def _share(seed: int, what: str, index: int) -> float:
    """A uniform number in [0, 1) from ``(seed, what, index)`` (independent of the columns)."""
    digest = hashlib.blake2b(f"{seed}|{what}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Population:
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
        self._template = _load_template()
        self._build_taxonomy(n_species)
        self._build_datasets(n_datasets)
        self._build_columns(species_weights)
        logger.debug("built population seed=%s size=%s", self.seed, self.size)

    # --- construction -------------------------------------------------------------------------

    def _build_taxonomy(self, n_species: int) -> None:
        species: list[dict[str, Any]] = []
        for k in range(n_species):
            row = _SPECIES_TABLE[k % len(_SPECIES_TABLE)]
            key, sci = row[0], row[1]
            canonical = " ".join(sci.split()[:2])
            if k >= len(_SPECIES_TABLE):  # synthetic extra species in a known genus
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
            for rank, (rank_key, rank_name) in zip(_RANKS, row[2:8], strict=True):
                info[rank] = rank_name
                info[f"{rank}Key"] = rank_key
            info["species"] = canonical
            info["speciesKey"] = key
            info["genericName"], info["specificEpithet"] = canonical.split()[:2]
            species.append(info)
        self._species = species
        self._rank_keys = {
            rank: np.array([s[f"{rank}Key"] for s in species], dtype=np.int64)
            for rank in (*_RANKS, "species")
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
        self.bor = rng.choice(len(_BASIS_P), size=n, p=_BASIS_P).astype(np.int8)
        c_w = np.array([c[4] for c in _COUNTRIES])
        self.ctry = rng.choice(len(_COUNTRIES), size=n, p=c_w / c_w.sum()).astype(np.int8)
        has_year = rng.random(n) >= 0.04
        years = 2025 - np.minimum(rng.geometric(0.15, size=n), 35)
        self.year = np.where(has_year, years, 0).astype(np.int16)
        self.month = np.where(has_year, rng.integers(1, 13, size=n), 0).astype(np.int8)
        self.day = np.where(has_year, rng.integers(1, 29, size=n), 0).astype(np.int8)
        self.minute_of_day = rng.integers(0, 24 * 60, size=n).astype(np.int16)
        has_coord = rng.random(n) >= 0.07
        lat_box = np.array([c[2] for c in _COUNTRIES])[self.ctry]
        lon_box = np.array([c[3] for c in _COUNTRIES])[self.ctry]
        lat = lat_box[:, 0] + rng.random(n) * (lat_box[:, 1] - lat_box[:, 0])
        lon = lon_box[:, 0] + rng.random(n) * (lon_box[:, 1] - lon_box[:, 0])
        self.lat = np.where(has_coord, np.round(lat, 6), np.nan)
        self.lon = np.where(has_coord, np.round(lon, 6), np.nan)
        has_elev = has_coord & (rng.random(n) < 0.4)
        self.elevation = np.where(has_elev, rng.integers(0, 3000, size=n), np.nan)
        self.absent = rng.random(n) < 0.01
        # media: 10% none, else 1-3 slots of a kind
        n_media = np.where(rng.random(n) < 0.10, 0, rng.choice(3, size=n, p=(0.55, 0.3, 0.15)) + 1)
        kinds = rng.choice(np.arange(1, 7), size=(n, MAX_MEDIA), p=_KIND_P).astype(np.uint8)
        kinds[np.arange(MAX_MEDIA)[None, :] >= n_media[:, None]] = _KIND_NONE
        self.media_kind = kinds
        self.media_mask = np.bitwise_or.reduce(_KIND_BIT[kinds], axis=1).astype(np.uint8)
        lic_p = np.array([p for _, p in MEDIA_LICENSES])
        self.media_license = rng.choice(
            len(MEDIA_LICENSES), size=(n, MAX_MEDIA), p=lic_p / lic_p.sum()
        ).astype(np.int8)
        self.url_query = rng.random(n) < 0.10
        self.person = rng.integers(0, len(_FIRST_NAMES) * len(_LAST_NAMES), size=n).astype(np.int16)
        image0 = kinds[:, 0] == _KIND_IMAGE
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
        return f"{_FIRST_NAMES[p % len(_FIRST_NAMES)]} {_LAST_NAMES[p // len(_FIRST_NAMES)]}"

    def media_url(self, index: int, slot: int) -> str:
        """The identifier URL of media ``slot`` of record ``index`` (duplicates resolved)."""
        if slot == 0 and self.duplicate_of_previous[index]:
            index -= 1
        kind = int(self.media_kind[index, slot])
        base = self.media_base_urls[index % len(self.media_base_urls)]
        gbif_id = BASE_KEY + index
        if kind == _KIND_SOUND:
            return f"{base}/media/{gbif_id}/{slot}.mp3"
        if kind == _KIND_VIDEO:
            return f"{base}/media/{gbif_id}/{slot}.mp4"
        if kind == _KIND_IIIF:
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
            if kind == _KIND_NONE:
                continue
            license_text = MEDIA_LICENSES[int(self.media_license[index, slot])][0]
            references = f"{base}/pages/{gbif_id}/{slot}"
            item: dict[str, Any]
            if kind == _KIND_NO_ID:
                item = {"type": "StillImage", "references": references}
                if license_text:
                    item["license"] = license_text
                item["rightsHolder"] = person
                out.append(item)
                continue
            media_type, media_format = _MEDIA_TYPE_FORMAT[kind]
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
        _taxon_fields(rec, sp, has_species)
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
        rec["issues"] = list(_ISSUES[i % len(_ISSUES)])
        rec["references"] = f"{base}/observations/{key}"
        rec["license"] = ds["licenseUrl"]
        rec["identifiers"] = [{"identifier": str(key)}]
        rec["media"] = self.media(i)
        rec["facts"], rec["relations"] = [], []
        rec["datasetName"] = ds["title"]
        rec["recordedBy"] = rec["identifiedBy"] = person
        rec["recordedByIDs"], rec["identifiedByIDs"] = [], []
        code, title = _COUNTRIES[int(self.ctry[i])][:2]
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

    def records_json(self, indices: Iterable[int]) -> str:
        """``json.dumps(self.records(indices))`` in compact form, built without the dicts.

        The text is exactly ``json.dumps(records, separators=(",", ":"), ensure_ascii=False)``
        (same keys, order and values), assembled from JSON fragments precomputed per species,
        dataset, country and observer, several times faster than building and encoding the
        dicts. The simulator serialises search pages with it.

        Example:
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
        lat = self.lat[i]
        has_coord = not np.isnan(lat)
        if has_coord:
            coords = f',"decimalLatitude":{float(lat)!r},"decimalLongitude":{float(self.lon[i])!r}'
            elevation = self.elevation[i]
            tail = "}" if np.isnan(elevation) else f',"elevation":{float(elevation)!r}}}'
        else:
            coords = ""
            tail = "}"
        year = int(self.year[i])
        if year:
            month, day = int(self.month[i]), int(self.day[i])
            minute = int(self.minute_of_day[i])
            doy = min(365, (month - 1) * 30 + day)
            date = (
                f',"year":{year},"month":{month},"day":{day},"eventDate":"{year:04d}-{month:02d}-'
                f'{day:02d}T{minute // 60:02d}:{minute % 60:02d}","startDayOfYear":{doy},'
                f'"endDayOfYear":{doy}'
            )
        else:
            date = ""
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
            if kind == _KIND_NONE:
                continue
            license_part = parts.media_licenses[int(licenses[slot])]
            references = f'"references":"{base}/pages/{gbif_id}/{slot}"'
            if kind == _KIND_NO_ID:
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

    # --- search -------------------------------------------------------------------------------

    def _species_lut(self, rank_key: str, keys: Iterable[int]) -> npt.NDArray[np.bool_]:
        return np.isin(self._rank_keys[rank_key], np.fromiter(keys, dtype=np.int64))

    def _taxon_mask(self, param: str, values: list[str]) -> npt.NDArray[np.bool_]:
        keys: list[int] = []
        for value in values:
            if value == "*":
                return self.has_species.copy() if param == "speciesKey" else self._all()
            try:
                keys.append(int(value))
            except ValueError:
                continue  # GBIF accepts any string here; a non-numeric key matches nothing
        sp, has = self.sp, self.has_species
        if param in ("taxonKey", "acceptedTaxonKey"):
            own_species = self._species_lut("species", keys)[sp] & has
            own_genus = self._species_lut("genus", keys)[sp] & ~has
            if param == "acceptedTaxonKey":
                return own_species | own_genus
            higher = np.zeros(len(self._species), dtype=bool)
            for rank in _RANKS:
                higher |= self._species_lut(rank, keys)
            return higher[sp] | own_species
        if param == "speciesKey":
            return self._species_lut("species", keys)[sp] & has
        return self._species_lut(param[: -len("Key")], keys)[sp]

    def _all(self) -> npt.NDArray[np.bool_]:
        return np.ones(self.size, dtype=bool)

    def _range_mask(
        self,
        column: npt.NDArray[Any],
        missing: npt.NDArray[np.bool_],
        text: str,
        param: str,
        *,
        decimal: bool,
        bounds: tuple[float, float] | None = None,
        label: str = "",
    ) -> npt.NDArray[np.bool_]:
        parsed = _parse_range(text, param, decimal=decimal)
        if parsed is None:
            return ~missing
        low, high = parsed
        if bounds is not None:
            for number in (low, high):
                if number is not None and not bounds[0] <= number <= bounds[1]:
                    shown = f"{number:g}"
                    raise InvalidSearchError(
                        f"{shown} is not valid value, {label} must be between "
                        f"{bounds[0]:g} and {bounds[1]:g}.",
                        param=param,
                    )
        mask = ~missing
        if low is not None:
            mask &= column >= low
        if high is not None:
            mask &= column <= high
        return mask

    def _param_mask(self, param: str, values: list[str]) -> npt.NDArray[np.bool_]:
        if param.endswith("Key") and param not in ("datasetKey",):
            return self._taxon_mask(param, values)
        mask = np.zeros(self.size, dtype=bool)
        for value in values:
            mask |= self._value_mask(param, value)
        return mask

    def _value_mask(self, param: str, value: str) -> npt.NDArray[np.bool_]:
        if value == "*" and param not in _RANGE_PARAMS:
            return self._all()
        if param == "scientificName":
            match = self.match_name(value, strict=True)
            if match.get("matchType") not in ("EXACT", "FUZZY") or "usageKey" not in match:
                return np.zeros(self.size, dtype=bool)
            key = match.get("acceptedUsageKey", match["usageKey"])
            return self._taxon_mask("taxonKey", [str(key)])
        if param == "datasetKey":
            wanted = _uuid(value, param)
            lut = np.array([d["key"] == wanted for d in self._datasets])
            return lut[self.ds]
        if param == "publishingOrg":
            wanted = _uuid(value, param)
            lut = np.array([d["publishingOrgKey"] == wanted for d in self._datasets])
            return lut[self.ds]
        if param == "publishingCountry":
            lut = np.array([d["publishingCountry"] == value.upper() for d in self._datasets])
            return lut[self.ds]
        if param == "country":
            code = value.upper()
            if code not in COUNTRY_CODES:
                return np.zeros(self.size, dtype=bool)
            return self.ctry == COUNTRY_CODES.index(code)
        if param == "basisOfRecord":
            return self.bor == _lookup_enum(value, BASIS_OF_RECORD, "BasisOfRecord", param)
        if param == "mediaType":
            bit = 1 << _lookup_enum(value, MEDIA_TYPES, "MediaType", param)
            return (self.media_mask & bit) != 0
        if param == "license":
            license_index = _lookup_enum(value, LICENSE_ENUM, "License", param)
            return (self._dataset_license == license_index)[self.ds]
        if param == "occurrenceStatus":
            absent = _lookup_enum(value, ("PRESENT", "ABSENT"), "OccurrenceStatus", param) == 1
            return self.absent == absent
        if param == "hasCoordinate":
            if value.lower() not in ("true", "false"):
                raise InvalidSearchError(
                    f"Invalid boolean value: {value}, use true or false", param=param
                )
            has = ~np.isnan(self.lat)
            return has if value.lower() == "true" else ~has
        if param == "gbifId":
            index = self.index_of(value)
            mask = np.zeros(self.size, dtype=bool)
            if index is not None:
                mask[index] = True
            return mask
        if param in ("year", "month", "day"):
            column = getattr(self, param)
            bounds = (1.0, 12.0) if param == "month" else None
            return self._range_mask(
                column, column == 0, value, param, decimal=False, bounds=bounds, label=param
            )
        if param in ("decimalLatitude", "decimalLongitude"):
            column = self.lat if param == "decimalLatitude" else self.lon
            limit = 90.0 if param == "decimalLatitude" else 180.0
            label = "latitude" if param == "decimalLatitude" else "longitude"
            return self._range_mask(
                column,
                np.isnan(column),
                value,
                param,
                decimal=True,
                bounds=(-limit, limit),
                label=label,
            )
        if param == "elevation":
            return self._range_mask(
                self.elevation, np.isnan(self.elevation), value, param, decimal=True
            )
        raise AssertionError(f"unhandled parameter {param}")  # pragma: no cover

    def mask(self, query: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
        """Boolean mask of the records matching a search query (see :meth:`select`)."""
        grouped: dict[str, list[str]] = {}
        for name, value in query.items():
            param = canonical_param(str(name))
            if param is None:
                continue  # GBIF silently ignores unknown parameters
            values = _as_values(value)
            if values:
                grouped.setdefault(param, []).extend(values)
        mask = self._all()
        for param, values in grouped.items():
            mask &= self._param_mask(param, values)
        return mask

    def select(self, query: Mapping[str, Any]) -> npt.NDArray[np.int64]:
        """Indices of the records matching ``query``, with GBIF search semantics.

        Names are lenient (``media_type`` = ``mediaType``); unknown names are ignored; a list
        value means the parameter was repeated (OR); different parameters are ANDed; ``year``,
        ``month``, ``day``, ``decimalLatitude``, ``decimalLongitude`` and ``elevation`` take
        ranges ``a,b``, ``*,b``, ``a,*``; ``*`` alone means "has a value". A bad value raises
        :class:`InvalidSearchError` carrying GBIF's 400 message.

        Example:
            >>> pop = Population(seed=0, size=500, n_species=4)
            >>> both = pop.select({"basisOfRecord": ["HUMAN_OBSERVATION", "PRESERVED_SPECIMEN"]})
            >>> one = pop.select({"basis_of_record": "human_observation"})
            >>> len(one) <= len(both)
            True
        """
        return np.flatnonzero(self.mask(query))

    # --- facets -------------------------------------------------------------------------------

    @staticmethod
    def facet_param(name: str) -> str | None:
        """Canonical name of a facet GBIF supports here, or None for an unknown facet."""
        param = canonical_param(name)
        return param if param in _FACETS else None

    def facet(self, indices: npt.ArrayLike, field: str) -> dict[str, int]:
        """Counts per value of ``field`` over the records ``indices``, sorted by count desc.

        Bucket names are strings, as GBIF returns them.

        Example:
            >>> pop = Population(seed=0, size=300, n_species=3)
            >>> counts = pop.facet(pop.select({}), "BASIS_OF_RECORD")
            >>> list(counts)[0]
            'HUMAN_OBSERVATION'
        """
        param = self.facet_param(field)
        if param is None:
            raise ConfigError(f"unknown facet {field!r}; use one of {', '.join(_FACETS)}")
        idx = np.asarray(indices, dtype=np.int64)
        counts: dict[str, int] = {}

        def add(name: Any, count: int) -> None:
            if count > 0:
                key = str(name)
                counts[key] = counts.get(key, 0) + int(count)

        if param.endswith("Key") and param not in ("datasetKey",):
            n_species = len(self._species)
            sp = self.sp[idx]
            has = self.has_species[idx]
            with_species = np.bincount(sp[has], minlength=n_species)
            without = np.bincount(sp[~has], minlength=n_species)
            for s, info in enumerate(self._species):
                if param == "speciesKey":
                    add(info["key"], with_species[s])
                elif param == "taxonKey":
                    add(info["key"], with_species[s])
                    add(info["genusKey"], without[s])
                else:
                    add(info[param], with_species[s] + without[s])
        elif param in ("datasetKey", "publishingOrg", "publishingCountry", "license"):
            field_name = {
                "datasetKey": "key",
                "publishingOrg": "publishingOrgKey",
                "publishingCountry": "publishingCountry",
                "license": "license",
            }[param]
            per_ds = np.bincount(self.ds[idx], minlength=len(self._datasets))
            for j, ds in enumerate(self._datasets):
                add(ds[field_name], per_ds[j])
        elif param == "country":
            for c, n in enumerate(np.bincount(self.ctry[idx], minlength=len(_COUNTRIES))):
                add(COUNTRY_CODES[c], n)
        elif param == "basisOfRecord":
            for b, n in enumerate(np.bincount(self.bor[idx], minlength=len(BASIS_OF_RECORD))):
                add(BASIS_OF_RECORD[b], n)
        elif param == "mediaType":
            mask = self.media_mask[idx]
            for bit, name in enumerate(MEDIA_TYPES):
                add(name, int(np.count_nonzero(mask & (1 << bit))))
        elif param == "occurrenceStatus":
            absent = int(np.count_nonzero(self.absent[idx]))
            add("PRESENT", len(idx) - absent)
            add("ABSENT", absent)
        else:  # year, month: small non-negative integers, 0 = missing
            per_value = np.bincount(getattr(self, param)[idx].astype(np.int64))
            for value in np.flatnonzero(per_value[1:]).tolist():
                add(value + 1, int(per_value[value + 1]))
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    # --- species match ------------------------------------------------------------------------

    @cached_property
    def _names(self) -> dict[str, Any]:
        exact: dict[str, dict[str, Any]] = {}
        for info in self._species:
            exact[info["canonicalName"].lower()] = info
            exact[info["scientificName"].lower()] = info
        by_key = {info["key"]: info for info in self._species}
        synonyms: dict[str, tuple[int, str, dict[str, Any]]] = {}
        for syn_key, syn_name, accepted in _SYNONYMS:
            if accepted in by_key:
                canonical = " ".join(syn_name.split()[:2])
                entry = (syn_key, syn_name, by_key[accepted])
                synonyms[syn_name.lower()] = entry
                synonyms[canonical.lower()] = entry
        higher: dict[str, tuple[str, dict[str, Any]]] = {}
        for rank in reversed(_RANKS):
            for info in self._species:
                higher.setdefault(info[rank].lower(), (rank, info))
        return {"exact": exact, "synonyms": synonyms, "higher": higher}

    @staticmethod
    def _classification(info: dict[str, Any], down_to: str) -> dict[str, Any]:
        ranks = [*_RANKS, "species"]
        keep = ranks[: ranks.index(down_to) + 1]
        names = {
            r: info[r]
            for r in ("kingdom", "phylum", "order", "family", "genus", "species")
            if r in keep
        }
        keys = {f"{r}Key": info[f"{r}Key"] for r in ranks if r in keep}
        return {"names": names, "keys": keys, "class": info["class"] if "class" in keep else None}

    def _match_body(
        self,
        info: dict[str, Any],
        *,
        rank: str,
        usage_key: int,
        scientific_name: str,
        canonical: str,
        confidence: int,
        match_type: str,
        synonym: bool = False,
    ) -> dict[str, Any]:
        cls = self._classification(info, rank)
        body: dict[str, Any] = {"usageKey": usage_key}
        if synonym:
            body["acceptedUsageKey"] = info["key"]
        body.update(
            {
                "scientificName": scientific_name,
                "canonicalName": canonical,
                "rank": rank.upper(),
                "status": "SYNONYM" if synonym else "ACCEPTED",
                "confidence": confidence,
                "matchType": match_type,
            }
        )
        body.update(cls["names"])
        body.update(cls["keys"])
        body["synonym"] = synonym
        if cls["class"] is not None:
            body["class"] = cls["class"]
        return body

    def match_name(self, name: str, *, strict: bool = False) -> dict[str, Any]:
        """``GET /v1/species/match?name=...``: the v1 flat match body for ``name``.

        Exact names of the population's species match ``EXACT``; known synonyms of them match
        with ``status: SYNONYM`` and ``acceptedUsageKey``; higher taxa (genus, family, ...) match
        ``EXACT`` at their rank; near misses match ``FUZZY``; an unknown epithet in a known genus
        matches ``HIGHERRANK`` (not with ``strict``); anything else gives ``matchType: NONE``.

        Example:
            >>> pop = Population(seed=0, size=10, n_species=3)
            >>> pop.match_name("Calopteryx fakeus")["matchType"]
            'HIGHERRANK'
            >>> pop.match_name("Nothing here")["matchType"]
            'NONE'
        """
        text = " ".join(str(name).split())
        lowered = text.lower()
        names = self._names
        if lowered in names["exact"]:
            info = names["exact"][lowered]
            return self._match_body(
                info,
                rank="species",
                usage_key=info["key"],
                scientific_name=info["scientificName"],
                canonical=info["canonicalName"],
                confidence=99,
                match_type="EXACT",
            )
        if lowered in names["synonyms"]:
            syn_key, syn_name, info = names["synonyms"][lowered]
            canonical = " ".join(syn_name.split()[:2])
            return self._match_body(
                info,
                rank="species",
                usage_key=syn_key,
                scientific_name=syn_name,
                canonical=canonical,
                confidence=98,
                match_type="EXACT",
                synonym=True,
            )
        if lowered in names["higher"]:
            rank, info = names["higher"][lowered]
            return self._match_body(
                info,
                rank=rank,
                usage_key=info[f"{rank}Key"],
                scientific_name=info[rank],
                canonical=info[rank],
                confidence=97,
                match_type="EXACT",
            )
        close = difflib.get_close_matches(
            lowered, [s["canonicalName"].lower() for s in self._species], n=1, cutoff=0.85
        )
        if close:
            info = names["exact"][close[0]]
            return self._match_body(
                info,
                rank="species",
                usage_key=info["key"],
                scientific_name=info["scientificName"],
                canonical=info["canonicalName"],
                confidence=88,
                match_type="FUZZY",
            )
        first = lowered.split(" ")[0] if lowered else ""
        if not strict and first in names["higher"] and names["higher"][first][0] == "genus":
            _, info = names["higher"][first]
            return self._match_body(
                info,
                rank="genus",
                usage_key=info["genusKey"],
                scientific_name=info["genus"],
                canonical=info["genus"],
                confidence=94,
                match_type="HIGHERRANK",
            )
        return {
            "confidence": 100,
            "note": "No match because of too little confidence",
            "matchType": "NONE",
            "synonym": False,
        }

    def suggest(self, prefix: str, limit: int = 20) -> list[dict[str, Any]]:
        """``GET /v1/species/suggest``: species whose canonical name starts with ``prefix``."""
        wanted = prefix.strip().lower()
        out = []
        for info in self._species:
            if info["canonicalName"].lower().startswith(wanted):
                item = {
                    "key": info["key"],
                    "scientificName": info["scientificName"],
                    "canonicalName": info["canonicalName"],
                    "rank": "SPECIES",
                    "status": "ACCEPTED",
                    "synonym": False,
                }
                out.append(item)
        return out[: max(0, limit)]

    def copy_template(self) -> dict[str, Any]:
        """A deep copy of the real GBIF record the population's records are shaped after."""
        return copy.deepcopy(self._template)

"""GBIF occurrence search parameters: names, lenient matching, values, predicates, download ids.

GBIF matches parameter names leniently (case-insensitive, ``.``, ``_``, ``-`` and spaces ignored)
but *silently ignores unknown names*: a typo such as ``publishingOrgKey`` (the parameter is
``publishingOrg``) returns unfiltered results. Everything here runs before any request and raises
:class:`~gbif_dl.errors.ConfigError` with a suggestion instead.

Example:
    >>> canonical_name("media_type")
    'mediaType'
    >>> validate_query({"speciesKey": [1, 2], "year": (2000, None), "hasCoordinate": True})
    {'speciesKey': ['1', '2'], 'year': ['2000,*'], 'hasCoordinate': ['true']}
    >>> facet_field("speciesKey")
    'SPECIES_KEY'
    >>> normalize_doi("https://doi.org/10.15468/DL.HX3UZZ")
    '10.15468/dl.hx3uzz'
    >>> parse_download_id("0022697-200613084148143")
    ('key', '0022697-200613084148143')
"""

from __future__ import annotations

import difflib
import numbers
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from gbif_dl.errors import ConfigError

__all__ = [
    "FACET_PAGING_NAMES",
    "RANGE_PARAMETERS",
    "REQUEST_PARAMETERS",
    "SEARCH_PARAMETERS",
    "canonical_name",
    "facet_field",
    "is_download_doi",
    "is_download_key",
    "normalize_doi",
    "normalize_name",
    "parse_download_id",
    "to_predicate",
    "validate_query",
]

PARAMETERS_DOC_URL = "https://techdocs.gbif.org/en/openapi/v1/occurrence"

# GBIF's OccurrenceSearchParameter enum (gbif-api), plus the newer fields the occurrence index
# serves (geological context, taxonomic issues). The camelCase names derive from these.
_FILTER_ENUM_NAMES: tuple[str, ...] = (
    "ACCEPTED_TAXON_KEY",
    "ASSOCIATED_SEQUENCES",
    "BASIS_OF_RECORD",
    "BED",
    "BIOSTRATIGRAPHY",
    "CATALOG_NUMBER",
    "CLASS_KEY",
    "COLLECTION_CODE",
    "COLLECTION_KEY",
    "CONTINENT",
    "COORDINATE_UNCERTAINTY_IN_METERS",
    "COUNTRY",
    "CRAWL_ID",
    "DATASET_ID",
    "DATASET_KEY",
    "DATASET_NAME",
    "DAY",
    "DECIMAL_LATITUDE",
    "DECIMAL_LONGITUDE",
    "DEGREE_OF_ESTABLISHMENT",
    "DEPTH",
    "DISTANCE_FROM_CENTROID_IN_METERS",
    "DWCA_EXTENSION",
    "EARLIEST_AGE_OR_LOWEST_STAGE",
    "EARLIEST_EON_OR_LOWEST_EONOTHEM",
    "EARLIEST_EPOCH_OR_LOWEST_SERIES",
    "EARLIEST_ERA_OR_LOWEST_ERATHEM",
    "EARLIEST_PERIOD_OR_LOWEST_SYSTEM",
    "ELEVATION",
    "END_DAY_OF_YEAR",
    "ESTABLISHMENT_MEANS",
    "EVENT_DATE",
    "EVENT_DATE_GTE",
    "EVENT_DATE_LTE",
    "EVENT_ID",
    "FAMILY_KEY",
    "FIELD_NUMBER",
    "FORMATION",
    "GADM_GID",
    "GADM_LEVEL_0_GID",
    "GADM_LEVEL_1_GID",
    "GADM_LEVEL_2_GID",
    "GADM_LEVEL_3_GID",
    "GBIF_ID",
    "GBIF_REGION",
    "GENUS_KEY",
    "GEOLOGICAL_TIME",
    "GEOMETRY",
    "GEO_DISTANCE",
    "GEOREFERENCED_BY",
    "GROUP",
    "HAS_COORDINATE",
    "HAS_GEOSPATIAL_ISSUE",
    "HIGHER_GEOGRAPHY",
    "HIGHEST_BIOSTRATIGRAPHIC_ZONE",
    "HOSTING_ORGANIZATION_KEY",
    "IDENTIFIED_BY",
    "IDENTIFIED_BY_ID",
    "INSTALLATION_KEY",
    "INSTITUTION_CODE",
    "INSTITUTION_KEY",
    "ISLAND",
    "ISLAND_GROUP",
    "ISSUE",
    "IS_IN_CLUSTER",
    "IS_SEQUENCED",
    "IUCN_RED_LIST_CATEGORY",
    "KINGDOM_KEY",
    "LAST_INTERPRETED",
    "LATEST_AGE_OR_HIGHEST_STAGE",
    "LATEST_EON_OR_HIGHEST_EONOTHEM",
    "LATEST_EPOCH_OR_HIGHEST_SERIES",
    "LATEST_ERA_OR_HIGHEST_ERATHEM",
    "LATEST_PERIOD_OR_HIGHEST_SYSTEM",
    "LICENSE",
    "LIFE_STAGE",
    "LITHOSTRATIGRAPHY",
    "LOCALITY",
    "LOWEST_BIOSTRATIGRAPHIC_ZONE",
    "MEDIA_TYPE",
    "MEMBER",
    "MODIFIED",
    "MONTH",
    "NETWORK_KEY",
    "OCCURRENCE_ID",
    "OCCURRENCE_STATUS",
    "ORDER_KEY",
    "ORGANISM_ID",
    "ORGANISM_QUANTITY",
    "ORGANISM_QUANTITY_TYPE",
    "OTHER_CATALOG_NUMBERS",
    "PARENT_EVENT_ID",
    "PATHWAY",
    "PHYLUM_KEY",
    "PREPARATIONS",
    "PREVIOUS_IDENTIFICATIONS",
    "PROGRAMME",
    "PROJECT_ID",
    "PROTOCOL",
    "PUBLISHED_BY_GBIF_REGION",
    "PUBLISHING_COUNTRY",
    "PUBLISHING_ORG",
    "RECORDED_BY",
    "RECORDED_BY_ID",
    "RECORD_NUMBER",
    "RELATIVE_ORGANISM_QUANTITY",
    "REPATRIATED",
    "SAMPLE_SIZE_UNIT",
    "SAMPLE_SIZE_VALUE",
    "SAMPLING_PROTOCOL",
    "SCIENTIFIC_NAME",
    "SEX",
    "SPECIES_KEY",
    "START_DAY_OF_YEAR",
    "STATE_PROVINCE",
    "SUBGENUS_KEY",
    "TAXONOMIC_ISSUE",
    "TAXONOMIC_STATUS",
    "TAXON_CONCEPT_ID",
    "TAXON_ID",
    "TAXON_KEY",
    "TYPE_STATUS",
    "VERBATIM_SCIENTIFIC_NAME",
    "WATER_BODY",
    "YEAR",
)

#: Names that shape the request (paging, facets, full text, ordering) rather than filter records.
REQUEST_PARAMETERS: frozenset[str] = frozenset(
    {
        "checklistKey",
        "facet",
        "facetLimit",
        "facetMincount",
        "facetMultiselect",
        "facetOffset",
        "hl",
        "limit",
        "offset",
        "q",
        "shuffle",
        "spellCheck",
        "spellCheckCount",
    }
)

#: The per-facet paging suffixes GBIF accepts as ``<facet>.facetLimit`` and so on.
FACET_PAGING_NAMES: tuple[str, ...] = ("facetLimit", "facetOffset", "facetMincount")


def _camel(enum_name: str) -> str:
    first, *rest = enum_name.lower().split("_")
    return first + "".join(part.capitalize() for part in rest)


_ENUM_BY_NAME: dict[str, str] = {_camel(e): e for e in _FILTER_ENUM_NAMES}

#: Every parameter name GBIF's occurrence search understands, spelled the canonical way.
SEARCH_PARAMETERS: frozenset[str] = frozenset(_ENUM_BY_NAME) | REQUEST_PARAMETERS

#: Parameters whose values may be ranges ``a,b`` (``*`` for an open end).
RANGE_PARAMETERS: frozenset[str] = frozenset(
    {
        "coordinateUncertaintyInMeters",
        "day",
        "decimalLatitude",
        "decimalLongitude",
        "depth",
        "distanceFromCentroidInMeters",
        "elevation",
        "endDayOfYear",
        "eventDate",
        "lastInterpreted",
        "modified",
        "month",
        "organismQuantity",
        "relativeOrganismQuantity",
        "sampleSizeValue",
        "startDayOfYear",
        "year",
    }
)

_NORMALIZE = re.compile(r"[._\-\s]")


def normalize_name(name: str) -> str:
    """GBIF's lenient key for a name: upper case, without ``.``, ``_``, ``-`` and spaces.

    Example:
        >>> normalize_name("media_type") == normalize_name("mediaType") == "MEDIATYPE"
        True
    """
    return _NORMALIZE.sub("", name).upper()


_LOOKUP: dict[str, str] = {normalize_name(n): n for n in SEARCH_PARAMETERS}
_FACET_SUFFIXES: dict[str, str] = {normalize_name(s): s for s in FACET_PAGING_NAMES}


def _suggest(name: str) -> str:
    key = normalize_name(name)
    close = difflib.get_close_matches(key, list(_LOOKUP), n=1, cutoff=0.6)
    if not close:
        # a known name hidden inside a longer one ("publishingOrgKey", "speciesKeys")
        inside = sorted((k for k in _LOOKUP if len(k) > 3 and k in key), key=len, reverse=True)
        close = inside[:1]
    hint = f"; did you mean {_LOOKUP[close[0]]!r}?" if close else "."
    return (
        f"unknown GBIF search parameter {name!r}{hint} GBIF silently ignores unknown names and "
        f"would return unfiltered results. See {PARAMETERS_DOC_URL} for the list."
    )


def canonical_name(name: str) -> str:
    """The canonical spelling of a GBIF search parameter name, matched as GBIF matches it.

    ``<facet>.facetLimit``, ``<facet>.facetOffset`` and ``<facet>.facetMincount`` (per-facet
    paging) are accepted for any known facet field.

    Raises:
        ConfigError: the name is unknown; the message suggests the closest valid name.

    Example:
        >>> canonical_name("MEDIATYPE"), canonical_name("species_key.facet-limit")
        ('mediaType', 'speciesKey.facetLimit')
        >>> canonical_name("publishingOrgKey")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: unknown GBIF search parameter 'publishingOrgKey'; did you mean 'publishingOrg'? ...
    """  # noqa: E501
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a GBIF search parameter name must be a non-empty string, got {name!r}")
    key = normalize_name(name)
    found = _LOOKUP.get(key)
    if found is not None:
        return found
    for suffix_key, suffix in _FACET_SUFFIXES.items():
        field = _LOOKUP.get(key[: -len(suffix_key)]) if key.endswith(suffix_key) else None
        if field is not None and field in _ENUM_BY_NAME:
            return f"{field}.{suffix}"
    raise ConfigError(_suggest(name))


def _scalar(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        try:
            return str(int(value))
        except ValueError as exc:  # more digits than Python converts (sys.int_info)
            raise ConfigError(f"GBIF parameter {name!r}: the integer is too large") from exc
    if isinstance(value, numbers.Real):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"GBIF parameter {name!r}: {value!r} is not a usable number")
        return repr(number)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ConfigError(
                f"GBIF parameter {name!r} has an empty value; remove it or give a value"
            )
        return text
    raise ConfigError(
        f"GBIF parameter {name!r}: value {value!r} of type {type(value).__name__} is not "
        "supported; use a string, a number, a boolean, a list of those (OR) or a (low, high) "
        "tuple for a range"
    )


def _range(name: str, value: tuple[Any, ...]) -> str:
    if len(value) != 2:
        raise ConfigError(
            f"GBIF parameter {name!r}: a tuple means a range (low, high), got {len(value)} "
            "items; use a list for several values"
        )
    if name not in RANGE_PARAMETERS:
        raise ConfigError(
            f"GBIF parameter {name!r} does not take ranges; use a list for several values. "
            f"Range parameters: {', '.join(sorted(RANGE_PARAMETERS))}"
        )
    low, high = ("*" if end is None else _scalar(name, end) for end in value)
    if low == "*" and high == "*":
        raise ConfigError(f"GBIF parameter {name!r}: the range (None, None) has no bound")
    return f"{low},{high}"


def _values(name: str, value: Any) -> list[str]:
    if value is None:
        raise ConfigError(f"GBIF parameter {name!r} is None; remove it or give a value")
    if isinstance(value, tuple):
        return [_range(name, value)]
    if isinstance(value, (list, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        if not items:
            raise ConfigError(
                f"GBIF parameter {name!r} has an empty list; an empty OR matches nothing. "
                "Remove the parameter or give at least one value"
            )
        out: list[str] = []
        for item in items:
            if item is None:
                raise ConfigError(f"GBIF parameter {name!r}: None inside the list {value!r}")
            text = _range(name, item) if isinstance(item, tuple) else _scalar(name, item)
            if text not in out:
                out.append(text)
        return out
    return [_scalar(name, value)]


def validate_query(query: Mapping[str, Any]) -> dict[str, list[str]]:
    """Check a search query and convert it to GBIF's form: canonical names, lists of strings.

    Values: a scalar, a list (GBIF ORs repeated values), or a ``(low, high)`` tuple for a range
    (``None`` for an open end). Booleans become ``"true"``/``"false"``.

    Raises:
        ConfigError: unknown names (with a suggestion), the same parameter spelled twice,
            unsupported value types, ``None`` values, empty lists or strings.

    Example:
        >>> validate_query({"media_type": "StillImage", "taxonKey": 212, "month": (4, 8)})
        {'mediaType': ['StillImage'], 'taxonKey': ['212'], 'month': ['4,8']}
    """
    if not isinstance(query, Mapping):
        raise ConfigError(
            f"a GBIF query must be a mapping of parameter names to values, got "
            f"{type(query).__name__}; for example {{'speciesKey': 5352251}}"
        )
    result: dict[str, list[str]] = {}
    spelled: dict[str, str] = {}
    for raw_name, value in query.items():
        name = canonical_name(raw_name)
        if name in result:
            raise ConfigError(
                f"GBIF parameters {spelled[name]!r} and {raw_name!r} are the same parameter "
                f"{name!r}; give it once, with a list for several values"
            )
        spelled[name] = raw_name
        result[name] = _values(name, value)
    return result


def facet_field(name: str) -> str:
    """GBIF's enum name of a facet field, as it appears in a search response's ``facets``.

    Example:
        >>> facet_field("speciesKey"), facet_field("country")
        ('SPECIES_KEY', 'COUNTRY')
    """
    canonical = canonical_name(name)
    enum_name = _ENUM_BY_NAME.get(canonical)
    if enum_name is None:
        raise ConfigError(
            f"{name!r} is not a field GBIF can count (facet); use a filter field such as "
            "'speciesKey', 'datasetKey' or 'country'"
        )
    return enum_name


# --- download predicates -----------------------------------------------------------------------

#: Request-only names that do not change which records match; left out of download predicates.
_NOT_A_FILTER = REQUEST_PARAMETERS - {"q", "checklistKey"}


def _range_predicates(key: str, text: str) -> list[dict[str, Any]]:
    low, _, high = (part.strip() for part in text.partition(","))
    out: list[dict[str, Any]] = []
    if low and low != "*":
        out.append({"type": "greaterThanOrEquals", "key": key, "value": low})
    if high and high != "*":
        out.append({"type": "lessThanOrEquals", "key": key, "value": high})
    return out


def _parameter_predicate(name: str, values: list[str]) -> dict[str, Any]:
    key = _ENUM_BY_NAME[name]
    alternatives: list[dict[str, Any]] = []
    equals: list[str] = []
    for value in values:
        if value == "*":
            alternatives.append({"type": "isNotNull", "parameter": key})
        elif name == "geometry":
            alternatives.append({"type": "within", "geometry": value})
        elif name == "geoDistance":
            parts = [p.strip() for p in value.split(",")]
            if len(parts) != 3:
                raise ConfigError(
                    f"geoDistance {value!r} must be 'distance,latitude,longitude', "
                    "for example '100km,40,90'"
                )
            distance, latitude, longitude = parts
            alternatives.append(
                {
                    "type": "geoDistance",
                    "latitude": latitude,
                    "longitude": longitude,
                    "distance": distance,
                }
            )
        elif name in RANGE_PARAMETERS and "," in value:
            bounds = _range_predicates(key, value)
            if not bounds:
                alternatives.append({"type": "isNotNull", "parameter": key})
            else:
                alternatives.append(
                    bounds[0] if len(bounds) == 1 else {"type": "and", "predicates": bounds}
                )
        else:
            equals.append(value)
    if len(equals) == 1:
        alternatives.insert(0, {"type": "equals", "key": key, "value": equals[0]})
    elif equals:
        alternatives.insert(0, {"type": "in", "key": key, "values": equals})
    if len(alternatives) == 1:
        return alternatives[0]
    return {"type": "or", "predicates": alternatives}


def to_predicate(query: Mapping[str, Any]) -> dict[str, Any]:
    """Translate a search query into a GBIF download predicate (``and`` of one part per parameter).

    One value becomes ``equals``, several ``in``; a range ``a,b`` becomes a
    ``greaterThanOrEquals``/``lessThanOrEquals`` pair (``*`` leaves an end open); ``geometry``
    becomes ``within``; ``q`` becomes ``fullTextSearch``. Paging and facet names are left out,
    since they do not change which records match.

    Raises:
        ConfigError: the query is invalid (see :func:`validate_query`) or filters nothing.

    Example:
        >>> to_predicate({"speciesKey": [1, 2], "year": "2000,*"})["predicates"]
        [{'type': 'in', 'key': 'SPECIES_KEY', 'values': ['1', '2']}, \
{'type': 'greaterThanOrEquals', 'key': 'YEAR', 'value': '2000'}]
    """
    params = validate_query(query)
    predicates: list[dict[str, Any]] = []
    for name, values in params.items():
        if name in _NOT_A_FILTER or "." in name:
            continue
        if name == "checklistKey":
            raise ConfigError(
                "checklistKey is not part of a download predicate; leave it out of the query"
            )
        if name == "q":
            predicates.extend({"type": "fullTextSearch", "q": value} for value in values)
            continue
        predicates.append(_parameter_predicate(name, values))
    if not predicates:
        raise ConfigError(
            "the query has no filter, so a download would contain every GBIF occurrence; "
            "add at least one filter such as taxonKey or datasetKey"
        )
    return {"type": "and", "predicates": predicates}


# --- download keys and DOIs --------------------------------------------------------------------

#: A GBIF occurrence download key: a counter and a 15-digit timestamp
#: (``0022697-200613084148143``); ASCII digits only, nothing that could be a path or a URL part.
_DOWNLOAD_KEY = re.compile(r"\A[0-9]{7,12}-[0-9]{15}\Z")
_DOI = re.compile(r"\A10\.[0-9]{4,9}/[a-z0-9][a-z0-9._;()/:+-]*\Z")
#: A GBIF download DOI: ``10.15468/dl.`` and letters and digits (``10.15468/dl.hx3uzz``).
_DOWNLOAD_DOI = re.compile(r"\A10\.15468/dl\.[a-z0-9]+\Z")
_DOI_PREFIXES = re.compile(
    r"^(?:doi:\s*|(?:https?://)?(?:dx\.)?doi\.org/|info:doi/)", flags=re.IGNORECASE
)
_GBIF_LANDING = re.compile(
    r"^(?:https?://)?(?:www\.)?gbif(?:-uat)?\.org/occurrence/download/(\d+-\d+)/?$",
    flags=re.IGNORECASE,
)


def normalize_doi(text: str) -> str | None:
    """Normalise a DOI given as ``10.x/y``, ``doi:10.x/y`` or ``https://doi.org/10.x/y``.

    Returns the lower-case ``prefix/suffix`` form, or ``None`` if ``text`` is not a DOI.

    Example:
        >>> normalize_doi("doi:10.15468/dl.hx3uzz"), normalize_doi("10.15468/DL.HX3UZZ")
        ('10.15468/dl.hx3uzz', '10.15468/dl.hx3uzz')
        >>> normalize_doi("0022697-200613084148143") is None
        True
    """
    if not isinstance(text, str):
        return None
    candidate = _DOI_PREFIXES.sub("", text.strip(), count=1)
    candidate = unquote(candidate).strip().lower().rstrip("/")
    if not _DOI.match(candidate) or {".", ".."} & set(candidate.split("/")):
        return None  # ``..`` segments would walk up the path of a URL built from it
    return candidate


def is_download_key(text: str) -> bool:
    """True for a GBIF occurrence download key such as ``0022697-200613084148143``.

    Strict (ASCII digits, a counter and a 15-digit timestamp): a key is checked before it
    names a file or goes into a URL, whether the user or a server gave it.

    Example:
        >>> is_download_key("0022697-200613084148143"), is_download_key("10.15468/dl.x")
        (True, False)
    """
    return isinstance(text, str) and bool(_DOWNLOAD_KEY.match(text.strip()))


def is_download_doi(doi: str) -> bool:
    """True for a normalised GBIF download DOI: ``10.15468/dl.`` then letters and digits.

    Example:
        >>> is_download_doi("10.15468/dl.hx3uzz"), is_download_doi("10.15468/dl.x/../admin")
        (True, False)
    """
    return isinstance(doi, str) and bool(_DOWNLOAD_DOI.match(doi))


def parse_download_id(text: str) -> tuple[str, str]:
    """Classify a download identifier: ``("key", key)`` or ``("doi", normalized_doi)``.

    Accepts a download key, a GBIF download DOI (``10.15468/dl.<letters and digits>``) in any
    common form, or a gbif.org download page URL; anything else (a DOI of another kind, ``..``
    segments, query strings) is refused before it goes into a URL.

    Raises:
        ConfigError: ``text`` is neither; the message lists the accepted forms.

    Example:
        >>> parse_download_id("https://doi.org/10.15468/dl.hx3uzz")
        ('doi', '10.15468/dl.hx3uzz')
    """
    if isinstance(text, str):
        stripped = text.strip()
        if is_download_key(stripped):
            return ("key", stripped)
        landing = _GBIF_LANDING.match(stripped)
        if landing:
            return ("key", landing.group(1))
        doi = normalize_doi(stripped)
        if doi is not None and is_download_doi(doi):
            return ("doi", doi)
    raise ConfigError(
        f"{str(text)[:200]!r} is not a GBIF download identifier; give a download key "
        "(0022697-200613084148143), a DOI (10.15468/dl.abc123, doi:10.15468/dl.abc123 or "
        "https://doi.org/10.15468/dl.abc123: GBIF download DOIs are 10.15468/dl. followed by "
        "letters and digits) or a https://www.gbif.org/occurrence/download/<key> URL"
    )

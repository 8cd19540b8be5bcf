"""Parsing of GBIF occurrence-search parameters, with GBIF's leniency and its error messages.

Parameter names are matched the way GBIF does (case and ``. _ -`` insensitive), values are
split into lists, ranges (``a,b``, ``*,b``, ``a,*``), enums and UUIDs are parsed, and a value
GBIF would reject raises :class:`InvalidSearchError` carrying GBIF's exact 400 message.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from gbif_dl.errors import ConfigError

__all__ = [
    "FACETS",
    "SEARCH_PARAMS",
    "InvalidSearchError",
    "as_values",
    "canonical_param",
    "facet_field_name",
    "lookup_enum",
    "normalize_param",
    "parse_range",
    "parse_uuid",
]


def normalize_param(name: str) -> str:
    """GBIF's lenient parameter-name key: upper case, with ``. _ -`` and spaces removed.

    Example:
        >>> normalize_param("media_type") == normalize_param("mediaType") == "MEDIATYPE"
        True
    """
    return re.sub(r"[. _\-]", "", name).upper()


# fmt: off
SEARCH_PARAMS = (
    "taxonKey", "speciesKey", "kingdomKey", "phylumKey", "classKey", "orderKey", "familyKey",
    "genusKey", "acceptedTaxonKey", "scientificName", "datasetKey", "publishingOrg",
    "publishingCountry", "country", "basisOfRecord", "mediaType", "year", "month", "day",
    "decimalLatitude", "decimalLongitude", "elevation", "hasCoordinate", "license",
    "occurrenceStatus", "gbifId",
)
# fmt: on
_BY_NORMAL = {normalize_param(p): p for p in SEARCH_PARAMS}

# fmt: off
FACETS = (
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


def as_values(value: Any) -> list[str]:
    """A search value as a list of non-empty strings (a list means a repeated parameter)."""
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


def lookup_enum(value: str, names: Sequence[str], enum_name: str, param: str) -> int:
    """The index of ``value`` in the enum ``names`` (lenient spelling), or GBIF's 400."""
    wanted = normalize_param(value)
    for index, name in enumerate(names):
        if normalize_param(name) == wanted:
            return index
    raise InvalidSearchError(f"Cannot parse {value} into a known {enum_name}", param=param)


def parse_range(
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


def parse_uuid(text: str, param: str) -> str:
    """``text`` as a canonical UUID string, or GBIF's 400 for an invalid one."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidSearchError(f"Invalid UUID string: {text}", param=param) from None

"""Scientific names in a search query, resolved to GBIF backbone keys (``taxonKey``).

Example:
    >>> async def keys(gbif: GbifClient) -> dict[str, int]:
    ...     return await resolve_names(gbif, ["Robinia pseudoacacia"])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from gbif_dl.errors import ConfigError
from gbif_dl.gbif.client import GbifClient
from gbif_dl.sources.search.streams import Query

__all__ = ["resolve_names", "resolve_query", "resolve_query_names"]

logger = logging.getLogger(__name__)


async def resolve_names(client: GbifClient, names: Iterable[str]) -> dict[str, int]:
    """Backbone keys of scientific names, via species match.

    Synonyms resolve to their accepted key; fuzzy matches are accepted with a warning.

    Raises:
        ConfigError: listing every name that matched nothing, only a higher rank, or
            ambiguously.

    Example:
        >>> async def keys(gbif: GbifClient) -> dict[str, int]:
        ...     return await resolve_names(gbif, ["Robinia pseudoacacia"])
    """
    unique = list(dict.fromkeys(str(n) for n in names))
    matches = await asyncio.gather(*(client.species_match(name) for name in unique))
    keys: dict[str, int] = {}
    problems: list[str] = []
    for name, match in zip(unique, matches, strict=False):
        kind = str(match.get("matchType", "NONE")).upper()
        note = str(match.get("note") or "")
        if kind == "NONE" or "usageKey" not in match:
            reason = "ambiguous" if "multiple" in note.lower() else "no match"
            problems.append(f"{name!r} ({reason})")
            continue
        if kind == "HIGHERRANK":
            problems.append(
                f"{name!r} (only the {str(match.get('rank', 'higher')).lower()} matched)"
            )
            continue
        if kind == "FUZZY":
            logger.warning("%r matched %r only fuzzily", name, match.get("scientificName"))
        keys[name] = int(match.get("acceptedUsageKey") or match["usageKey"])
    if problems:
        raise ConfigError(
            "scientific names that do not resolve to one GBIF backbone taxon: "
            + ", ".join(problems)
            + "; check the spelling, add the author, or give speciesKey/taxonKey values instead"
        )
    return keys


async def resolve_query(client: GbifClient, query: Query) -> tuple[Query, dict[str, int]]:
    """``query`` with its ``scientificName`` values replaced by their ``taxonKey`` values, and
    the names with the keys they resolved to (empty when the query names no taxa).

    Raises:
        ConfigError: the query has both names and ``taxonKey``, or a name does not resolve.

    Example:
        >>> async def by_key(gbif: GbifClient) -> tuple[Query, dict[str, int]]:
        ...     return await resolve_query(gbif, {"scientificName": ["Apis mellifera"]})
    """
    names = query.get("scientificName")
    if not names:
        return query, {}
    if "taxonKey" in query:
        raise ConfigError(
            "the query has both scientificName and taxonKey; names are resolved to taxonKey "
            "values, so give the taxa one way only"
        )
    keys = await resolve_names(client, names)
    resolved = {k: v for k, v in query.items() if k != "scientificName"}
    resolved["taxonKey"] = list(dict.fromkeys(str(keys[name]) for name in names))
    return resolved, keys


async def resolve_query_names(client: GbifClient, query: Query) -> Query:
    """``query`` with its ``scientificName`` values replaced by their ``taxonKey`` values.

    Raises:
        ConfigError: as :func:`resolve_query`.

    Example:
        >>> async def by_key(gbif: GbifClient) -> Query:
        ...     return await resolve_query_names(gbif, {"scientificName": ["Apis mellifera"]})
    """
    return (await resolve_query(client, query))[0]

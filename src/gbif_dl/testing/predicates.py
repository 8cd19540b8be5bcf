"""GBIF occurrence-download predicates: built from search parameters and evaluated on a population.

``query_to_predicate`` writes search parameters as the predicate GBIF's website would send,
``predicate_mask`` evaluates a predicate tree (``and``, ``or``, ``not``, ``equals``, ``in``,
``range``, comparisons, ``isNull``) to a boolean mask over a
:class:`~gbif_dl.testing.population.Population`, and ``stamp_match_case`` echoes
``matchCase`` into leaf predicates the way GBIF stores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from gbif_dl.errors import ConfigError
from gbif_dl.testing.population import Population
from gbif_dl.testing.search_params import InvalidSearchError, canonical_param, facet_field_name

__all__ = ["predicate_mask", "query_to_predicate", "stamp_match_case"]


def query_to_predicate(query: Mapping[str, Any]) -> dict[str, Any]:
    """Turn search parameters into a download predicate, the way GBIF's website does.

    Example:
        >>> query_to_predicate({"taxonKey": 5, "country": ["US", "CA"]})["predicates"][1]
        {'type': 'in', 'key': 'COUNTRY', 'values': ['US', 'CA'], 'matchCase': False}
    """
    predicates: list[dict[str, Any]] = []
    for name, value in query.items():
        param = canonical_param(str(name))
        if param is None:
            raise ConfigError(
                f"unknown search parameter {name!r} for a download predicate; "
                "use GBIF names such as taxonKey, mediaType, country, year"
            )
        values = [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        key = facet_field_name(param)
        if len(values) == 1 and "," in values[0]:
            low, _, high = values[0].partition(",")
            bounds = {}
            if low.strip() not in ("", "*"):
                bounds["gte"] = low.strip()
            if high.strip() not in ("", "*"):
                bounds["lte"] = high.strip()
            predicates.append({"type": "range", "key": key, "value": bounds})
        elif len(values) == 1:
            predicates.append(
                {"type": "equals", "key": key, "value": values[0], "matchCase": False}
            )
        else:
            predicates.append({"type": "in", "key": key, "values": values, "matchCase": False})
    if len(predicates) == 1:
        return predicates[0]
    return {"type": "and", "predicates": predicates}


def _predicate_param(predicate: Mapping[str, Any]) -> str:
    key = str(predicate.get("key", ""))
    param = canonical_param(key)
    if param is None:
        raise ConfigError(f"Invalid predicate: unsupported key {key!r}")
    return param


def predicate_mask(pop: Population, predicate: Mapping[str, Any] | None) -> npt.NDArray[np.bool_]:
    """Boolean mask of the records matching a GBIF download predicate (None = everything).

    Supports ``and``, ``or``, ``not``, ``equals``, ``in``, ``range``, ``greaterThan``,
    ``greaterThanOrEquals``, ``lessThan``, ``lessThanOrEquals``, ``isNull``, ``isNotNull``;
    others raise :class:`~gbif_dl.errors.ConfigError`.

    Example:
        >>> pop = Population(seed=0, size=100)
        >>> pred = {"type": "greaterThanOrEquals", "key": "YEAR", "value": "2020"}
        >>> bool((predicate_mask(pop, pred) == pop.mask({"year": "2020,*"})).all())
        True
    """
    if predicate is None:
        return np.ones(pop.size, dtype=bool)
    kind = str(predicate.get("type", "")).lower()
    try:
        if kind in ("and", "or"):
            children = predicate.get("predicates") or []
            masks = [predicate_mask(pop, child) for child in children]
            if not masks:
                return np.ones(pop.size, dtype=bool)
            combine = np.logical_and if kind == "and" else np.logical_or
            return combine.reduce(masks)
        if kind == "not":
            return ~predicate_mask(pop, predicate.get("predicate"))
        if kind in ("isnull", "isnotnull"):
            param = _predicate_param(predicate)
            present = pop.mask({param: "*"})
            return present if kind == "isnotnull" else ~present
        param = _predicate_param(predicate)
        if kind == "equals":
            return pop.mask({param: str(predicate.get("value", ""))})
        if kind == "in":
            return pop.mask({param: [str(v) for v in predicate.get("values") or []]})
        if kind == "range":
            value = predicate.get("value")
            if isinstance(value, Mapping):
                low = value.get("gte", "*")
                high = value.get("lte", "*")
                text = f"{'*' if low is None else low},{'*' if high is None else high}"
            else:
                text = str(value)
            return pop.mask({param: text})
        value = str(predicate.get("value", ""))
        if kind == "greaterthanorequals":
            return pop.mask({param: f"{value},*"})
        if kind == "lessthanorequals":
            return pop.mask({param: f"*,{value}"})
        if kind == "greaterthan":
            return pop.mask({param: f"{value},*"}) & ~pop.mask({param: value})
        if kind == "lessthan":
            return pop.mask({param: f"*,{value}"}) & ~pop.mask({param: value})
    except InvalidSearchError as exc:
        raise ConfigError(f"Invalid predicate: {exc.gbif_message}") from exc
    raise ConfigError(
        f"Invalid predicate: type {predicate.get('type')!r} is not supported by the simulator"
    )


def stamp_match_case(predicate: Any) -> Any:
    """Echo ``"matchCase": false`` into leaf predicates, as GBIF stores them."""
    if isinstance(predicate, dict):
        out = {k: stamp_match_case(v) for k, v in predicate.items()}
        if "key" in out and "matchCase" not in out and out.get("type") not in ("range",):
            out["matchCase"] = False
        return out
    if isinstance(predicate, list):
        return [stamp_match_case(v) for v in predicate]
    return predicate

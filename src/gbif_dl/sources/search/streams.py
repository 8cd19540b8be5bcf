"""Stream planning for the occurrence search: the streams of a query, their counts, media types.

A query is split into *streams*, one per combination of the values of ``split_streams_by``;
:func:`count_streams` counts every stream with as few facet requests as GBIF allows.

Example:
    >>> [s.name for s in plan_streams({"year": ["2001", "2002"]}, "year")]
    ['year=2001', 'year=2002']
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gbif_dl.errors import ConfigError
from gbif_dl.gbif.client import GbifClient
from gbif_dl.gbif.params import canonical_name, facet_field, normalize_name
from gbif_dl.sampling.filters import DEFAULT_MEDIATYPE, normalize_mediatype

__all__ = ["Query", "Stream", "count_streams", "media_types_of", "plan_streams"]

#: A validated query: canonical parameter names mapped to lists of strings.
Query = dict[str, list[str]]

# Fields whose facet counts equal the count of a filter on the same value (single-valued).
_NOT_EXACT_FACETS = frozenset(
    {"taxonKey", "acceptedTaxonKey", "scientificName", "verbatimScientificName", "issue"}
)


def _fold(value: object) -> str:
    return re.sub(r"[._\-\s]", "", str(value)).upper()


@dataclass(frozen=True)
class Stream:
    """One stream: the values of the split fields, its full query and its subset.

    Example:
        >>> Stream(index=0, values=(("speciesKey", "1"),), query={"speciesKey": ["1"]}).name
        'speciesKey=1'
    """

    index: int
    values: tuple[tuple[str, str], ...]
    query: Query
    subset: str | None = None

    @property
    def name(self) -> str:
        """A readable name such as ``datasetKey=...,speciesKey=...`` (``all`` for no split)."""
        return ",".join(f"{k}={v}" for k, v in self.values) or "all"


def _subset_of(values: Mapping[str, str], subset_streams: Any) -> str | None:
    """The subset of a stream, with gbif-dl 0.1's rules: explicit values win over ``"*"``."""
    if subset_streams is None:
        return None
    if isinstance(subset_streams, str):
        return subset_streams
    if not isinstance(subset_streams, Mapping):
        raise ConfigError(
            "subset_streams must map subset names to {field: values}, for example "
            '{"train": {"speciesKey": [5352251]}, "test": {"speciesKey": "*"}}'
        )
    explicit: str | None = None
    fallback: str | None = None
    for subset, spec in subset_streams.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"subset_streams[{subset!r}] must be a mapping like {{'speciesKey': [...]}}, "
                f"got {spec!r}"
            )
        for raw_field, wanted in spec.items():
            name = canonical_name(raw_field)
            if name not in values:
                continue
            if wanted == "*":
                fallback = fallback or str(subset)
                continue
            options = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
            if any(_fold(option) == _fold(values[name]) for option in options):
                explicit = str(subset)
    return explicit if explicit is not None else fallback


def plan_streams(
    query: Query, split_streams_by: str | Sequence[str] | None, subset_streams: Any = None
) -> list[Stream]:
    """Streams for a validated query: the product of the values of the split fields.

    Raises:
        ConfigError: a split field that is not in the query.

    Example:
        >>> streams = plan_streams({"speciesKey": ["1", "2"], "datasetKey": ["a"]}, "speciesKey")
        >>> [s.name for s in streams]
        ['speciesKey=1', 'speciesKey=2']
    """
    if split_streams_by is None:
        return [Stream(0, (), dict(query), _subset_of({}, subset_streams))]
    fields = [split_streams_by] if isinstance(split_streams_by, str) else list(split_streams_by)
    names = []
    for raw in fields:
        name = canonical_name(raw)
        if name not in query:
            raise ConfigError(
                f"split_streams_by names {raw!r}, which is not in the query; split only by "
                f"parameters of the query ({', '.join(query)})"
            )
        if name not in names:
            names.append(name)
    streams = []
    for index, combo in enumerate(itertools.product(*(query[name] for name in names))):
        values = tuple(zip(names, combo, strict=False))
        stream_query = {**query, **{name: [value] for name, value in values}}
        streams.append(
            Stream(index, values, stream_query, _subset_of(dict(values), subset_streams))
        )
    return streams


def _facetable(name: str, values: Sequence[str]) -> bool:
    if name in _NOT_EXACT_FACETS or any("," in v or v == "*" for v in values):
        return False
    try:
        facet_field(name)
    except ConfigError:
        return False
    return True


async def count_streams(client: GbifClient, streams: Sequence[Stream]) -> dict[int, int]:
    """Occurrence count of every stream, from facet requests where GBIF allows it.

    With streams split by fields ``A`` (values a1..an) and ``B`` (values b1..bm), one facet on
    the field with more values is requested per value of the others: ``m`` requests for ``n*m``
    streams (one request for a single split field). Streams the facet cannot count exactly
    (taxonKey, ranges) get a count request each.
    """
    if len(streams) == 1 and not streams[0].values:
        return {0: await client.count(streams[0].query)}
    split = [name for name, _ in streams[0].values]
    values = {
        name: list(dict.fromkeys(v for s in streams for n, v in s.values if n == name))
        for name in split
    }
    pivots = [name for name in split if _facetable(name, values[name])]
    counts: dict[int, int] = {}
    if pivots:
        pivot = max(pivots, key=lambda name: len(values[name]))
        groups: dict[tuple[tuple[str, str], ...], list[Stream]] = {}
        for stream in streams:
            others = tuple((n, v) for n, v in stream.values if n != pivot)
            groups.setdefault(others, []).append(stream)

        async def facet_group(group: list[Stream]) -> None:
            query = dict(group[0].query)
            query[pivot] = values[pivot]
            buckets = {_fold(k): v for k, v in (await client.facet(query, pivot)).items()}
            for stream in group:
                value = dict(stream.values)[pivot]
                if _fold(value) in buckets:
                    counts[stream.index] = buckets[_fold(value)]

        await asyncio.gather(*(facet_group(group) for group in groups.values()))
    missing = [stream for stream in streams if stream.index not in counts]

    async def count_one(stream: Stream) -> None:
        counts[stream.index] = await client.count(stream.query)

    await asyncio.gather(*(count_one(stream) for stream in missing))
    return {stream.index: counts[stream.index] for stream in streams}


def _given_types(name: str, value: Any) -> tuple[str, ...]:
    values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if not values:
        raise ConfigError(f"{name} in the query is an empty list; give at least one media type")
    return tuple(dict.fromkeys(normalize_mediatype(str(v)) for v in values))


def media_types_of(
    queries: Mapping[str, Any], mediatype: str | None = DEFAULT_MEDIATYPE
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The query without its media type, and the media types asked for (issue 22).

    GBIF takes the media type as the query parameter ``mediaType`` (any casing GBIF accepts,
    ``media_type`` too; a list means any of them); gbif-dl 0.1 took it as ``mediatype=``. Both
    are accepted: the query's types win over the default ``mediatype`` (``DEFAULT_MEDIATYPE``,
    "StillImage"), ``mediatype=None`` adds nothing, and only a ``mediatype=`` given explicitly
    that differs from the query's types is refused. ``()`` means no media type at all.

    Raises:
        ConfigError: a conflict, an unknown media type, or ``mediaType`` spelled twice.

    Example:
        >>> media_types_of({"speciesKey": 1, "media_type": ["sound", "StillImage"]})
        ({'speciesKey': 1}, ('Sound', 'StillImage'))
        >>> media_types_of({"speciesKey": 1})
        ({'speciesKey': 1}, ('StillImage',))
        >>> media_types_of({"mediaType": "Sound"}, "StillImage")
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: give the media type once: the query asks for mediaType \
['Sound'] but mediatype='StillImage' was given; drop mediatype= or make them agree
    """
    keys = [k for k in queries if normalize_name(str(k)) == "MEDIATYPE"]
    rest = {k: v for k, v in queries.items() if k not in keys}
    if len(keys) > 1:
        raise ConfigError(
            f"GBIF parameters {keys[0]!r} and {keys[1]!r} are the same parameter 'mediaType'; "
            "give it once, with a list for several values"
        )
    keyword = None if mediatype is None else normalize_mediatype(mediatype)
    if not keys:
        return rest, () if keyword is None else (keyword,)
    types = _given_types(keys[0], queries[keys[0]])
    if keyword is not None and mediatype is not DEFAULT_MEDIATYPE and types != (keyword,):
        raise ConfigError(
            f"give the media type once: the query asks for mediaType {list(types)} but "
            f"mediatype={mediatype!r} was given; drop mediatype= or make them agree"
        )
    return rest, types

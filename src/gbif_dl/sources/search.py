"""The occurrence search source behind :func:`gbif_dl.api.generate_urls`.

A query is split into *streams* (one per combination of the values of ``split_streams_by``).
The data flow, all lazy and asynchronous:

1. **Counts.** Occurrence counts per stream come from facet requests (one request per
   combination of the other split fields), falling back to a count request only for fields GBIF
   cannot facet exactly (``taxonKey``, ranges, names).
2. **Quotas.** :class:`~gbif_dl.sampling.balance.StreamBalancer` turns counts into quotas
   (balanced, weighted, capped, ``-1``); a stream that runs dry hands its quota on.
3. **Slices.** A stream with more than 10,000 records is partitioned into slices below 10,000
   (see ``docs/partitioning.md``), so that no request pages past offset 10,000 and every record
   is reachable exactly once.
4. **Pages.** Each stream's pages (slice, offset) are shuffled with the seed and fetched in that
   order, a few ahead, only as many as its quota needs; records within a page are shuffled too.
5. **Items.** Media of the requested type with an http(s) identifier, licence-filtered, one per
   occurrence (chosen with the seed) or all; duplicates by occurrence key and by URL dropped.
6. **Mux.** Streams are interleaved in a fixed order that depends only on the data and the
   seed, never on network timing, so the same query and seed give the same items in the same
   order.

Example:
    >>> import asyncio
    >>> async def first(api_url: str) -> list[str]:
    ...     items = agenerate_urls({"speciesKey": [5352251]}, label="speciesKey",
    ...                            nb_samples=10, seed=1, api_url=api_url)
    ...     return [item["url"] async for item in items]
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import re
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gbif_dl.errors import ConfigError
from gbif_dl.gbif.client import GbifClient
from gbif_dl.gbif.params import canonical_name, facet_field, validate_query
from gbif_dl.records import MediaRecord, attribution, media_record
from gbif_dl.sampling.balance import StreamBalancer
from gbif_dl.sampling.filters import (
    LicenseFilter,
    UrlDeduper,
    media_items,
    normalize_mediatype,
    pick_media,
)

__all__ = [
    "MAX_SLICE",
    "SearchStats",
    "Slice",
    "Stream",
    "agenerate_urls",
    "count_streams",
    "partition",
    "plan_streams",
    "resolve_names",
]

logger = logging.getLogger(__name__)

#: Largest slice read by paging: GBIF throttles offsets >= 10,000 (and refuses offset+limit
#: > 100,000), so every slice stays at or below 10,000 records.
MAX_SLICE = 10_000
#: GBIF's largest page.
PAGE_SIZE = 300
#: Smallest page used when a small quota is drawn from a large stream (more, smaller pages
#: spread the sample over the whole stream).
MIN_PAGE_SIZE = 10
#: A quota smaller than half its stream is drawn from at least this many pages.
MIN_PAGES_PER_SAMPLE = 8

Query = dict[str, list[str]]
_UNBOUNDED = 1 << 62

# Fields whose facet counts equal the count of a filter on the same value (single-valued).
_NOT_EXACT_FACETS = frozenset(
    {"taxonKey", "acceptedTaxonKey", "scientificName", "verbatimScientificName", "issue"}
)
# Fields every GBIF record has: a facet over them covers the whole slice (checked anyway).
_PARTITION_FACETS = (
    "datasetKey",
    "basisOfRecord",
    "year",
    "country",
    "license",
    "month",
    "publishingOrg",
    "occurrenceStatus",
)
_ORDINAL = frozenset({"year", "month"})


def _fold(value: object) -> str:
    return re.sub(r"[._\-\s]", "", str(value)).upper()


# --- streams ------------------------------------------------------------------------------------


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


# --- partitioning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    """A query whose records can all be paged (``count <= MAX_SLICE``), or an unsplittable rest.

    ``reachable`` is how many of its records paging can reach (``min(count, MAX_SLICE)``).
    """

    query: Query
    count: int

    @property
    def reachable(self) -> int:
        """Records of this slice that offsets below 10,000 can reach."""
        return min(self.count, MAX_SLICE)


def _group_ordinal(buckets: dict[str, int], limit: int) -> list[tuple[list[str], int]]:
    """Consecutive values grouped into ranges of at most ``limit`` records."""
    ordered = sorted(((int(k), v) for k, v in buckets.items()), key=lambda kv: kv[0])
    groups: list[tuple[list[str], int]] = []
    low = high = None
    total = 0
    for value, count in ordered:
        if low is not None and total + count > limit:
            groups.append(([f"{low},{high}" if low != high else str(low)], total))
            low = None
            total = 0
        if low is None:
            low = value
        high = value
        total += count
    if low is not None:
        groups.append(([f"{low},{high}" if low != high else str(low)], total))
    return groups


def _group_categorical(buckets: dict[str, int], limit: int) -> list[tuple[list[str], int]]:
    """Values packed first-fit-decreasing into OR lists of at most ``limit`` records."""
    groups: list[tuple[list[str], int]] = []
    for value, count in sorted(buckets.items(), key=lambda kv: (-kv[1], kv[0])):
        for i, (members, total) in enumerate(groups):
            if total + count <= limit:
                groups[i] = ([*members, value], total + count)
                break
        else:
            groups.append(([value], count))
    return groups


async def _split_by_facets(
    client: GbifClient, query: Query, count: int, limit: int
) -> tuple[str, list[tuple[list[str], int]], bool] | None:
    """The best facet split of ``query``: (field, groups, complete) or None."""
    fields = [f for f in _PARTITION_FACETS if len(query.get(f, ())) != 1]
    if not fields:
        return None
    facets = await client.facets(query, fields, limit=1000)
    best: tuple[tuple[int, int, int], str, list[tuple[list[str], int]], bool] | None = None
    for name in fields:
        buckets = facets.get(name) or {}
        if len(buckets) < 2:
            continue
        covered = sum(buckets.values())
        complete = covered >= count
        grouper = _group_ordinal if name in _ORDINAL else _group_categorical
        try:
            groups = grouper(buckets, limit)
        except ValueError:
            continue
        largest = max(total for _, total in groups)
        # complete coverage first; then the smallest largest group; then the fewest requests
        score = (0 if complete else 1, largest if largest > limit else 0, len(groups))
        if best is None or score < best[0]:
            best = (score, name, groups, complete)
    if best is None:
        return None
    _, name, groups, complete = best
    return name, groups, complete


def _format_number(value: float) -> str:
    return f"{value:.7f}".rstrip("0").rstrip(".")


async def partition(
    client: GbifClient, query: Query, count: int | None = None, *, limit: int = MAX_SLICE
) -> list[Slice]:
    """Split ``query`` into slices of at most ``limit`` records that together cover it.

    Splits by fields every record has first (facets of ``datasetKey``, ``basisOfRecord``,
    ``country``, ``year``... whose counts add up to the slice count), then by
    ``hasCoordinate`` and latitude/longitude ranges, and only then by a field some records
    lack (those records are lost, with a warning). See ``docs/partitioning.md``.

    Example:
        >>> async def slices(gbif: GbifClient) -> int:
        ...     return len(await partition(gbif, {"speciesKey": ["5352251"]}))
    """
    if count is None:
        count = await client.count(query)
    if count <= limit:
        return [Slice(query, count)] if count > 0 else []
    split = await _split_by_facets(client, query, count, limit)
    children: list[tuple[Query, int]] = []
    if split is not None and split[2]:
        name, groups, _ = split
        children = [({**query, name: members}, total) for members, total in groups]
    elif "hasCoordinate" not in query:
        with_coords = {**query, "hasCoordinate": ["true"]}
        without = {**query, "hasCoordinate": ["false"]}
        n_with, n_without = await asyncio.gather(client.count(with_coords), client.count(without))
        if n_with and n_without:
            children = [(with_coords, n_with), (without, n_without)]
    if not children and query.get("hasCoordinate") == ["true"]:
        children = await _bisect_coordinates(client, query, count)
    if not children and split is not None:
        name, groups, _ = split
        covered = sum(total for _, total in groups)
        logger.warning(
            "%d of %d records of %s lack %r and cannot be reached by paging; use an occurrence "
            "download (gbif_dl.dwca) to get every record",
            count - covered,
            count,
            query,
            name,
        )
        children = [({**query, name: members}, total) for members, total in groups]
    if not children:
        logger.warning(
            "%s has %d records and cannot be split further: only the first %d are reachable; "
            "use an occurrence download (gbif_dl.dwca) to get every record",
            query,
            count,
            limit,
        )
        return [Slice(query, count)]
    parts = await asyncio.gather(*(partition(client, q, n, limit=limit) for q, n in children))
    return [piece for part in parts for piece in part]


async def _bisect_coordinates(
    client: GbifClient, query: Query, count: int
) -> list[tuple[Query, int]]:
    """Halve the latitude (then longitude) range of ``query`` by counts; [] when too narrow.

    When one half holds every record, the range narrows to that half and is halved again, so
    records clustered in a small area still split.
    """
    axes = (("decimalLatitude", (-90.0, 90.0)), ("decimalLongitude", (-180.0, 180.0)))
    for name, (low, high) in axes:
        current = query.get(name)
        if current:
            if len(current) != 1 or "," not in current[0]:
                continue
            left, right = current[0].split(",", 1)
            low = float(left) if left != "*" else low
            high = float(right) if right != "*" else high
        while high - low >= 1e-6:
            middle = (low + high) / 2
            halves = [
                {**query, name: [f"{_format_number(low)},{_format_number(middle)}"]},
                {**query, name: [f"{_format_number(middle)},{_format_number(high)}"]},
            ]
            counts = await asyncio.gather(*(client.count(q) for q in halves))
            if sum(counts) < count:
                break  # some records lack this field: not a covering split
            if all(n < count for n in counts):
                return [(q, n) for q, n in zip(halves, counts, strict=True) if n > 0]
            low, high = (low, middle) if counts[0] >= count else (middle, high)
    return []


# --- names ----------------------------------------------------------------------------------------


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


async def _resolve_query_names(client: GbifClient, query: Query) -> Query:
    names = query.get("scientificName")
    if not names:
        return query
    if "taxonKey" in query:
        raise ConfigError(
            "the query has both scientificName and taxonKey; names are resolved to taxonKey "
            "values, so give the taxa one way only"
        )
    keys = await resolve_names(client, names)
    resolved = {k: v for k, v in query.items() if k != "scientificName"}
    resolved["taxonKey"] = list(dict.fromkeys(str(keys[name]) for name in names))
    return resolved


# --- reading a stream -----------------------------------------------------------------------------


@dataclass
class SearchStats:
    """What happened while reading: counts per stream and what was dropped, and why."""

    counts: dict[str, int] = field(default_factory=dict)
    quotas: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    records: int = 0
    no_label: int = 0
    no_media: int = 0
    license_rejected: int = 0
    duplicate_occurrences: int = 0
    duplicate_urls: int = 0


@dataclass(frozen=True)
class _Options:
    label: str | None
    mediatype: str
    one_media_per_occurrence: bool
    license_info: bool
    seed: int
    licenses: LicenseFilter


def _items_of(
    record: dict[str, Any], stream: Stream, options: _Options, stats: SearchStats
) -> list[MediaRecord]:
    if options.label is None:
        label: Any = record
    else:
        value = record.get(options.label)
        if value is None or value == "":
            stats.no_label += 1
            return []
        label = str(value)
    media = media_items(record, options.mediatype)
    if not media:
        stats.no_media += 1
        return []

    def license_of(entry: Mapping[str, Any]) -> Any:
        return attribution(entry, record)["license"]

    allowed = [m for m in media if options.licenses(license_of(m))]
    stats.license_rejected += len(media) - len(allowed)
    if not allowed:
        return []
    if options.one_media_per_occurrence:
        everything = record.get("media") or []
        place = {id(entry): i for i, entry in enumerate(everything)}
        positions = [place[id(entry)] for entry in allowed]
        allowed = [
            pick_media(allowed, seed=options.seed, key=record.get("key"), positions=positions)
        ]
    items = [
        media_record(
            entry,
            record,
            label=label,
            subset=stream.subset,
            license_info=options.license_info,
        )
        for entry in allowed
    ]
    return items


class _StreamReader:
    """Pages of one stream in seeded order, fetched a few ahead, only as many as needed."""

    def __init__(
        self,
        client: GbifClient,
        stream: Stream,
        count: int,
        options: _Options,
        stats: SearchStats,
        *,
        window: int,
        wanted: Any,
    ) -> None:
        self.client = client
        self.stream = stream
        self.count = count
        self.options = options
        self.stats = stats
        self.window = window
        self._wanted = wanted  # callable: items this stream still has to deliver
        self.rng = random.Random(f"gbif-dl:{options.seed}:{stream.name}")
        self.pages: list[tuple[Query, int, int]] | None = None
        self._plan_task: asyncio.Task[None] | None = None
        self.next_page = 0
        self.tasks: deque[asyncio.Task[list[MediaRecord]]] = deque()
        self.buffer: deque[MediaRecord] = deque()
        self.keys: set[int] = set()
        self.records = 0
        self.items = 0

    def start(self) -> None:
        """Plan the pages (partitioning if needed) and start the first fetches."""
        if self._plan_task is None:
            self._plan_task = asyncio.ensure_future(self._plan())

    async def _plan(self) -> None:
        slices = await partition(self.client, self.stream.query, self.count) if self.count else []
        reachable = sum(s.reachable for s in slices)
        wanted = self._wanted()
        page_size = PAGE_SIZE
        if wanted * 2 < reachable:
            per_page = math.ceil(wanted / MIN_PAGES_PER_SAMPLE)
            page_size = max(MIN_PAGE_SIZE, min(PAGE_SIZE, per_page))
        pages = [
            (s.query, offset, min(page_size, s.reachable - offset))
            for s in slices
            for offset in range(0, s.reachable, page_size)
        ]
        self.rng.shuffle(pages)
        self.pages = pages
        logger.debug(
            "stream %s: %d records, %d slices, %d pages of %d",
            self.stream.name,
            self.count,
            len(slices),
            len(pages),
            page_size,
        )
        self._launch()

    def _launch(self) -> None:
        if self.pages is None:
            return
        ratio = self.items / self.records if self.records else 1.0
        wanted = self._wanted()
        while self.next_page < len(self.pages) and len(self.tasks) < self.window:
            in_flight = range(self.next_page - len(self.tasks), self.next_page)
            expected = len(self.buffer) + sum(ratio * self.pages[i][2] for i in in_flight)
            if expected >= wanted:
                break
            query, offset, limit = self.pages[self.next_page]
            self.next_page += 1
            self.tasks.append(asyncio.ensure_future(self._fetch(query, offset, limit)))

    async def _fetch(self, query: Query, offset: int, limit: int) -> list[MediaRecord]:
        page = await self.client.search(query, limit=limit, offset=offset)
        results = list(page.get("results") or [])
        self.stats.pages += 1
        self.rng_page(results)
        return self._process(results)

    def rng_page(self, results: list[dict[str, Any]]) -> None:
        """Shuffle a page's records deterministically (seeded by the page's first key)."""
        keys = sorted(str(r.get("key")) for r in results)
        random.Random(f"{self.options.seed}:{keys[:1]}:{len(keys)}").shuffle(results)

    def _process(self, results: list[dict[str, Any]]) -> list[MediaRecord]:
        items: list[MediaRecord] = []
        for record in results:
            key = record.get("key")
            if isinstance(key, int):
                if key in self.keys:
                    self.stats.duplicate_occurrences += 1
                    continue
                self.keys.add(key)
            self.records += 1
            self.stats.records += 1
            found = _items_of(record, self.stream, self.options, self.stats)
            self.items += len(found)
            items.extend(found)
        return items

    async def next(self) -> MediaRecord | None:
        """The stream's next item, or None when it has no more."""
        self.start()
        assert self._plan_task is not None
        if not self._plan_task.done():
            await self._plan_task
        self._plan_task.result()
        while not self.buffer:
            self._launch()
            if not self.tasks:
                return None
            task = self.tasks.popleft()
            self.buffer.extend(await task)
        item = self.buffer.popleft()
        self._launch()
        return item

    async def close(self) -> None:
        """Cancel everything still in flight."""
        pending: list[asyncio.Future[Any]] = list(self.tasks)
        if self._plan_task is not None:
            pending.append(self._plan_task)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.tasks.clear()


# --- the source -------------------------------------------------------------------------------


def check_arguments(
    queries: Mapping[str, Any],
    *,
    label: str | None = None,
    split_streams_by: str | Sequence[str] | None = None,
    subset_streams: Any = None,
    nb_samples_per_stream: int | None = None,
    nb_samples: int | None = None,
    mediatype: str = "StillImage",
    license_info: bool = True,
    one_media_per_occurrence: bool = True,
    seed: int | None = None,
    licenses: Iterable[str] | None = None,
    keep_unknown_licenses: bool = False,
) -> tuple[_Options, Query, list[Stream]]:
    """Check the arguments of :func:`agenerate_urls` without any I/O.

    Raises:
        ConfigError: the first problem found, with a hint.

    Example:
        >>> _, query, streams = check_arguments({"year": [2001, 2002]}, split_streams_by="year")
        >>> query["mediaType"], len(streams)
        (['StillImage'], 2)
    """
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"label must be a record field name such as 'speciesKey', got {label!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer or None, got {seed!r}")
    options = _Options(
        label=label,
        mediatype=normalize_mediatype(mediatype),
        one_media_per_occurrence=bool(one_media_per_occurrence),
        license_info=bool(license_info),
        seed=0 if seed is None else seed,
        licenses=LicenseFilter(licenses, keep_unknown=keep_unknown_licenses),
    )
    if any(canonical_name(str(name)) == "mediaType" for name in queries):
        raise ConfigError(
            "give the media type as mediatype= (default 'StillImage'), not in the query"
        )
    query = validate_query({**dict(queries), "mediaType": options.mediatype})
    streams = plan_streams(query, split_streams_by, subset_streams)
    StreamBalancer({0: 0}, nb_samples, cap=nb_samples_per_stream)  # checks both numbers
    return options, query, streams


def agenerate_urls(
    queries: Mapping[str, Any],
    label: str | None = None,
    split_streams_by: str | Sequence[str] | None = None,
    subset_streams: Any = None,
    nb_samples_per_stream: int | None = None,
    nb_samples: int | None = None,
    weighted_streams: bool = False,
    cache_requests: bool = False,
    mediatype: str = "StillImage",
    license_info: bool = True,
    one_media_per_occurrence: bool = True,
    verbose: bool = False,
    *,
    seed: int | None = None,
    licenses: Iterable[str] | None = None,
    keep_unknown_licenses: bool = False,
    dedupe: bool = True,
    api_url: str | None = None,
    concurrency: int | None = None,
    client: GbifClient | None = None,
    stats: SearchStats | None = None,
) -> AsyncIterator[MediaRecord]:
    """Media records for an occurrence search query, balanced across streams; async.

    The arguments are those of :func:`gbif_dl.api.generate_urls`. Also: ``client`` (an open
    :class:`GbifClient` to use instead of creating one) and ``stats`` (a :class:`SearchStats`
    filled in while iterating). The arguments are checked when it is called (a
    :class:`ConfigError` is raised then, before any request); the records come while iterating.

    Example:
        >>> async def urls(api_url: str) -> list[str]:
        ...     items = agenerate_urls({"speciesKey": [1, 2]}, label="speciesKey",
        ...                            split_streams_by="speciesKey", nb_samples=-1,
        ...                            seed=0, api_url=api_url)
        ...     return [item["url"] async for item in items]
    """
    options, query, streams = check_arguments(
        queries,
        label=label,
        split_streams_by=split_streams_by,
        subset_streams=subset_streams,
        nb_samples_per_stream=nb_samples_per_stream,
        nb_samples=nb_samples,
        mediatype=mediatype,
        license_info=license_info,
        one_media_per_occurrence=one_media_per_occurrence,
        seed=seed,
        licenses=licenses,
        keep_unknown_licenses=keep_unknown_licenses,
    )
    if cache_requests:
        logger.debug("cache_requests is accepted for compatibility; GBIF responses are not cached")
    return _generate(
        options,
        query,
        streams,
        subset_streams=subset_streams,
        nb_samples_per_stream=nb_samples_per_stream,
        nb_samples=nb_samples,
        weighted_streams=weighted_streams,
        verbose=verbose,
        dedupe=dedupe,
        api_url=api_url,
        concurrency=concurrency,
        client=client,
        stats=stats if stats is not None else SearchStats(),
    )


async def _generate(
    options: _Options,
    query: Query,
    streams: list[Stream],
    *,
    subset_streams: Any,
    nb_samples_per_stream: int | None,
    nb_samples: int | None,
    weighted_streams: bool,
    verbose: bool,
    dedupe: bool,
    api_url: str | None,
    concurrency: int | None,
    client: GbifClient | None,
    stats: SearchStats,
) -> AsyncIterator[MediaRecord]:
    """The body of :func:`agenerate_urls`, once its arguments are checked."""
    log_level = logging.INFO if verbose else logging.DEBUG
    own_client = client is None
    if client is None:
        kwargs: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
        client = GbifClient(api_url, **kwargs)
    readers: list[_StreamReader] = []
    try:
        if own_client:
            await client.__aenter__()
        if "scientificName" in query:
            # names become taxonKey values; a split by scientificName becomes one by taxonKey
            split = [name for name, _ in streams[0].values]
            query = await _resolve_query_names(client, query)
            split = ["taxonKey" if name == "scientificName" else name for name in split]
            streams = plan_streams(query, split or None, subset_streams)
        counts = await count_streams(client, streams)
        # Without a total every stream gives all it has: occurrence counts are no bound on
        # items (several media per occurrence), so a stream only stops at its cap or when dry.
        limits = counts if nb_samples is not None else dict.fromkeys(counts, _UNBOUNDED)
        balancer = StreamBalancer(
            limits, nb_samples, cap=nb_samples_per_stream, weighted=weighted_streams
        )
        for stream in streams:
            stats.counts[stream.name] = counts[stream.index]
            quota = balancer.quotas[stream.index]
            stats.quotas[stream.name] = quota if quota < _UNBOUNDED else counts[stream.index]
        logger.log(
            log_level,
            "%d stream(s), %d occurrences, quotas %s",
            len(streams),
            sum(counts.values()),
            stats.quotas,
        )
        window = max(2, min(16, math.ceil(2 * client.config.concurrency / len(streams)) + 1))
        readers = [
            _StreamReader(
                client,
                stream,
                counts[stream.index],
                options,
                stats,
                window=window,
                wanted=(lambda i=stream.index: balancer.remaining(i)),
            )
            for stream in streams
        ]
        for reader in readers:
            if balancer.quotas[reader.stream.index] > 0:
                reader.start()
        async for item in _mux(readers, balancer, UrlDeduper() if dedupe else None, stats):
            yield item
        for stream in streams:
            stats.delivered[stream.name] = balancer.delivered[stream.index]
        logger.log(
            log_level,
            "delivered %d items; skipped %d records without label, %d without usable media, "
            "%d duplicate URLs",
            sum(balancer.delivered.values()),
            stats.no_label,
            stats.no_media,
            stats.duplicate_urls,
        )
    finally:
        await asyncio.gather(*(reader.close() for reader in readers), return_exceptions=True)
        if own_client:
            await client.close()


async def _mux(
    readers: list[_StreamReader],
    balancer: StreamBalancer[int],
    dedupe: UrlDeduper | None,
    stats: SearchStats,
) -> AsyncIterator[MediaRecord]:
    """Interleave streams in an order fixed by the data and the seed, never by timing."""
    slots: dict[int, MediaRecord] = {}

    async def peek(i: int) -> bool:
        """Fill stream i's slot with its next new item; False (and mark dry) if it has none."""
        if i in slots:
            return True
        while True:
            item = await readers[i].next()
            if item is None:
                balancer.exhausted(i)
                return False
            if dedupe is not None and dedupe.seen(item["url"]):
                stats.duplicate_urls += 1
                continue
            slots[i] = item
            return True

    while True:
        open_streams = [
            i for i in range(len(readers)) if i not in balancer.dry and balancer.remaining(i) > 0
        ]
        if not open_streams:
            return
        chosen = min(
            open_streams,
            key=lambda i: ((balancer.delivered[i] + 0.5) / balancer.quotas[i], i),
        )
        if balancer.balanced_max:
            level = balancer.delivered[chosen]
            same_level = [i for i in open_streams if balancer.delivered[i] == level]
            ready = [await peek(i) for i in same_level]
            if not all(ready):
                continue  # quotas were cut to the driest stream; choose again
        elif not await peek(chosen):
            continue
        item = slots.pop(chosen)
        balancer.record(chosen)
        yield item

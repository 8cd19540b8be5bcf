"""Reading the occurrence search: pages of each stream, records into MediaRecords, the mux.

:func:`search_records` is the source: it checks its arguments at the call (a
:class:`~gbif_dl.errors.ConfigError` before any request), then lazily resolves names, counts
the streams, turns counts into quotas, reads each stream's pages in seeded order and
interleaves the streams in an order fixed by the data and the seed.

Example:
    >>> from gbif_dl.options import SamplingOptions
    >>> async def first(api_url: str) -> list[str]:
    ...     options = SamplingOptions(label="speciesKey", nb_samples=10, seed=1)
    ...     items = search_records({"speciesKey": [5352251]}, options, api_url=api_url)
    ...     return [item["url"] async for item in items]
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gbif_dl.errors import ConfigError
from gbif_dl.gbif.client import GbifClient
from gbif_dl.gbif.params import validate_query
from gbif_dl.options import SamplingOptions
from gbif_dl.records import MediaRecord, attribution, media_record
from gbif_dl.sampling.balance import StreamBalancer
from gbif_dl.sampling.filters import (
    DEFAULT_MEDIATYPE,
    LicenseFilter,
    UrlDeduper,
    media_items,
    pick_media,
)
from gbif_dl.sampling.spares import DEFAULT_SPARES, spares_for, tag
from gbif_dl.sources.search.names import resolve_query
from gbif_dl.sources.search.partition import partition
from gbif_dl.sources.search.streams import (
    Query,
    Stream,
    count_streams,
    media_types_of,
    plan_streams,
)

__all__ = [
    "CheckedSearch",
    "SearchStats",
    "agenerate_urls",
    "check_arguments",
    "resolve_search",
    "search_records",
]

logger = logging.getLogger(__name__)

#: GBIF's largest page.
PAGE_SIZE = 300
#: Smallest page used when a small quota is drawn from a large stream (more, smaller pages
#: spread the sample over the whole stream).
MIN_PAGE_SIZE = 10
#: A quota smaller than half its stream is drawn from at least this many pages.
MIN_PAGES_PER_SAMPLE = 8

_UNBOUNDED = 1 << 62


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
class CheckedSearch:
    """A checked search: the GBIF query, its streams, the options and what they compile to.

    Attributes:
        query: the validated query, ``mediaType`` included.
        streams: the streams of the query (before names are resolved).
        options: the sampling options.
        mediatypes: the media types kept (from the query's ``mediaType`` or ``mediatype=``).
        licenses: the compiled licence allow-list.
    """

    query: Query
    streams: list[Stream]
    options: SamplingOptions
    mediatypes: tuple[str, ...]
    licenses: LicenseFilter


def check_arguments(queries: Mapping[str, Any], options: SamplingOptions) -> CheckedSearch:
    """Check a search query and its sampling options without any I/O.

    The media type comes from the query's ``mediaType`` (a list: any of them) or from
    ``options.mediatype``, as :func:`~gbif_dl.sources.search.streams.media_types_of` rules.

    Raises:
        ConfigError: the first problem found, with a hint.

    Example:
        >>> plan = check_arguments({"year": [2001, 2002]}, SamplingOptions(split_streams_by="year"))
        >>> plan.query["mediaType"], len(plan.streams)
        (['StillImage'], 2)
    """
    rest, mediatypes = media_types_of(queries, options.mediatype)
    if not mediatypes:
        raise ConfigError(
            "the occurrence search needs a media type: give mediatype= (default 'StillImage') "
            "or mediaType in the query"
        )
    licenses = LicenseFilter(options.licenses, keep_unknown=options.keep_unknown_licenses)
    query = validate_query({**rest, "mediaType": list(mediatypes)})
    streams = plan_streams(query, options.split_streams_by or None, options.subset_streams)
    StreamBalancer({0: 0}, options.nb_samples, cap=options.nb_samples_per_stream)  # checks both
    return CheckedSearch(query, streams, options, mediatypes, licenses)


def _media_of(record: dict[str, Any], mediatypes: Sequence[str]) -> list[dict[str, Any]]:
    """The usable media of ``record`` of any of ``mediatypes``, in the record's order."""
    if len(mediatypes) == 1:
        return media_items(record, mediatypes[0])
    found = {id(entry): entry for kind in mediatypes for entry in media_items(record, kind)}
    return [entry for entry in record.get("media") or [] if id(entry) in found]


def _items_of(
    record: dict[str, Any], stream: Stream, plan: CheckedSearch, stats: SearchStats
) -> list[MediaRecord]:
    options = plan.options
    if options.label is None:
        label: Any = record
    else:
        value = record.get(options.label)
        if value is None or value == "":
            stats.no_label += 1
            return []
        label = str(value)
    media = _media_of(record, plan.mediatypes)
    if not media:
        stats.no_media += 1
        return []

    def license_of(entry: Mapping[str, Any]) -> Any:
        return attribution(entry, record)["license"]

    allowed = [m for m in media if plan.licenses(license_of(m))]
    stats.license_rejected += len(media) - len(allowed)
    if not allowed:
        return []
    if options.one_media_per_occurrence:
        everything = record.get("media") or []
        place = {id(entry): i for i, entry in enumerate(everything)}
        positions = [place[id(entry)] for entry in allowed]
        seed = options.seed_value
        allowed = [pick_media(allowed, seed=seed, key=record.get("key"), positions=positions)]
    return [
        media_record(
            entry,
            record,
            label=label,
            subset=stream.subset,
            license_info=options.license_info,
        )
        for entry in allowed
    ]


class _StreamReader:
    """Pages of one stream in seeded order, fetched a few ahead, only as many as needed."""

    def __init__(
        self,
        client: GbifClient,
        stream: Stream,
        count: int,
        plan: CheckedSearch,
        stats: SearchStats,
        *,
        window: int,
        wanted: Any,
    ) -> None:
        self.client = client
        self.stream = stream
        self.count = count
        self.plan = plan
        self.stats = stats
        self.window = window
        self._wanted = wanted  # callable: items this stream still has to deliver
        self.rng = random.Random(f"gbif-dl:{plan.options.seed_value}:{stream.name}")
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
        random.Random(f"{self.plan.options.seed_value}:{keys[:1]}:{len(keys)}").shuffle(results)

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
            found = _items_of(record, self.stream, self.plan, self.stats)
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


def search_records(
    queries: Mapping[str, Any],
    options: SamplingOptions,
    *,
    api_url: str | None = None,
    concurrency: int | None = None,
    client: GbifClient | None = None,
    stats: SearchStats | None = None,
    verbose: bool = False,
) -> AsyncIterator[MediaRecord]:
    """Media records for an occurrence search query, balanced across streams; async.

    The arguments are checked at the call (a :class:`ConfigError` before any request); the
    records come while iterating. ``client`` is an open :class:`GbifClient` to use instead of
    creating one (with ``api_url`` and ``concurrency``), ``stats`` a :class:`SearchStats`
    filled in while iterating, ``verbose`` logs counts and quotas at INFO.

    Example:
        >>> async def urls(api_url: str) -> list[str]:
        ...     options = SamplingOptions(label="speciesKey", split_streams_by="speciesKey",
        ...                               nb_samples=-1)
        ...     items = search_records({"speciesKey": [1, 2]}, options, api_url=api_url)
        ...     return [item["url"] async for item in items]
    """
    plan = check_arguments(queries, options)
    return _generate(
        plan,
        client=client,
        api_url=api_url,
        concurrency=concurrency,
        stats=stats if stats is not None else SearchStats(),
        log_level=logging.INFO if verbose else logging.DEBUG,
    )


def agenerate_urls(
    queries: Mapping[str, Any],
    label: str | None = None,
    split_streams_by: str | Sequence[str] | None = None,
    subset_streams: Any = None,
    nb_samples_per_stream: int | None = None,
    nb_samples: int | None = None,
    weighted_streams: bool = False,
    cache_requests: bool = False,
    mediatype: str = DEFAULT_MEDIATYPE,
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
    spares: float = DEFAULT_SPARES,
) -> AsyncIterator[MediaRecord]:
    """Media records for an occurrence search query, balanced across streams; async.

    The arguments are those of :func:`gbif_dl.api.generate_urls`, gathered into one
    :class:`~gbif_dl.options.SamplingOptions` for :func:`search_records`. Also: ``client`` (an
    open :class:`GbifClient` to use instead of creating one) and ``stats`` (a
    :class:`SearchStats` filled in while iterating). The arguments are checked when it is called
    (a :class:`ConfigError` is raised then, before any request); the records come while
    iterating.

    Example:
        >>> async def urls(api_url: str) -> list[str]:
        ...     items = agenerate_urls({"speciesKey": [1, 2]}, label="speciesKey",
        ...                            split_streams_by="speciesKey", nb_samples=-1,
        ...                            seed=0, api_url=api_url)
        ...     return [item["url"] async for item in items]
    """
    options = SamplingOptions.pick(locals())  # the sampling keywords, checked once
    if cache_requests:
        logger.debug("cache_requests is accepted for compatibility; GBIF responses are not cached")
    return search_records(
        queries,
        options,
        api_url=api_url,
        concurrency=concurrency,
        client=client,
        stats=stats,
        verbose=verbose,
    )


async def _generate(
    plan: CheckedSearch,
    *,
    client: GbifClient | None,
    api_url: str | None,
    concurrency: int | None,
    stats: SearchStats,
    log_level: int,
) -> AsyncIterator[MediaRecord]:
    """The body of :func:`search_records` once its arguments are checked: owns the client."""
    own_client = client is None
    if client is None:
        kwargs: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
        client = GbifClient(api_url, **kwargs)
    try:
        if own_client:
            await client.__aenter__()
        async for item in _read(client, plan, stats, log_level):
            yield item
    finally:
        if own_client:
            await client.close()


async def resolve_search(
    client: GbifClient, plan: CheckedSearch
) -> tuple[CheckedSearch, dict[str, int]]:
    """Names become taxonKey values, a split by scientificName one by taxonKey; with the names
    and the keys they resolved to.

    Example:
        >>> async def resolved(gbif: GbifClient) -> CheckedSearch:
        ...     plan = check_arguments({"scientificName": ["Apis mellifera"]}, SamplingOptions())
        ...     return (await resolve_search(gbif, plan))[0]
    """
    if "scientificName" not in plan.query:
        return plan, {}
    split = [name for name, _ in plan.streams[0].values]
    query, names = await resolve_query(client, plan.query)
    split = ["taxonKey" if name == "scientificName" else name for name in split]
    streams = plan_streams(query, split or None, plan.options.subset_streams)
    return dataclasses.replace(plan, query=query, streams=streams), names


def _balance(
    plan: CheckedSearch, counts: dict[int, int], stats: SearchStats
) -> StreamBalancer[int]:
    """Quotas per stream from the counts, noted in ``stats``."""
    options = plan.options
    # Without a total every stream gives all it has: occurrence counts are no bound on items
    # (several media per occurrence), so a stream only stops at its cap or when dry.
    limits = counts if options.nb_samples is not None else dict.fromkeys(counts, _UNBOUNDED)
    balancer = StreamBalancer(
        limits,
        options.nb_samples,
        cap=options.nb_samples_per_stream,
        weighted=options.weighted_streams,
    )
    for stream in plan.streams:
        stats.counts[stream.name] = counts[stream.index]
        quota = balancer.quotas[stream.index]
        stats.quotas[stream.name] = quota if quota < _UNBOUNDED else counts[stream.index]
    return balancer


async def _read(
    client: GbifClient, plan: CheckedSearch, stats: SearchStats, log_level: int
) -> AsyncIterator[MediaRecord]:
    """Count, balance, then read and interleave the streams of ``plan``."""
    plan = (await resolve_search(client, plan))[0]
    streams = plan.streams
    counts = await count_streams(client, streams)
    balancer = _balance(plan, counts, stats)
    logger.log(
        log_level,
        "%d stream(s), %d occurrences, quotas %s",
        len(streams),
        sum(counts.values()),
        stats.quotas,
    )
    window = max(2, min(16, math.ceil(2 * client.config.concurrency / len(streams)) + 1))
    extra = dict.fromkeys(range(len(streams)), 0)  # spares still to draw, per stream
    readers = [
        _StreamReader(
            client,
            stream,
            counts[stream.index],
            plan,
            stats,
            window=window,
            wanted=(lambda i=stream.index: balancer.remaining(i) + extra[i]),
        )
        for stream in streams
    ]
    try:
        for reader in readers:
            if balancer.quotas[reader.stream.index] > 0:
                reader.start()
        dedupe = UrlDeduper() if plan.options.dedupe else None
        mux = _Mux(readers, balancer, dedupe, stats, sampled=_samples(plan.options))
        async for item in mux.primaries():
            yield item
        async for item in mux.spares(plan.options.spares, extra):
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


def _samples(options: SamplingOptions) -> bool:
    """True when the options give streams quotas (items then carry the quota keys)."""
    return options.nb_samples is not None or options.nb_samples_per_stream is not None


class _Mux:
    """Interleave streams in an order fixed by the data and the seed, never by timing; then
    the spares (:mod:`gbif_dl.sampling.spares`): each stream's next candidates, round-robin."""

    def __init__(
        self,
        readers: list[_StreamReader],
        balancer: StreamBalancer[int],
        dedupe: UrlDeduper | None,
        stats: SearchStats,
        *,
        sampled: bool,
    ) -> None:
        self.readers = readers
        self.balancer = balancer
        self.dedupe = dedupe
        self.stats = stats
        self.sampled = sampled
        self.slots: dict[int, MediaRecord] = {}  # the next new item of a stream, if peeked

    async def _next_new(self, i: int) -> MediaRecord | None:
        """Stream i's next item whose URL is new, or None when it has no more."""
        while True:
            item = await self.readers[i].next()
            if item is None:
                return None
            if self.dedupe is not None and self.dedupe.seen(item["url"]):
                self.stats.duplicate_urls += 1
                continue
            return item

    async def peek(self, i: int) -> bool:
        """Fill stream i's slot with its next new item; False (and mark dry) if it has none."""
        if i in self.slots:
            return True
        item = await self._next_new(i)
        if item is None:
            self.balancer.exhausted(i)
            return False
        self.slots[i] = item
        return True

    def _tagged(self, i: int, item: MediaRecord, *, spare: bool = False) -> MediaRecord:
        if self.sampled:
            quota = self.balancer.quotas[i]
            name = self.readers[i].stream.name
            tag(item, name, quota, spare=spare, balanced=self.balancer.balanced_max)
        return item

    async def primaries(self) -> AsyncIterator[MediaRecord]:
        """The sampled items, each stream up to its quota."""
        balancer = self.balancer
        while True:
            open_streams = [
                i
                for i in range(len(self.readers))
                if i not in balancer.dry and balancer.remaining(i) > 0
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
                ready = [await self.peek(i) for i in same_level]
                if not all(ready):
                    continue  # quotas were cut to the driest stream; choose again
            elif not await self.peek(chosen):
                continue
            item = self.slots.pop(chosen)
            balancer.record(chosen)
            yield self._tagged(chosen, item)

    async def spares(self, share: float, extra: dict[int, int]) -> AsyncIterator[MediaRecord]:
        """Up to :func:`spares_for` more items per stream (``spare: True``), round-robin; only
        for sampled streams. ``extra`` (read by the readers) lets them fetch pages for them."""
        if not self.sampled:
            return
        balancer = self.balancer
        wanted = {i: spares_for(balancer.quotas[i], share) for i in range(len(self.readers))}
        open_streams = [i for i in wanted if wanted[i] and i not in balancer.dry]
        for i in open_streams:
            extra[i] = wanted[i]
        while open_streams:
            still_open = []
            for i in open_streams:
                item = self.slots.pop(i) if i in self.slots else await self._next_new(i)
                extra[i] -= 1
                if item is None:
                    extra[i] = 0
                    continue
                yield self._tagged(i, item, spare=True)
                if extra[i] > 0:
                    still_open.append(i)
            open_streams = still_open

"""The occurrence search source behind :func:`gbif_dl.api.generate_urls`.

A query is split into *streams* (one per combination of the values of ``split_streams_by``).
The data flow, all lazy and asynchronous:

1. **Counts.** Occurrence counts per stream come from facet requests (one request per
   combination of the other split fields), falling back to a count request only for fields GBIF
   cannot facet exactly (``taxonKey``, ranges, names). (:mod:`.streams`; names are resolved
   to ``taxonKey`` first by :mod:`.names`.)
2. **Quotas.** :class:`~gbif_dl.sampling.balance.StreamBalancer` turns counts into quotas
   (balanced, weighted, capped, ``-1``); a stream that runs dry hands its quota on.
3. **Slices.** A stream with more than 10,000 records is partitioned into slices below 10,000
   (:mod:`.partition`, ``docs/partitioning.md``), so that no request pages past offset 10,000
   and every record is reachable exactly once.
4. **Pages.** Each stream's pages (slice, offset) are shuffled with the seed and fetched in that
   order, a few ahead, only as many as its quota needs; records within a page are shuffled too
   (:mod:`.reader`).
5. **Items.** Media of the requested type(s) with an http(s) identifier, licence-filtered, one
   per occurrence (chosen with the seed) or all; duplicates by occurrence key and by URL dropped.
6. **Mux.** Streams are interleaved in a fixed order that depends only on the data and the
   seed, never on network timing, so the same query and seed give the same items in the same
   order.

Example:
    >>> async def first(api_url: str) -> list[str]:
    ...     items = agenerate_urls({"speciesKey": [5352251]}, label="speciesKey",
    ...                            nb_samples=10, seed=1, api_url=api_url)
    ...     return [item["url"] async for item in items]
"""

from __future__ import annotations

from gbif_dl.sources.search.names import resolve_names, resolve_query, resolve_query_names
from gbif_dl.sources.search.partition import MAX_SLICE, Slice, partition
from gbif_dl.sources.search.reader import (
    CheckedSearch,
    SearchStats,
    agenerate_urls,
    check_arguments,
    resolve_search,
    search_records,
)
from gbif_dl.sources.search.streams import (
    Query,
    Stream,
    count_streams,
    media_types_of,
    plan_streams,
)

__all__ = [
    "MAX_SLICE",
    "CheckedSearch",
    "Query",
    "SearchStats",
    "Slice",
    "Stream",
    "agenerate_urls",
    "check_arguments",
    "count_streams",
    "media_types_of",
    "partition",
    "plan_streams",
    "resolve_names",
    "resolve_query",
    "resolve_query_names",
    "resolve_search",
    "search_records",
]

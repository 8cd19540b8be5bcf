"""Records from GBIF's occurrence search API; compatible with ``gbif_dl.api`` of gbif-dl 0.1.

The base URL comes from ``api_url=`` or the ``GBIF_API_URL`` environment variable (default
``https://api.gbif.org/v1``). Query parameter names are checked before any request: GBIF silently
ignores unknown names, so a typo would otherwise return unfiltered results.

Example:
    >>> import gbif_dl
    >>> gbif_dl.api.gbif_count(taxonKey=212)  # doctest: +SKIP
    52816303
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from gbif_dl._aio import iterate_sync, run_sync
from gbif_dl.gbif.client import GbifClient
from gbif_dl.gbif.params import validate_query
from gbif_dl.options import SamplingOptions
from gbif_dl.records import MediaRecord
from gbif_dl.sampling.filters import DEFAULT_MEDIATYPE
from gbif_dl.sampling.spares import DEFAULT_SPARES, SampledItems
from gbif_dl.sources.search import agenerate_urls, media_types_of, search_records

__all__ = ["agenerate_urls", "gbif_count", "generate_urls"]


def gbif_count(
    mediatype: str | None = DEFAULT_MEDIATYPE, api_url: str | None = None, **query: Any
) -> int:
    """Count the occurrences matching ``query`` that have media of type ``mediatype``.

    ``mediatype=None`` counts occurrences with or without media. Other keyword arguments are
    GBIF occurrence search parameters (``taxonKey=212``, ``country=["US", "CA"]``,
    ``year=(2000, None)``); ``mediaType=`` among them (GBIF's own spelling, a list for several
    types) is the media type, and only a different ``mediatype=`` given too is refused.

    Raises:
        ConfigError: an unknown parameter name (with a suggestion) or bad value, two different
            media types, before any request.
        GbifApiError: GBIF answered with an error.

    Example:
        >>> gbif_count(speciesKey=5352251, country="FR")  # doctest: +SKIP
        1234
        >>> gbif_count(speciesKey=5352251, mediaType="Sound")  # doctest: +SKIP
        12
    """
    rest, mediatypes = media_types_of(query, mediatype)
    counted = {**rest, "mediaType": list(mediatypes)} if mediatypes else rest
    validate_query(counted)  # a ConfigError now, before the event loop and any request

    async def count() -> int:
        async with GbifClient(api_url) as client:
            return await client.count(counted)

    return run_sync(count())


def generate_urls(
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
    spares: float = DEFAULT_SPARES,
) -> Iterator[MediaRecord]:
    """Media records (``url``, ``basename``, ``label``, ``subset``, licence...) for a query.

    Compatible with gbif-dl 0.1 (same positional order): ``queries`` is a dict of occurrence
    search parameters (a list value means OR), whose ``mediaType`` (GBIF's spelling; a list for
    several types) is the media type, else ``mediatype`` (default ``"StillImage"``; a different
    ``mediatype=`` given as well is refused); ``label`` a record field whose value (as a
    string) becomes the label (records without it are skipped; ``None`` gives the whole record);
    ``split_streams_by`` the query keys whose value combinations form streams;
    ``nb_samples`` the exact total (``-1``: the largest balanced total); ``nb_samples_per_stream``
    a cap per stream; ``weighted_streams`` shares proportional to the stream counts;
    ``subset_streams`` maps subset names to stream values (``"*"`` for the rest).
    ``cache_requests`` is accepted and ignored; ``verbose`` logs counts and quotas at INFO.

    New: ``seed`` (same query and seed, same items in the same order; ``None`` = seed 0),
    ``licenses`` (allow-list of licences, e.g. ``["CC0_1_0", "CC_BY_4_0"]``) with
    ``keep_unknown_licenses``, ``dedupe`` (drop repeated URLs, on by default), ``api_url``,
    ``concurrency`` (GBIF API requests in flight), ``spares`` (with a quota, each stream also
    yields this share of its quota, at least 2, as spare items after all the sampled ones;
    ``gbif_dl.io.download`` fetches a spare only when an item of its stream failed, so every
    stream ends with exactly its quota; 0: none; see :mod:`gbif_dl.sampling.spares`).

    Yields lazily: pages are fetched while you iterate.

    Raises:
        ConfigError: bad arguments or query (before any request), unresolvable names.
        GbifApiError: GBIF answered with an error.

    Example:
        >>> urls = generate_urls({"speciesKey": [5352251, 3190653]}, label="speciesKey",
        ...                      split_streams_by="speciesKey", nb_samples=-1)  # doctest: +SKIP
        >>> next(urls)["label"]  # doctest: +SKIP
        '5352251'
    """
    options = SamplingOptions.pick(locals())  # the sampling keywords, checked once
    del cache_requests  # accepted for compatibility; GBIF responses are not cached
    # search_records checks the arguments now (ConfigError before any request), not at next()
    records = search_records(
        queries, options, api_url=api_url, concurrency=concurrency, verbose=verbose
    )
    return SampledItems(iterate_sync(records))

"""What an occurrence search would take, without downloading it: streams, counts, quotas, cost.

:func:`plan_search` asks GBIF what the search source asks before it reads any page: the
scientific names resolved to taxon keys, one count per stream (a facet where it can), and the
quotas the balancer gives each stream. :func:`estimate_cost` turns a plan into rough request,
byte and time figures (the assumptions are the module's constants and are stated by the
command line).

The counts are GBIF *occurrence* counts for the media type. The download reads the occurrences
and skips those without a label value, without a usable media URL, with a licence outside
``licenses`` or with a URL already taken, so it takes *at most* the planned quota of a stream;
with ``nb_samples=-1`` every stream is then cut to what the driest stream really yields. A
plan's quotas are therefore upper bounds.

Example:
    >>> plan = SearchPlan(streams=[StreamPlan("all", 10, 10)], names={}, api_requests=1,
    ...                   mediatype="StillImage")
    >>> plan.total_quota, estimate_cost(plan).image_requests
    (10, 10)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbif_dl.options import SamplingOptions

__all__ = [
    "API_PAGE_SIZE",
    "ASSUMED_API_PAGE_S",
    "ASSUMED_IMAGES_PER_S",
    "ASSUMED_IMAGE_BYTES",
    "Cost",
    "SearchPlan",
    "StreamPlan",
    "aplan_search",
    "estimate_cost",
    "observed_failure_share",
    "plan_search",
    "spares_needed",
]

#: Rough numbers behind :func:`estimate_cost` (the command line prints them with the estimate).
ASSUMED_IMAGE_BYTES = 350_000
ASSUMED_IMAGES_PER_S = 25.0
ASSUMED_API_PAGE_S = 0.5
API_PAGE_SIZE = 300


@dataclass(frozen=True)
class StreamPlan:
    """One stream of a plan: its name, its occurrence count and its quota.

    Example:
        >>> StreamPlan("speciesKey=1", count=120, quota=50).quota
        50
    """

    stream: str
    count: int
    quota: int


@dataclass(frozen=True)
class SearchPlan:
    """What :func:`plan_search` found.

    Attributes:
        streams: one :class:`StreamPlan` per stream, in stream order.
        names: scientific names of the query and the taxon keys they resolved to.
        api_requests: the requests the plan made (name matches, counts).
        mediatype: the media type counted.

    Example:
        >>> SearchPlan([StreamPlan("a", 3, 2), StreamPlan("b", 5, 2)], {}, 2, "Sound").total_count
        8
    """

    streams: list[StreamPlan]
    names: dict[str, int]
    api_requests: int
    mediatype: str

    @property
    def total_count(self) -> int:
        """Occurrences matching the query (all streams)."""
        return sum(s.count for s in self.streams)

    @property
    def total_quota(self) -> int:
        """The most records the download takes (all streams)."""
        return sum(s.quota for s in self.streams)


@dataclass(frozen=True)
class Cost:
    """Rough cost of a plan's download (see the module's ``ASSUMED_*`` constants).

    Attributes:
        api_requests: search pages and counts.
        image_requests: one per record (more when every media of an occurrence is taken).
        image_bytes: the size assumed per image.
        total_bytes: ``image_requests * image_bytes``.
        seconds: the time assumed for all of it.
        lower_bound: True when the image figures are lower bounds (all media per occurrence).

    Example:
        >>> Cost(1, 2, 3, 6, 1.0, False).total_bytes
        6
    """

    api_requests: int
    image_requests: int
    image_bytes: int
    total_bytes: int
    seconds: float
    lower_bound: bool


async def aplan_search(
    queries: Mapping[str, Any], options: SamplingOptions, *, api_url: str | None = None
) -> SearchPlan:
    """The async form of :func:`plan_search`.

    Example:
        >>> plan = await aplan_search({"speciesKey": [1]}, SamplingOptions())  # doctest: +SKIP
    """
    from gbif_dl.gbif.client import GbifClient
    from gbif_dl.sampling.balance import StreamBalancer
    from gbif_dl.sources import search

    checked = search.check_arguments(queries, options)
    async with GbifClient(api_url) as client:
        checked, names = await search.resolve_search(client, checked)
        counts = await search.count_streams(client, checked.streams)
    requests = len(names) + len(checked.streams)  # name matches; one count or facet a stream
    streams = checked.streams
    balancer = StreamBalancer(
        counts,
        options.nb_samples,
        cap=options.nb_samples_per_stream,
        weighted=options.weighted_streams,
    )
    rows = [StreamPlan(s.name, counts[s.index], balancer.quotas[s.index]) for s in streams]
    return SearchPlan(rows, names, requests, ", ".join(checked.mediatypes))


def plan_search(
    queries: Mapping[str, Any], options: SamplingOptions, *, api_url: str | None = None
) -> SearchPlan:
    """Streams, their occurrence counts and their quotas for an occurrence search; no download.

    The same streams, counts and balancing rule as :func:`gbif_dl.api.generate_urls` with the
    same arguments, before it reads any page: each quota is the most that stream gives (see the
    module's note on why the download can take fewer).

    Raises:
        ConfigError: bad arguments, or scientific names that do not resolve.
        GbifError: GBIF failed.

    Example:
        >>> from gbif_dl.options import SamplingOptions
        >>> opts = SamplingOptions(split_streams_by="speciesKey", nb_samples=-1)
        >>> plan = plan_search({"speciesKey": [1, 2]}, opts)  # doctest: +SKIP
        >>> [s.quota for s in plan.streams]  # doctest: +SKIP
        [270, 270]
    """
    from gbif_dl._aio import run_sync

    return run_sync(aplan_search(queries, options, api_url=api_url))


def estimate_cost(
    plan: SearchPlan, *, max_size: int | None = None, one_media_per_occurrence: bool = True
) -> Cost:
    """Rough requests, bytes and time of downloading ``plan`` (the ``ASSUMED_*`` constants).

    Example:
        >>> plan = SearchPlan([StreamPlan("all", 600, 600)], {}, 1, "StillImage")
        >>> cost = estimate_cost(plan, max_size=256)
        >>> cost.api_requests, cost.image_requests, cost.image_bytes
        (3, 600, 16384)
    """
    images = plan.total_quota
    pages = plan.api_requests + sum(
        math.ceil(s.quota / API_PAGE_SIZE) for s in plan.streams if s.quota
    )
    image_bytes = ASSUMED_IMAGE_BYTES
    if max_size:
        image_bytes = min(image_bytes, int(max_size**2 * 0.25))
    seconds = images / ASSUMED_IMAGES_PER_S + pages * ASSUMED_API_PAGE_S
    return Cost(
        api_requests=pages,
        image_requests=images,
        image_bytes=image_bytes,
        total_bytes=images * image_bytes,
        seconds=seconds,
        lower_bound=not one_media_per_occurrence,
    )


def observed_failure_share(root: str | os.PathLike[str]) -> float | None:
    """The share of permanent failures (404, not an image, ...) among the items fetched into
    ``root`` (its ``manifest.parquet``), or None when there is no manifest or nothing fetched.

    Example:
        >>> import tempfile
        >>> observed_failure_share(tempfile.mkdtemp()) is None
        True
    """
    from gbif_dl.fetch.result import Reason, is_permanent
    from gbif_dl.manifest import FAILED, MANIFEST_NAME, SUCCESS, iter_manifest

    path = Path(os.fspath(root)) / MANIFEST_NAME
    if not path.is_file():
        return None
    fetched = permanent = 0
    for table in iter_manifest(path, ("status", "reason", "http_status")):
        for status, reason, http in zip(
            *(table[name].to_pylist() for name in ("status", "reason", "http_status")),
            strict=True,
        ):
            if status == SUCCESS:
                fetched += 1
            elif status == FAILED:
                fetched += 1
                try:
                    permanent += is_permanent(Reason(reason), http)
                except ValueError:  # a reason this version does not know
                    continue
    return permanent / fetched if fetched else None


def spares_needed(plan: SearchPlan, failure_share: float) -> dict[str, int]:
    """Per stream of ``plan``: the spares a download will likely use, ``ceil(share * quota)``
    for the permanent failure share seen so far (:func:`observed_failure_share`).

    Example:
        >>> plan = SearchPlan([StreamPlan("a", 500, 100), StreamPlan("b", 50, 0)], {}, 1, "x")
        >>> spares_needed(plan, 0.05)
        {'a': 5, 'b': 0}
    """
    return {s.stream: math.ceil(failure_share * s.quota - 1e-9) for s in plan.streams}

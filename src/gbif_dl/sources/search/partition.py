"""Partitioning a stream past GBIF's paging limit into slices that can all be paged.

GBIF throttles search offsets at or above 10,000 (and refuses ``offset + limit`` beyond
100,000), so a stream with more records is split into *slices* of at most :data:`MAX_SLICE`
records whose union is the stream, each read by paging. See ``docs/partitioning.md``.

Example:
    >>> Slice({"speciesKey": ["1"]}, 25_000).reachable
    10000
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gbif_dl.gbif.client import GbifClient
from gbif_dl.sources.search.streams import Query

__all__ = ["MAX_SLICE", "Slice", "partition"]

logger = logging.getLogger(__name__)

#: Largest slice read by paging: GBIF throttles offsets >= 10,000 (and refuses offset+limit
#: > 100,000), so every slice stays at or below 10,000 records.
MAX_SLICE = 10_000

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

"""gbif_dl.estimate: the plan uses the search source's own streams, counts and quotas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gbif_dl.estimate import SearchPlan, StreamPlan, estimate_cost, plan_search
from gbif_dl.options import SamplingOptions
from gbif_dl.sources import search
from gbif_dl.testing import Simulation


@pytest.fixture(scope="module")
def simu() -> Iterator[Simulation]:
    """1,200 occurrences of 4 species on one clean host."""
    with Simulation(seed=8, size=1200, n_hosts=1, n_species=4) as simulation:
        yield simulation


def _source_run(simu: Simulation, queries: dict[str, Any], options: SamplingOptions) -> tuple:
    stats = search.SearchStats()

    async def run() -> list[Any]:
        items = search.agenerate_urls(
            queries, **options.as_kwargs(), api_url=simu.api_url, stats=stats
        )
        return [item async for item in items]

    return asyncio.run(run()), stats


@pytest.mark.parametrize(
    "options",
    [
        SamplingOptions(label="speciesKey", split_streams_by="speciesKey", nb_samples=-1),
        SamplingOptions(split_streams_by="speciesKey", nb_samples=90, weighted_streams=True),
        SamplingOptions(split_streams_by="speciesKey", nb_samples=60, nb_samples_per_stream=10),
    ],
)
def test_plan_counts_and_quotas_are_the_sources(simu: Simulation, options: SamplingOptions) -> None:
    """Same streams, counts and quotas as the source computes; it never takes more."""
    queries = {"speciesKey": [s["key"] for s in simu.population.species[:4]]}
    plan = plan_search(queries, options, api_url=simu.api_url)
    items, stats = _source_run(simu, queries, options)
    assert {s.stream: s.count for s in plan.streams} == stats.counts
    assert {s.stream: s.quota for s in plan.streams} == stats.quotas
    assert len([i for i in items if not i.get("spare")]) <= plan.total_quota  # spares follow
    assert plan.mediatype == "StillImage"


def test_scientific_names_are_resolved_and_shown(simu: Simulation) -> None:
    """Names become taxon keys, as the source does; the plan says which."""
    species = simu.population.species[:2]
    queries = {"scientificName": [s["scientificName"] for s in species]}
    plan = plan_search(
        queries, SamplingOptions(split_streams_by="scientificName"), api_url=simu.api_url
    )
    assert plan.names == {s["scientificName"]: s["key"] for s in species}
    assert [s.stream for s in plan.streams] == [f"taxonKey={s['key']}" for s in species]
    assert plan.api_requests == 4


def test_cost_of_a_plan() -> None:
    """Pages per stream quota, bytes from the resize, '+' when every media is taken."""
    plan = SearchPlan([StreamPlan("a", 1000, 301), StreamPlan("b", 5, 0)], {}, 2, "StillImage")
    cost = estimate_cost(plan, max_size=100, one_media_per_occurrence=False)
    assert (cost.api_requests, cost.image_requests, cost.image_bytes) == (4, 301, 2500)
    assert cost.total_bytes == 301 * 2500 and cost.lower_bound
    assert cost.seconds == pytest.approx(301 / 25 + 4 * 0.5)

"""The occurrence search source (``gbif_dl.api.generate_urls``) against the GBIF simulator.

Expected values are computed independently from the simulator's population (which records
match, which carry a usable still image), never from the code under test.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import gbif_dl
from gbif_dl.errors import ConfigError
from gbif_dl.gbif.client import GbifClient
from gbif_dl.options import SamplingOptions
from gbif_dl.records import url_basename
from gbif_dl.sampling.balance import allocate
from gbif_dl.sampling.filters import DEFAULT_MEDIATYPE, media_items
from gbif_dl.sources.search import (
    SearchStats,
    agenerate_urls,
    check_arguments,
    partition,
    search_records,
)
from gbif_dl.testing import GbifSimulator, Population


def _usable(pop: Population, query: dict[str, Any]) -> list[int]:
    """Indices of records matching ``query`` + StillImage that carry a usable still image."""
    return [
        int(i)
        for i in pop.select({**query, "mediaType": "StillImage"})
        if media_items(pop.record(int(i)))
    ]


def _search_params(sim: GbifSimulator) -> list[dict[str, list[str]]]:
    return [
        parse_qs(urlsplit(path).query)
        for _, _, path in sim.requests
        if urlsplit(path).path.endswith("/occurrence/search")
    ]


@pytest.fixture(scope="module")
def readme() -> Iterator[tuple[Population, GbifSimulator]]:
    """The README's setting: 3 species x 2 datasets."""
    pop = Population(seed=11, size=12_000, n_species=3, n_datasets=2)
    with GbifSimulator(pop) as sim:
        yield pop, sim


def _sample(items: Any) -> list[Any]:
    """The sampled items: without the spares that follow them (issue 18)."""
    return [item for item in items if not item.get("spare")]


def _readme_query(pop: Population) -> dict[str, Any]:
    return {"speciesKey": [s["key"] for s in pop.species], "datasetKey": pop.dataset_keys}


def test_readme_balanced_example(readme: tuple[Population, GbifSimulator]) -> None:
    """nb_samples=-1 over 3 species x 2 datasets: every stream gives the same number of items,
    the smallest number of usable items any stream has (so exactly min x 6 in total)."""
    pop, sim = readme
    sim.reset_stats()
    items = _sample(
        gbif_dl.api.generate_urls(
            queries=_readme_query(pop),
            label="speciesKey",
            nb_samples=-1,
            split_streams_by=["datasetKey", "speciesKey"],
            dedupe=False,
            api_url=sim.api_url,
        )
    )
    available = {
        (d, str(s["key"])): len(_usable(pop, {"speciesKey": s["key"], "datasetKey": d}))
        for d in pop.dataset_keys
        for s in pop.species
    }
    per_stream = Counter((item["datasetKey"], item["label"]) for item in items)
    assert set(per_stream) == set(available)
    assert set(per_stream.values()) == {min(available.values())}
    assert len(items) == min(available.values()) * 6
    assert all(item["basename"] == url_basename(item["url"]) for item in items)
    assert {"url", "basename", "label", "subset", "publisher", "license", "rightsHolder"} <= set(
        items[0]
    )
    # counts came from facets: one facet request per dataset, no count request per stream
    params = _search_params(sim)
    assert sum("facet" in p for p in params) == 2
    assert not [p for p in params if p.get("limit") == ["0"] and "facet" not in p]


def test_readme_balanced_example_with_url_dedupe(readme: tuple[Population, GbifSimulator]) -> None:
    """With URL dedupe (the default) streams stay exactly balanced and no URL repeats."""
    pop, sim = readme
    items = _sample(
        gbif_dl.api.generate_urls(
            _readme_query(pop),
            label="speciesKey",
            nb_samples=-1,
            split_streams_by=["datasetKey", "speciesKey"],
            api_url=sim.api_url,
        )
    )
    per_stream = Counter((item["datasetKey"], item["label"]) for item in items)
    assert len(per_stream) == 6 and len(set(per_stream.values())) == 1
    assert len({item["url"] for item in items}) == len(items)


def test_readme_weighted_example() -> None:
    """nb_samples=1000, cap 800, weighted: exactly 1000, none above 800, each stream within one
    item of its proportional quota after capping."""
    pop = Population(seed=12, size=20_000, n_species=3, species_weights=[0.9, 0.07, 0.03])
    keys = [s["key"] for s in pop.species]
    with GbifSimulator(pop) as sim:
        items = _sample(
            gbif_dl.api.generate_urls(
                {"speciesKey": keys},
                label="speciesKey",
                nb_samples=1000,
                nb_samples_per_stream=800,
                weighted_streams=True,
                split_streams_by=["speciesKey"],
                api_url=sim.api_url,
            )
        )
    counts = {str(k): len(pop.select({"speciesKey": k, "mediaType": "StillImage"})) for k in keys}
    expected = allocate(counts, 1000, cap=800, weighted=True)
    got = Counter(item["label"] for item in items)
    assert len(items) == 1000
    assert max(got.values()) <= 800
    assert got[str(keys[0])] == 800  # the cap binds on the dominant species
    assert all(abs(got[k] - expected[k]) <= 1 for k in expected), (got, expected)


def test_dry_stream_hands_its_quota_on() -> None:
    """A stream with fewer usable items than its share gives all it has; the others make up
    the difference, so the total is exact."""
    pop = Population(seed=13, size=8_000, n_species=3, species_weights=[0.6, 0.38, 0.02])
    keys = [s["key"] for s in pop.species]
    small = len(_usable(pop, {"speciesKey": keys[2]}))
    total = 3 * small + 600
    with GbifSimulator(pop) as sim:
        items = _sample(
            gbif_dl.api.generate_urls(
                {"speciesKey": keys},
                label="speciesKey",
                split_streams_by="speciesKey",
                nb_samples=total,
                dedupe=False,
                api_url=sim.api_url,
            )
        )
    got = Counter(item["label"] for item in items)
    assert len(items) == total
    assert got[str(keys[2])] == small
    assert abs(got[str(keys[0])] - got[str(keys[1])]) <= 1


def _run(sim: GbifSimulator, seed: int, **kwargs: Any) -> list[str]:
    return [
        item["url"]
        for item in gbif_dl.api.generate_urls(
            {"speciesKey": [s["key"] for s in sim.population.species]},
            label="speciesKey",
            split_streams_by="speciesKey",
            seed=seed,
            api_url=sim.api_url,
            concurrency=4,
            **kwargs,
        )
    ]


def test_same_seed_same_items_in_same_order() -> None:
    """Same query and seed: identical output; another seed: another subsample."""
    pop = Population(seed=14, size=15_000, n_species=2)
    with GbifSimulator(pop, latency_s=0.002) as sim:
        first = _run(sim, 5, nb_samples=400, spares=0)  # the sample (spares: test_spares.py)
        again = _run(sim, 5, nb_samples=400, spares=0)
        other = _run(sim, 6, nb_samples=400, spares=0)
    assert len(first) == 400
    assert first == again
    assert len(set(first) & set(other)) < 200


def test_search_records_takes_one_sampling_options() -> None:
    """search_records(queries, SamplingOptions) is what generate_urls runs: the same items in
    the same order; its arguments are checked at the call."""
    pop = Population(seed=14, size=3_000, n_species=2)
    keys = [s["key"] for s in pop.species]
    options = SamplingOptions(
        label="speciesKey", split_streams_by="speciesKey", nb_samples=60, seed=3
    )
    with GbifSimulator(pop) as sim:
        expected = _run(sim, 3, nb_samples=60)

        async def read() -> list[str]:
            records = search_records(
                {"speciesKey": keys}, options, api_url=sim.api_url, concurrency=4
            )
            return [item["url"] async for item in records if not item.get("spare")]

        assert asyncio.run(read()) == expected  # the sample; its spares follow it
        with pytest.raises(ConfigError, match="split_streams_by"):
            search_records({"year": 2001}, options, api_url=sim.api_url)
    unset = options.replace(mediatype=DEFAULT_MEDIATYPE)  # mediatype not given: the query's
    plan = check_arguments({"speciesKey": keys, "media_type": "Sound"}, unset)
    assert plan.mediatypes == ("Sound",) and plan.query["mediaType"] == ["Sound"]
    assert [s.name for s in plan.streams] == [f"speciesKey={k}" for k in keys]


def test_small_quota_is_drawn_from_the_whole_stream() -> None:
    """A quota much smaller than its stream is spread over the stream (not its first pages),
    and only the pages needed are fetched."""
    pop = Population(seed=15, size=9_000, n_species=1)
    with GbifSimulator(pop) as sim:
        stats = SearchStats()

        async def collect() -> list[dict[str, Any]]:
            return [
                item
                async for item in agenerate_urls(
                    {"speciesKey": pop.species[0]["key"]},
                    label="speciesKey",
                    nb_samples=60,
                    seed=3,
                    spares=0,  # the pages of the sample itself (spares read further)
                    api_url=sim.api_url,
                    stats=stats,
                )
            ]

        items = asyncio.run(collect())
        pages = sim.stats().pages
    stream = [
        int(i) for i in pop.select({"speciesKey": pop.species[0]["key"], "mediaType": "StillImage"})
    ]
    position = {pop.key_of(i): p for p, i in enumerate(stream)}
    where = sorted(position[int(item["gbifID"])] for item in items)
    assert len(items) == 60
    assert where[-1] - where[0] > len(stream) // 2
    fetched = sum(limit for _, limit in pages)
    assert fetched <= 6 * 60  # a handful of small pages, not the 8,000-record stream


def test_partition_covers_every_record_once() -> None:
    """Slices below the limit cover the query exactly: records lacking the facet fields (no
    year, no coordinates) included; no record in two slices."""
    pop = Population(seed=16, size=12_000, n_species=1, n_datasets=1)
    query = {"speciesKey": [str(pop.species[0]["key"])], "mediaType": ["StillImage"]}
    with GbifSimulator(pop) as sim:

        async def slices() -> list[Any]:
            async with GbifClient(sim.api_url) as client:
                return await partition(client, query, limit=700)

        parts = asyncio.run(slices())
    assert all(part.count <= 700 for part in parts)
    covered = Counter(int(i) for part in parts for i in pop.select(part.query))
    wanted = {int(i) for i in pop.select(query)}
    assert set(covered) == wanted
    assert max(covered.values()) == 1
    assert any(pop.year[i] == 0 for i in wanted)  # the population does have records without year


def test_label_field_missing_is_skipped_and_none_gives_the_record() -> None:
    """label='speciesKey' skips records without one; label=None yields the record as label."""
    pop = Population(seed=17, size=3_000, n_species=2)
    genus = pop.species[0]["genusKey"]
    with GbifSimulator(pop) as sim:
        stats = SearchStats()

        async def collect(label: str | None) -> list[dict[str, Any]]:
            return [
                item
                async for item in agenerate_urls(
                    {"genusKey": genus}, label=label, api_url=sim.api_url, stats=stats
                )
            ]

        labelled = asyncio.run(collect("speciesKey"))
        skipped = stats.no_label
        whole = asyncio.run(collect(None))
    assert skipped > 0
    assert all(item["label"].isdigit() for item in labelled)
    assert all(isinstance(item["label"], dict) and "key" in item["label"] for item in whole)
    assert len(whole) > len(labelled)


def test_media_type_checked_client_side_and_all_media() -> None:
    """Only StillImage media with an http(s) identifier; one_media_per_occurrence=False gives
    every such medium."""
    pop = Population(seed=18, size=2_000, n_species=1)
    with GbifSimulator(pop) as sim:
        items = list(
            gbif_dl.api.generate_urls(
                {"speciesKey": pop.species[0]["key"]},
                label="speciesKey",
                one_media_per_occurrence=False,
                dedupe=False,
                api_url=sim.api_url,
            )
        )
    expected = sum(
        len(media_items(pop.record(i)))
        for i in pop.select({"speciesKey": pop.species[0]["key"], "mediaType": "StillImage"})
    )
    assert len(items) == expected
    assert not any(item["url"].endswith((".mp3", ".mp4", "manifest.json")) for item in items)
    assert len({item["gbifID"] for item in items}) < len(items)


# --- mediaType in the query (issue 22) -----------------------------------------------------------


@pytest.fixture(scope="module")
def sounds() -> Iterator[tuple[Population, GbifSimulator]]:
    pop = Population(seed=18, size=2_000, n_species=1)
    with GbifSimulator(pop) as sim:
        yield pop, sim


def _every_medium(sim: GbifSimulator, queries: dict[str, Any], **kwargs: Any) -> list[Any]:
    return list(
        gbif_dl.api.generate_urls(
            queries,
            label="speciesKey",
            one_media_per_occurrence=False,
            dedupe=False,
            api_url=sim.api_url,
            **kwargs,
        )
    )


def _expected_urls(pop: Population, kinds: list[str]) -> list[str]:
    """URLs of every usable medium of ``kinds`` of the records GBIF matches, record by record."""
    query = {"speciesKey": pop.species[0]["key"], "mediaType": kinds}
    urls = []
    for i in pop.select(query):
        record = pop.record(int(i))
        wanted = {id(m) for kind in kinds for m in media_items(record, kind)}
        urls += [m["identifier"] for m in record["media"] if id(m) in wanted]
    return urls


@pytest.mark.parametrize("name", ["mediaType", "mediatype", "MEDIA_TYPE", "media_type"])
def test_media_type_in_the_query_is_the_media_type(
    sounds: tuple[Population, GbifSimulator], name: str
) -> None:
    """GBIF's own ``mediaType`` parameter in the query, in any casing GBIF accepts, selects the
    media type (it used to be refused in favour of mediatype=); GBIF is asked for that type."""
    pop, sim = sounds
    sim.reset_stats()
    items = _every_medium(sim, {"speciesKey": pop.species[0]["key"], name: "sound"})
    expected = _expected_urls(pop, ["Sound"])
    assert expected and sorted(item["url"] for item in items) == sorted(expected)
    params = _search_params(sim)
    assert params and all(p["mediaType"] == ["Sound"] for p in params)


def test_several_media_types_in_the_query(sounds: tuple[Population, GbifSimulator]) -> None:
    """A list of media types is any of them, as for GBIF: both kinds of media are kept."""
    pop, sim = sounds
    items = _every_medium(
        sim, {"speciesKey": pop.species[0]["key"], "mediaType": ["Sound", "StillImage"]}
    )
    expected = _expected_urls(pop, ["Sound", "StillImage"])
    assert sorted(item["url"] for item in items) == sorted(expected)
    assert any(url.endswith(".mp3") for url in expected)
    assert len(expected) > len(_expected_urls(pop, ["StillImage"]))


def test_media_type_given_twice_conflicts_only_when_different(
    sounds: tuple[Population, GbifSimulator],
) -> None:
    """An explicit mediatype= that differs from the query's mediaType is refused before any
    request; one that agrees is fine, and so is the default."""
    pop, sim = sounds
    query = {"speciesKey": pop.species[0]["key"], "mediaType": "Sound"}
    sim.reset_stats()
    with pytest.raises(ConfigError, match="media type once"):
        gbif_dl.api.generate_urls(query, mediatype="StillImage", api_url=sim.api_url)
    with pytest.raises(ConfigError, match="media type once"):
        gbif_dl.api.agenerate_urls(query, None, None, None, None, None, False, False, "MovingImage")
    with pytest.raises(ConfigError, match="same parameter"):
        gbif_dl.api.generate_urls({"mediaType": "Sound", "media_type": "Sound"})
    assert sim.stats().total_requests == 0
    agreeing = _every_medium(sim, query, mediatype="sound")
    assert sorted(item["url"] for item in agreeing) == sorted(_expected_urls(pop, ["Sound"]))


def test_gbif_count_takes_the_media_type_from_the_query(
    sounds: tuple[Population, GbifSimulator],
) -> None:
    pop, sim = sounds
    key = pop.species[0]["key"]
    sound = len(pop.select({"speciesKey": key, "mediaType": "Sound"}))
    assert 0 < sound < len(pop.select({"speciesKey": key}))
    assert gbif_dl.api.gbif_count(api_url=sim.api_url, speciesKey=key, mediaType="Sound") == sound
    either = len(pop.select({"speciesKey": key, "mediaType": ["Sound", "MovingImage"]}))
    assert (
        gbif_dl.api.gbif_count(
            api_url=sim.api_url, speciesKey=key, MEDIATYPE=["sound", "MovingImage"]
        )
        == either
    )
    assert gbif_dl.api.gbif_count("Sound", sim.api_url, speciesKey=key, mediaType="Sound") == sound
    with pytest.raises(ConfigError, match="media type once"):
        gbif_dl.api.gbif_count("StillImage", sim.api_url, speciesKey=key, mediaType="Sound")


def test_licence_filter_and_subsets() -> None:
    """licenses= keeps only allowed licences; subset_streams maps streams, '*' the rest."""
    pop = Population(seed=19, size=3_000, n_species=3)
    keys = [s["key"] for s in pop.species]
    with GbifSimulator(pop) as sim:
        items = list(
            gbif_dl.api.generate_urls(
                {"speciesKey": keys},
                label="speciesKey",
                split_streams_by="speciesKey",
                subset_streams={"train": {"speciesKey": keys[:2]}, "test": {"speciesKey": "*"}},
                licenses=["CC0_1_0", "cc-by 4.0"],
                api_url=sim.api_url,
            )
        )
    assert items
    assert {item["license_code"] for item in items} <= {"CC0_1_0", "CC_BY_4_0"}
    subsets = {item["label"]: item["subset"] for item in items}
    assert subsets == {str(keys[0]): "train", str(keys[1]): "train", str(keys[2]): "test"}


def test_scientific_names_resolve_or_fail_listing_each() -> None:
    """scientificName values resolve via species match; unmatched names are all listed."""
    pop = Population(seed=20, size=2_000, n_species=2)
    names = [s["canonicalName"] for s in pop.species]
    with GbifSimulator(pop) as sim:
        items = list(
            gbif_dl.api.generate_urls(
                {"scientificName": names},
                label="speciesKey",
                split_streams_by="scientificName",
                nb_samples=-1,
                api_url=sim.api_url,
            )
        )
        assert {item["label"] for item in items} == {str(s["key"]) for s in pop.species}
        with pytest.raises(ConfigError) as info:
            list(
                gbif_dl.api.generate_urls(
                    {"scientificName": [names[0], "Nonexistus fakeus", "Zzzz qqq"]},
                    api_url=sim.api_url,
                )
            )
    assert "'Nonexistus fakeus'" in str(info.value) and "'Zzzz qqq'" in str(info.value)


def test_bad_arguments_raise_before_any_request() -> None:
    """Errors in the arguments surface when generate_urls is called, not later."""
    with pytest.raises(ConfigError, match="split_streams_by"):
        gbif_dl.api.generate_urls({"speciesKey": [1]}, split_streams_by="datasetKey")
    with pytest.raises(ConfigError, match="publishingOrg"):
        gbif_dl.api.generate_urls({"publishingOrgKey": "x"})
    with pytest.raises(ConfigError, match="licen"):
        gbif_dl.api.generate_urls({"speciesKey": 1}, licenses=["free for all"])
    with pytest.raises(ConfigError, match="nb_samples"):
        gbif_dl.api.generate_urls({"speciesKey": 1}, nb_samples=-5)
    # the async form too: at the call, before any iteration (no event loop needed)
    with pytest.raises(ConfigError, match="split_streams_by"):
        gbif_dl.api.agenerate_urls({"speciesKey": [1]}, split_streams_by="datasetKey")


# --- one stream of 250,000 records ----------------------------------------------------------------

_SERVER = """
import json, sys
from gbif_dl.testing import GbifSimulator, Population
pop = Population(seed=21, size=int(sys.argv[1]), n_species=2, n_datasets=3,
                 species_weights=[0.999, 0.001])
with GbifSimulator(pop) as sim:
    print(json.dumps({"api_url": sim.api_url, "species": pop.species[0]["key"]}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            stats = sim.stats()
            print(json.dumps({"pages": stats.pages, "statuses": stats.statuses}), flush=True)
        else:
            break
"""


@pytest.mark.slow
def test_one_stream_of_250k_reads_completely() -> None:
    """A 250,000-record stream reads completely through partitioning: every usable occurrence
    once, no HTTP 400 from the 100,000 cap, no request with an offset of 10,000 or more.

    The simulator runs in its own process so that serving and reading use both cores."""
    size = 310_000
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        info = json.loads(server.stdout.readline())
        started = time.monotonic()
        stats = SearchStats()

        async def read_all() -> set[str]:
            keys: set[str] = set()
            async for item in agenerate_urls(
                {"speciesKey": info["species"]},
                label="speciesKey",
                dedupe=False,
                api_url=info["api_url"],
                concurrency=4,
                stats=stats,
            ):
                keys.add(item["gbifID"])
            return keys

        keys = asyncio.run(read_all())
        elapsed = time.monotonic() - started
        server.stdin.write("stats\n")
        server.stdin.flush()
        served = json.loads(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
    pop = Population(seed=21, size=size, n_species=2, n_datasets=3, species_weights=[0.999, 0.001])
    stream = pop.select({"speciesKey": info["species"], "mediaType": "StillImage"})
    usable = {str(pop.key_of(int(i))) for i in stream if media_items({"media": pop.media(int(i))})}
    assert stream.size >= 250_000
    assert stats.records == stream.size  # every record of the stream read, none twice
    assert keys == usable
    assert set(served["statuses"]) == {"200"}
    assert max(offset for offset, _ in served["pages"]) < 10_000
    print(f"read {stream.size} records in {elapsed:.1f} s, {len(served['pages'])} requests")

"""The GBIF client against the GBIF simulator, over real HTTP on loopback.

Every client call is exercised; the simulator's request log is the witness for what was sent,
when, and how often.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import pytest

from gbif_dl.api import gbif_count, generate_urls
from gbif_dl.errors import (
    ConfigError,
    DownloadNotReadyError,
    GbifApiError,
    TooManyDownloadsError,
)
from gbif_dl.fetch.retry import RetryPolicy
from gbif_dl.gbif.client import GbifClient
from gbif_dl.gbif.downloads import fetch_file
from gbif_dl.gbif.params import to_predicate
from gbif_dl.testing import GbifSimulator, MediaHosts, Population

T = TypeVar("T")

FAST_RETRY = RetryPolicy(retries=3, backoff_s=0.05, max_backoff_s=0.2, jitter_s=0.05)
USERS = {"alice": "secret"}


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(seed=0, size=2_000, n_species=12, n_datasets=4)


@pytest.fixture
def sim(population: Population) -> Iterator[GbifSimulator]:
    with GbifSimulator(population, users=USERS) as simulator:
        yield simulator


def run(sim: GbifSimulator, call: Callable[[GbifClient], Awaitable[T]], **kwargs: Any) -> T:
    """Run ``call(client)`` with a client aimed at ``sim``."""
    kwargs.setdefault("retry", FAST_RETRY)

    async def main() -> T:
        async with GbifClient(sim.api_url, **kwargs) as client:
            return await call(client)

    return asyncio.run(main())


def query_of(path_qs: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(path_qs).query, keep_blank_values=True)


def paths(sim: GbifSimulator) -> list[str]:
    return [urlsplit(path_qs).path for _, _, path_qs in sim.requests]


# --- base URL ------------------------------------------------------------------------------------


def test_gbif_api_url_env_sends_every_call_to_the_simulator(
    sim: GbifSimulator, population: Population, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With GBIF_API_URL set and no api_url argument, all calls reach the simulator."""
    monkeypatch.setenv("GBIF_API_URL", sim.api_url + "/")
    species = population.species[0]
    key = sim.add_download({"speciesKey": species["key"]})
    record_key = population.record(7)["key"]

    async def main() -> None:
        async with GbifClient(retry=FAST_RETRY) as client:
            assert client.api_url == sim.api_url
            await client.count({"mediaType": "StillImage"})
            await client.search({"speciesKey": species["key"]}, limit=5)
            await client.facet({}, "datasetKey")
            await client.facets({}, ["speciesKey", "year"])
            await client.occurrence(record_key)
            await client.download_metadata(key)
            await client.species_match(species["scientificName"])

    asyncio.run(main())
    assert gbif_count(speciesKey=species["key"]) >= 0  # the sync facade follows the variable too
    assert paths(sim) == [
        "/v1/occurrence/search",
        "/v1/occurrence/search",
        "/v1/occurrence/search",
        "/v1/occurrence/search",
        f"/v1/occurrence/{record_key}",
        f"/v1/occurrence/download/{key}",
        "/v1/species/match",
        "/v1/occurrence/search",
    ]


@pytest.mark.parametrize("form", ["root", "root/", "v1", "v1/"])
def test_the_server_root_or_the_v1_base_both_work(
    sim: GbifSimulator, population: Population, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GBIF_API_URL / api_url may be the server root (``/v1`` is added) or the ``/v1`` base."""
    base = sim.base_url if form.startswith("root") else sim.api_url
    url = base + "/" if form.endswith("/") else base
    expected = len(population.select({"mediaType": "StillImage"}))

    async def count() -> int:
        async with GbifClient(url, retry=FAST_RETRY) as client:
            assert client.api_url == sim.api_url
            return await client.count({"mediaType": "StillImage"})

    assert asyncio.run(count()) == expected
    monkeypatch.setenv("GBIF_API_URL", url)
    assert gbif_count() == expected
    assert paths(sim) == ["/v1/occurrence/search", "/v1/occurrence/search"]


def _not_gbif(api_url: str, call: Callable[[GbifClient], Awaitable[Any]]) -> GbifApiError:
    async def main() -> None:
        async with GbifClient(api_url, retry=FAST_RETRY) as client:
            await call(client)

    with pytest.raises(GbifApiError) as info:
        asyncio.run(main())
    text = str(info.value)
    assert "does not look like a GBIF API" in text and "https://api.gbif.org/v1" in text
    assert "check the key" not in text
    return info.value


def test_a_media_host_is_not_a_gbif_api() -> None:
    """A loopback server that is not GBIF (the media host: images, HTML, 404 pages) is named as
    such, with the expected form of the URL, and not retried."""
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        image = _not_gbif(base, lambda c: c.count({"speciesKey": 1}))
        assert image.status == 200 and "not JSON" in str(image)
        html = _not_gbif(base + "/html", lambda c: c.search({"speciesKey": 1}))
        assert "text/html" in str(html)
        missing = _not_gbif(base + "/status/404", lambda c: c.facet({}, "speciesKey"))
        assert missing.status == 404
        _not_gbif(base + "/status/404", lambda c: c.species_match("Apis mellifera"))
        requests = sum(s.requests for s in hosts.stats().values())
    assert requests == 4  # one each: nothing of this is worth a retry
    with MediaHosts(n_hosts=1) as hosts, pytest.raises(GbifApiError, match="not look like a GBIF"):
        list(generate_urls({"speciesKey": 1}, api_url=hosts.base_urls[0]))


def test_the_simulator_at_a_wrong_path_is_not_a_gbif_api(sim: GbifSimulator) -> None:
    """The right server at the wrong base path answers 404 HTML/text at /occurrence/search."""
    error = _not_gbif(sim.base_url + "/api", lambda c: c.count({}))
    assert error.status == 404
    assert sim.stats().total_requests == 1


def test_json_without_gbif_fields_is_not_a_gbif_api() -> None:
    """A JSON API that is not GBIF (no count/results, no matchType) is named as such too."""
    from aiohttp import web

    async def anything(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "path": request.path})

    async def main() -> list[GbifApiError]:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", anything)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        errors = []
        try:
            async with GbifClient(f"http://127.0.0.1:{port}", retry=FAST_RETRY) as client:
                for call in (client.count({}), client.species_match("Apis mellifera")):
                    try:
                        await call
                    except GbifApiError as exc:
                        errors.append(exc)
        finally:
            await runner.cleanup()
        return errors

    errors = asyncio.run(main())
    assert len(errors) == 2
    assert all("does not look like a GBIF API" in str(e) for e in errors)
    assert "count and results" in str(errors[0]) and "matchType" in str(errors[1])


# --- search, count, facets, one occurrence ------------------------------------------------------


def test_count_equals_the_population_selection(sim: GbifSimulator, population: Population) -> None:
    query = {"mediaType": "StillImage", "year": (2010, None), "hasCoordinate": True}
    expected = len(
        population.select({"mediaType": "StillImage", "year": "2010,*", "hasCoordinate": "true"})
    )
    assert run(sim, lambda c: c.count(query)) == expected
    (_, _, path_qs) = sim.requests[-1]
    assert ("limit", "0") in query_of(path_qs)


def test_search_pages_are_the_population_records(
    sim: GbifSimulator, population: Population
) -> None:
    species_key = population.species[0]["key"]
    indices = population.select({"speciesKey": str(species_key)})

    async def pages(client: GbifClient) -> list[dict[str, Any]]:
        return [
            await client.search({"species_key": species_key}, limit=20, offset=o) for o in (0, 20)
        ]

    first, second = run(sim, pages)
    assert first["count"] == second["count"] == len(indices)
    keys = [r["key"] for r in first["results"] + second["results"]]
    assert keys == [population.record(int(i))["key"] for i in indices[:40]]
    assert all(r["speciesKey"] == species_key for r in first["results"])
    assert sim.stats().pages == [(0, 20), (20, 20)]
    sent = query_of(sim.requests[0][2])
    assert ("speciesKey", str(species_key)) in sent  # canonical name on the wire


def test_limit_above_300_is_clamped_by_the_client(sim: GbifSimulator) -> None:
    page = run(sim, lambda c: c.search({"mediaType": "StillImage"}, limit=1000))
    assert page["limit"] == 300
    assert ("limit", "300") in query_of(sim.requests[0][2])


def test_facet_pages_through_all_values(sim: GbifSimulator, population: Population) -> None:
    """facet() pages facetOffset until a short page, and returns every bucket."""
    query = {"mediaType": "StillImage"}
    expected = population.facet(population.select(query), "speciesKey")
    assert len(expected) > 5
    counts = run(sim, lambda c: c.facet(query, "speciesKey", limit=5))
    assert counts == {str(k): v for k, v in expected.items()}
    offsets = [dict(query_of(p))["facetOffset"] for _, _, p in sim.requests]
    assert offsets == [str(5 * i) for i in range(len(offsets))]
    assert len(offsets) == len(expected) // 5 + 1


def test_facet_mincount(sim: GbifSimulator, population: Population) -> None:
    full = population.facet(population.select({}), "datasetKey")
    threshold = sorted(full.values())[len(full) // 2]
    counts = run(sim, lambda c: c.facet({}, "datasetKey", mincount=threshold))
    assert counts == {str(k): v for k, v in full.items() if v >= threshold}


def test_facets_several_fields_in_one_request(sim: GbifSimulator, population: Population) -> None:
    query = {"mediaType": "StillImage"}
    result = run(sim, lambda c: c.facets(query, ["speciesKey", "dataset_key"], limit=100))
    indices = population.select(query)
    assert result == {
        "speciesKey": {str(k): v for k, v in population.facet(indices, "speciesKey").items()},
        "dataset_key": {str(k): v for k, v in population.facet(indices, "datasetKey").items()},
    }
    assert sim.stats().total_requests == 1


def test_occurrence_by_key(sim: GbifSimulator, population: Population) -> None:
    record = population.record(42)
    assert run(sim, lambda c: c.occurrence(str(record["key"]))) == record


def test_unknown_occurrence_is_404_and_not_retried(sim: GbifSimulator) -> None:
    with pytest.raises(GbifApiError) as info:
        run(sim, lambda c: c.occurrence(1))
    assert info.value.status == 404
    assert info.value.url.endswith("/v1/occurrence/1")
    assert "Entity not found" in info.value.message
    assert sim.stats().total_requests == 1


# --- validation before any request --------------------------------------------------------------


def test_unknown_parameter_is_rejected_before_any_request(sim: GbifSimulator) -> None:
    with pytest.raises(ConfigError, match="did you mean 'publishingOrg'"):
        run(sim, lambda c: c.search({"publishingOrgKey": "28eb1a3f-1c15-4a95-931a-4af90ecb574d"}))
    with pytest.raises(ConfigError, match="did you mean 'mediaType'"):
        gbif_count(mediatype=None, api_url=sim.api_url, mediatyp="StillImage")
    assert sim.requests == []


# --- retries and errors -------------------------------------------------------------------------


def test_retry_after_429_is_honoured(sim: GbifSimulator, population: Population) -> None:
    """A 429 with Retry-After: 1 delays the retry by at least 1 s, and the call then succeeds."""
    sim.inject("/occurrence/search", statuses=[429], retry_after_s=1.0)
    count = run(sim, lambda c: c.count({"mediaType": "StillImage"}))
    assert count == len(population.select({"mediaType": "StillImage"}))
    (t_throttled, _, first), (t_retry, _, second) = sim.requests
    assert first == second
    assert t_retry - t_throttled >= 1.0
    stats = sim.stats()
    assert stats.early_retries == 0
    assert stats.statuses == {429: 1, 200: 1}


def test_retry_after_holds_back_every_request_of_the_client(sim: GbifSimulator) -> None:
    """GBIF throttles the client, not one URL: other requests also wait for Retry-After."""
    sim.inject("/occurrence/search", statuses=[429], retry_after_s=1.0)

    async def two(client: GbifClient) -> None:
        await client.count({"mediaType": "StillImage"})  # throttled once, retried
        await client.count({"mediaType": "Sound"})

    run(sim, two, concurrency=1)
    times = [t for t, _, _ in sim.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 1.0


def test_503_then_success(sim: GbifSimulator, population: Population) -> None:
    sim.inject("/occurrence/search", statuses=[503, 503], retry_after_s=None)
    assert run(sim, lambda c: c.count({})) == population.size
    assert sim.stats().statuses == {503: 2, 200: 1}


def test_retries_are_bounded_and_the_error_keeps_gbif_message(sim: GbifSimulator) -> None:
    sim.inject("/occurrence/search", statuses=[503] * 3, retry_after_s=None)
    with pytest.raises(GbifApiError) as info:
        run(sim, lambda c: c.count({}), retry=RetryPolicy(retries=2, backoff_s=0.01))
    assert info.value.status == 503
    assert info.value.message == "Service disabled for maintenance reasons"
    assert "after 3 attempts" in str(info.value)
    assert sim.stats().total_requests == 3


def test_429_body_stays_readable(sim: GbifSimulator) -> None:
    """GBIF's 429 body is a JSON array of strings; the error shows the text, not the JSON."""
    sim.inject("/occurrence/search", statuses=[429], retry_after_s=0.1)
    with pytest.raises(GbifApiError) as info:
        run(sim, lambda c: c.count({}), retry=RetryPolicy(retries=0))
    assert info.value.status == 429
    assert "To download GBIF occurrence data in bulk" in info.value.message
    assert not info.value.message.startswith("[")


def test_400_is_not_retried(sim: GbifSimulator) -> None:
    """A bad value is GBIF's 400 text, raised at once, with the URL and GBIF's message."""
    with pytest.raises(GbifApiError) as info:
        run(sim, lambda c: c.count({"decimalLatitude": 334}))
    error = info.value
    assert error.status == 400
    assert "latitude" in error.message.lower()
    assert "decimalLatitude=334" in error.url
    assert sim.stats().total_requests == 1


def test_injected_400_is_not_retried(sim: GbifSimulator) -> None:
    sim.inject("/species/match", statuses=[400], retry_after_s=None)
    with pytest.raises(GbifApiError) as info:
        run(sim, lambda c: c.species_match("Anything"))
    assert info.value.status == 400
    assert sim.stats().total_requests == 1


def test_concurrency_never_exceeds_the_limit(population: Population) -> None:
    """With slow answers and many calls at once, the simulator never sees more than the limit."""

    async def burst(client: GbifClient) -> None:
        await asyncio.gather(*(client.count({"year": 2000 + i}) for i in range(12)))

    for limit in (2, 6):
        with GbifSimulator(population, latency_s=0.1) as slow:
            run(slow, burst, concurrency=limit)
            stats = slow.stats()
        assert stats.total_requests == 12
        assert stats.max_in_flight <= limit
        if limit == 6:
            assert stats.max_in_flight > 2  # the measurement would catch a breach of 2


# --- downloads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        "{doi}",
        "{DOI}",
        "doi:{doi}",
        "https://doi.org/{doi}",
        "http://dx.doi.org/{doi}",
    ],
)
def test_download_metadata_by_every_doi_form(sim: GbifSimulator, form: str) -> None:
    key = sim.add_download({"mediaType": "StillImage"}, doi="10.15468/dl.test01")
    meta = run(
        sim,
        lambda c: c.download_metadata(
            form.format(doi="10.15468/dl.test01", DOI="10.15468/DL.TEST01")
        ),
    )
    assert meta["key"] == key
    assert meta["doi"] == "10.15468/dl.test01"
    assert paths(sim) == ["/v1/occurrence/download/10.15468/dl.test01"]  # literal slash


def test_download_metadata_by_key_and_unknown(sim: GbifSimulator) -> None:
    key = sim.add_download({"mediaType": "StillImage"})
    assert run(sim, lambda c: c.download_metadata(key))["status"] == "SUCCEEDED"
    with pytest.raises(GbifApiError) as info:
        run(sim, lambda c: c.download_metadata("0000999-250101120000000"))
    assert info.value.status == 404


def test_create_wait_and_fetch_a_download(
    sim: GbifSimulator, population: Population, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST with Basic auth from GBIF_USER/GBIF_PWD; PREPARING -> RUNNING -> SUCCEEDED; fetch."""
    monkeypatch.setenv("GBIF_USER", "alice")
    monkeypatch.setenv("GBIF_PWD", "secret")
    species_key = population.species[1]["key"]
    predicate = to_predicate({"speciesKey": species_key, "mediaType": "StillImage"})
    seen: list[str] = []
    progress: list[tuple[int, int | None]] = []

    async def flow(client: GbifClient) -> tuple[str, dict[str, Any], Path]:
        key = await client.request_download(predicate)
        meta = await client.wait_for_download(
            key, poll_interval_s=0.01, on_status=lambda m: seen.append(m["status"])
        )
        path = await client.fetch_download(
            key,
            tmp_path / "dl" / f"{key}.zip",
            expected_size=meta["size"],
            progress=lambda done, total: progress.append((done, total)),
        )
        return key, meta, path

    key, meta, path = run(sim, flow)
    assert seen == ["PREPARING", "RUNNING", "SUCCEEDED"]
    assert meta["key"] == key
    assert meta["request"]["format"] == "DWCA"
    assert path.stat().st_size == meta["size"]
    assert not path.with_name(path.name + ".part").exists()
    with zipfile.ZipFile(path) as archive:
        assert "occurrence.txt" in archive.namelist()
        rows = archive.read("occurrence.txt").decode("utf-8").splitlines()
    assert len(rows) - 1 == meta["totalRecords"]
    assert meta["totalRecords"] == len(
        population.select({"speciesKey": str(species_key), "mediaType": "StillImage"})
    )
    assert progress[-1] == (meta["size"], meta["size"])
    posts = [(m, p) for _, m, p in sim.requests if m == "POST"]
    assert posts == [("POST", "/v1/occurrence/download/request")]


def test_fetch_resumes_a_cut_transfer_with_range(sim: GbifSimulator, tmp_path: Path) -> None:
    """The first transfer is cut mid-body; the client resumes from the .part size, not from 0."""
    probe = sim.add_download({"mediaType": "StillImage"})
    cut = sim.archive_path(probe).stat().st_size // 3
    key = sim.add_download({"mediaType": "StillImage"}, cut_after_bytes=cut)
    size = sim.archive_path(key).stat().st_size
    dest = tmp_path / "archive.zip"
    progress: list[tuple[int, int | None]] = []
    run(sim, lambda c: c.fetch_download(key, dest, progress=lambda d, t: progress.append((d, t))))
    assert dest.read_bytes() == sim.archive_path(key).read_bytes()
    archive_requests = [p for p in paths(sim) if p.startswith("/archive/")]
    assert len(archive_requests) == 2
    done = [d for d, _ in progress]
    # one start from 0; the second transfer starts where the first was cut (a 206 answer)
    assert done.count(0) == 1
    assert done == sorted(done)
    assert (cut, size) in progress
    assert all(total == size for _, total in progress)
    assert not dest.with_name("archive.zip.part").exists()


def test_fetch_resumes_an_existing_part_file(sim: GbifSimulator, tmp_path: Path) -> None:
    key = sim.add_download({"mediaType": "StillImage"})
    data = sim.archive_path(key).read_bytes()
    dest = tmp_path / "archive.zip"
    dest.with_name("archive.zip.part").write_bytes(data[:1000])
    progress: list[tuple[int, int | None]] = []
    run(
        sim,
        lambda c: c.fetch_download(
            key, dest, expected_size=len(data), progress=lambda d, t: progress.append((d, t))
        ),
    )
    assert dest.read_bytes() == data
    assert progress[0] == (1000, len(data))  # resumed, not started again
    assert sim.stats().total_requests == 2  # the redirect and one ranged transfer


def test_fetch_starts_over_when_the_part_is_too_large(sim: GbifSimulator, tmp_path: Path) -> None:
    key = sim.add_download({"mediaType": "StillImage"})
    data = sim.archive_path(key).read_bytes()
    dest = tmp_path / "archive.zip"
    dest.with_name("archive.zip.part").write_bytes(b"x" * (len(data) + 10))
    run(sim, lambda c: c.fetch_download(key, dest, expected_size=len(data)))
    assert dest.read_bytes() == data


def test_fetch_unknown_and_erased_downloads(sim: GbifSimulator, tmp_path: Path) -> None:
    with pytest.raises(GbifApiError) as info:
        run(sim, lambda c: c.fetch_download("0000999-250101120000000", tmp_path / "a.zip"))
    assert info.value.status == 404
    erased = sim.add_download({"mediaType": "StillImage"}, status="FILE_ERASED")
    with pytest.raises(DownloadNotReadyError) as gone:
        run(sim, lambda c: c.fetch_download(erased, tmp_path / "b.zip"))
    assert gone.value.status_name == "FILE_ERASED"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("status", ["KILLED", "CANCELLED", "FAILED", "FILE_ERASED"])
def test_wait_for_a_failed_download_raises(sim: GbifSimulator, status: str) -> None:
    key = sim.add_download({"mediaType": "StillImage"}, status=status)
    with pytest.raises(DownloadNotReadyError) as info:
        run(sim, lambda c: c.wait_for_download(key, poll_interval_s=0.01))
    assert info.value.status_name == status


def test_wait_for_download_times_out(population: Population) -> None:
    with GbifSimulator(population, polls_per_state=1000) as slow:
        key = slow.add_download({"mediaType": "StillImage"}, status="RUNNING")
        with pytest.raises(DownloadNotReadyError) as info:
            run(slow, lambda c: c.wait_for_download(key, poll_interval_s=0.05, timeout_s=0.3))
        polls = len(slow.requests)
    assert info.value.status_name == "RUNNING"
    assert 2 <= polls <= 6  # the interval grows: not one poll per 0.05 s


def test_bad_credentials_name_the_variables(sim: GbifSimulator) -> None:
    with pytest.raises(GbifApiError) as info:
        run(
            sim,
            lambda c: c.request_download(to_predicate({"taxonKey": 1}), user="alice", password="x"),
        )
    assert info.value.status == 401
    assert "GBIF_USER" in str(info.value) and "GBIF_PWD" in str(info.value)
    assert "Failed to authenticate user alice" in info.value.message
    assert sim.stats().total_requests == 1


def test_too_many_downloads_is_explained_and_not_retried(sim: GbifSimulator) -> None:
    async def four(client: GbifClient) -> list[str]:
        keys = []
        for taxon in (1, 2, 3, 4):
            keys.append(await client.request_download(to_predicate({"taxonKey": taxon})))
        return keys

    with pytest.raises(TooManyDownloadsError) as info:
        run(sim, four, user="alice", password="secret")
    assert info.value.status == 420
    assert "about 3 per user" in str(info.value)
    assert isinstance(info.value, GbifApiError)
    assert sum(1 for _, method, _ in sim.requests if method == "POST") == 4


def test_same_request_returns_the_same_key(sim: GbifSimulator) -> None:
    async def twice(client: GbifClient) -> tuple[str, str]:
        predicate = to_predicate({"taxonKey": 1})
        return await client.request_download(predicate), await client.request_download(predicate)

    first, second = run(sim, twice, user="alice", password="secret")
    assert first == second


# --- species match and the sync facade ----------------------------------------------------------


def test_species_match(sim: GbifSimulator, population: Population) -> None:
    species = population.species[3]

    async def both(client: GbifClient) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            await client.species_match(species["scientificName"], strict=True),
            await client.species_match("Nothing here at all"),
        )

    hit, miss = run(sim, both)
    assert hit["usageKey"] == species["key"]
    assert hit["matchType"] == "EXACT"
    assert miss["matchType"] == "NONE" and "usageKey" not in miss
    sent = dict(query_of(sim.requests[0][2]))
    assert sent["name"] == species["scientificName"] and sent["strict"] == "true"


def test_gbif_count_is_the_original_sync_function(
    sim: GbifSimulator, population: Population
) -> None:
    species_key = population.species[0]["key"]
    expected = len(population.select({"speciesKey": str(species_key), "mediaType": "StillImage"}))
    assert gbif_count(api_url=sim.api_url, speciesKey=species_key) == expected
    everything = gbif_count(mediatype=None, api_url=sim.api_url, speciesKey=species_key)
    assert everything == len(population.select({"speciesKey": str(species_key)}))
    # issue 22: mediaType in the query is the media type; only an explicit, different
    # mediatype= conflicts with it
    with pytest.raises(ConfigError, match="media type once"):
        gbif_count("StillImage", api_url=sim.api_url, media_type="Sound")
    sound = len(population.select({"speciesKey": str(species_key), "mediaType": "Sound"}))
    assert gbif_count(api_url=sim.api_url, speciesKey=species_key, media_type="Sound") == sound


def test_gbif_count_works_inside_a_running_loop(sim: GbifSimulator) -> None:
    async def inside() -> int:
        return gbif_count(api_url=sim.api_url)

    assert asyncio.run(inside()) == run(sim, lambda c: c.count({"mediaType": "StillImage"}))


# --- fetch_file: the one resumable fetch of any URL ----------------------------------------------


def test_fetch_file_resumes_any_url_through_a_redirect(sim: GbifSimulator, tmp_path: Path) -> None:
    """fetch_file is not tied to GBIF keys: the download URL (a redirect to the file) resumes
    an existing part file with Range."""
    key = sim.add_download({"mediaType": "StillImage"})
    data = sim.archive_path(key).read_bytes()
    dest = tmp_path / "any" / "file.zip"
    dest.parent.mkdir()
    dest.with_name("file.zip.part").write_bytes(data[:500])
    progress: list[tuple[int, int | None]] = []
    url = f"{sim.api_url}/occurrence/download/request/{key}.zip"
    path = asyncio.run(
        fetch_file(url, dest, progress=lambda d, t: progress.append((d, t)), retry=FAST_RETRY)
    )
    assert path == dest and dest.read_bytes() == data
    assert progress[0] == (500, len(data)) and progress[-1] == (len(data), len(data))
    assert not dest.with_name("file.zip.part").exists()


def test_fetch_file_honours_retry_after_and_mends_cut_bodies(tmp_path: Path) -> None:
    """429 + Retry-After is waited for and retried; a cut body is fetched again (the media host
    ignores Range, so the file starts over); both end with the host's exact bytes."""
    import urllib.request

    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        throttled = f"{base}/throttle/0.05/a.jpg"
        cut = f"{base}/truncate/b.jpg"
        asyncio.run(fetch_file(throttled, tmp_path / "a.jpg", retry=FAST_RETRY))
        asyncio.run(fetch_file(cut, tmp_path / "b.jpg", retry=FAST_RETRY))
        requests = sum(s.requests for s in hosts.stats().values())
        expected_a = urllib.request.urlopen(throttled).read()
        expected_b = urllib.request.urlopen(cut).read()
    assert requests == 4  # each: one refused or cut, one whole
    assert (tmp_path / "a.jpg").read_bytes() == expected_a
    assert (tmp_path / "b.jpg").read_bytes() == expected_b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg"]


def test_fetch_file_errors(tmp_path: Path) -> None:
    """A 404 is not retried and writes nothing; a Retry-After beyond the policy's limit, a file
    of the wrong size and a transfer that keeps failing raise, naming the URL."""
    slow = RetryPolicy(retries=2, backoff_s=0.01, max_backoff_s=0.02, max_retry_after_s=5.0)
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        with pytest.raises(GbifApiError) as missing:
            asyncio.run(fetch_file(f"{base}/status/404/x.jpg", tmp_path / "x.jpg", retry=slow))
        assert missing.value.status == 404 and not list(tmp_path.iterdir())
        with pytest.raises(GbifApiError, match="Retry-After"):
            asyncio.run(fetch_file(f"{base}/throttle/600/y.jpg", tmp_path / "y.jpg", retry=slow))
        with pytest.raises(GbifApiError, match="expected 1000"):
            asyncio.run(
                fetch_file(f"{base}/big/1200/z.jpg", tmp_path / "z.jpg", expected_size=1000)
            )
        with pytest.raises(GbifApiError, match="keeps failing") as failing:
            asyncio.run(fetch_file(f"{base}/status/503/w.jpg", tmp_path / "w.jpg", retry=slow))
        assert failing.value.status == 0
    with pytest.raises(ConfigError, match="http"):
        asyncio.run(fetch_file("ftp://example.org/a.zip", tmp_path / "a.zip"))

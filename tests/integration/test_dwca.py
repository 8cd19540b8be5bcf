"""gbif_dl.dwca against the GBIF simulator: keys, DOIs, resuming, caching, refusals, request()."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gbif_dl import dwca
from gbif_dl.errors import ArchiveError, ConfigError, DownloadNotReadyError
from gbif_dl.sources.archive import ArchiveStats
from gbif_dl.testing import GbifSimulator, Population


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(seed=7, size=300, n_species=6, n_datasets=3)


@pytest.fixture
def sim(population: Population) -> Iterator[GbifSimulator]:
    with GbifSimulator(population, users={"alice": "secret"}, polls_per_state=1) as simulator:
        yield simulator


def _archive_requests(sim: GbifSimulator) -> int:
    """Transfers of archive files (the API URL; its redirect target is not counted)."""
    return sum(
        1
        for _, method, path in sim.requests
        if method == "GET" and "/occurrence/download/request/" in path
    )


def _metadata(sim: GbifSimulator, key: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{sim.api_url}/occurrence/download/{key}") as answer:
        return dict(json.load(answer))


def test_by_key_and_by_doi(sim: GbifSimulator, tmp_path: Path) -> None:
    """A key and its DOI (any common form) give the same records; the archive is cached."""
    key = sim.add_download({"mediaType": "StillImage"})
    by_key = list(dwca.generate_urls(key, tmp_path, label="speciesKey", api_url=sim.api_url))
    assert by_key and (tmp_path / f"{key}.zip").is_file()
    meta_doi = _metadata(sim, key)["doi"]
    for form in (meta_doi, f"doi:{meta_doi}", f"https://doi.org/{meta_doi.upper()}"):
        by_doi = list(dwca.generate_urls(form, tmp_path, label="speciesKey", api_url=sim.api_url))
        assert by_doi == by_key
    assert _archive_requests(sim) == 1  # fetched once, then read from the cache
    assert all(r["label"] == str(r["speciesKey"]) for r in by_key)


def test_gbif_api_url_environment_is_used(
    sim: GbifSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GBIF_API_URL", sim.api_url)
    key = sim.add_download({"mediaType": "StillImage"})
    assert next(dwca.generate_urls(key, tmp_path, label="scientificName"))["label"]


def test_cut_transfer_resumes_with_range(population: Population, tmp_path: Path) -> None:
    """The first transfer is cut mid-body; the next request resumes with Range (206)."""
    with GbifSimulator(population) as sim:
        key = sim.add_download({"mediaType": "StillImage"}, cut_after_bytes=20_000)
        stats = ArchiveStats()
        records = list(
            dwca.generate_urls(key, tmp_path, label="speciesKey", api_url=sim.api_url, stats=stats)
        )
        assert records and stats.records == len(records)
        assert _archive_requests(sim) >= 2
        assert (tmp_path / f"{key}.zip").stat().st_size == sim.archive_path(key).stat().st_size
        assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("status", ["RUNNING", "FILE_ERASED", "KILLED"])
def test_download_not_succeeded_is_refused_with_its_status(
    sim: GbifSimulator, tmp_path: Path, status: str
) -> None:
    key = sim.add_download({"mediaType": "StillImage"}, status=status)
    with pytest.raises(DownloadNotReadyError) as info:
        dwca.generate_urls(key, tmp_path, api_url=sim.api_url)
    assert info.value.status_name == status
    assert status in str(info.value)
    if status == "FILE_ERASED":
        assert "request" in str(info.value).lower() and "erased" in str(info.value).lower()
    assert _archive_requests(sim) == 0


@pytest.mark.parametrize("fmt", ["SIMPLE_CSV", "SIMPLE_PARQUET"])
def test_simple_formats_are_refused(sim: GbifSimulator, tmp_path: Path, fmt: str) -> None:
    key = sim.add_download({"mediaType": "StillImage"}, format=fmt)
    with pytest.raises(ArchiveError, match="no media URLs"):
        dwca.generate_urls(key, tmp_path, api_url=sim.api_url)


def test_zip_url_and_local_path(sim: GbifSimulator, tmp_path: Path) -> None:
    """The URL of a zip is streamed into the cache; a local path is read in place."""
    key = sim.add_download({"mediaType": "StillImage"})
    url = f"{sim.api_url}/occurrence/download/request/{key}.zip"
    from_url = list(dwca.generate_urls(url, tmp_path / "cache", label="speciesKey"))
    local = sim.archive_path(key)
    from_path = list(dwca.generate_urls(str(local), label="speciesKey"))
    assert from_url == from_path and from_url
    assert len(list((tmp_path / "cache").glob("*.zip"))) == 1


def test_delete_removes_only_fetched_archives(sim: GbifSimulator, tmp_path: Path) -> None:
    key = sim.add_download({"mediaType": "StillImage"})
    list(dwca.generate_urls(key, tmp_path, label="speciesKey", delete=True, api_url=sim.api_url))
    assert not (tmp_path / f"{key}.zip").exists()
    local = sim.archive_path(key)
    list(dwca.generate_urls(local, label="speciesKey", delete=True))
    assert local.exists()


def test_unknown_identifier(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="download key"):
        dwca.generate_urls("not-a-key", tmp_path)


#: dwca.request() options of the request tests: simulator credentials, fast polling.
_QUICK_REQUEST: dict[str, Any] = {
    "label": "speciesKey",
    "user": "alice",
    "password": "secret",
    "poll_interval_s": 0.05,
    "max_interval_s": 0.1,
    "timeout_s": 60,
}


def test_request_creates_waits_and_yields(sim: GbifSimulator, tmp_path: Path) -> None:
    """request(): predicate from the query, Basic auth, PREPARING -> RUNNING -> SUCCEEDED."""
    species = [s["key"] for s in sim.population.species[:2]]
    seen: list[str] = []
    records = list(
        dwca.request(
            {"speciesKey": species, "year": "1990,2030"},
            tmp_path,
            api_url=sim.api_url,
            on_status=lambda meta: seen.append(meta["status"]),
            **_QUICK_REQUEST,
        )
    )
    assert records
    assert {r["speciesKey"] for r in records} <= set(species)
    assert seen[-1] == "SUCCEEDED" and {"PREPARING", "RUNNING"} <= set(seen)
    (posted,) = [p for _, m, p in sim.requests if m == "POST"]
    assert posted.endswith("/occurrence/download/request")
    key = next(p for _, m, p in sim.requests if m == "GET" and "/occurrence/download/0" in p)
    text = repr(_metadata(sim, key.rsplit("/", 1)[-1])["request"]["predicate"])
    assert "SPECIES_KEY" in text and "MEDIA_TYPE" in text and "YEAR" in text


def test_request_without_credentials_is_a_config_error(sim: GbifSimulator, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GBIF_USER"):
        dwca.request({"taxonKey": 1}, tmp_path, api_url=sim.api_url)


def test_request_waits_and_retries_while_too_many_downloads_run(
    population: Population, tmp_path: Path
) -> None:
    """HTTP 420 (the user's running-download limit): wait too_many_wait_s, then try again."""
    wait_s = 0.2
    with GbifSimulator(
        population, users={"alice": "secret"}, polls_per_state=1, max_running_downloads=1
    ) as sim:
        blocker = sim.add_download({"taxonKey": 1}, status="RUNNING", creator="alice")
        refusals: list[str] = []

        class FinishBlocker(logging.Handler):
            """On the client's 'trying again' warning, poll the blocker until it SUCCEEDED."""

            def emit(self, record: logging.LogRecord) -> None:
                refusals.append(record.getMessage())
                for _ in range(10):
                    if _metadata(sim, blocker)["status"] == "SUCCEEDED":
                        break

        handler = FinishBlocker(level=logging.WARNING)
        logger = logging.getLogger("gbif_dl.dwca")
        logger.addHandler(handler)
        try:
            records = list(
                dwca.request(
                    {"speciesKey": sim.population.species[0]["key"]},
                    tmp_path,
                    api_url=sim.api_url,
                    too_many_wait_s=wait_s,
                    **_QUICK_REQUEST,
                )
            )
        finally:
            logger.removeHandler(handler)
        posts = [t for t, m, p in sim.requests if m == "POST" and p.endswith("/request")]
    assert records
    assert len(refusals) == 1 and "too many" in refusals[0].lower()
    assert len(posts) == 2
    assert posts[1] - posts[0] >= wait_s  # the retry came no earlier than the wait

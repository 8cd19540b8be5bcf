"""Quotas that hold after download failures (issue 18, item 1): seeded spares.

Real HTTP over loopback to the simulator: a share of image URLs answers 404 for good, and
every stream still ends with exactly its quota, in the plain run and with runner="local" and
runner="dask"; nb_samples=-1 gives equal classes; a stream that runs dry is reported and the
others are trimmed or kept; items without quota keys behave as before.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import gbif_dl
from gbif_dl.errors import ConfigError
from gbif_dl.io import download
from gbif_dl.manifest import MANIFEST_NAME
from gbif_dl.sampling.spares import spares_for, with_spares
from gbif_dl.testing.mediahost import HostFaults, MediaHosts
from gbif_dl.testing.simulation import Simulation
from gbif_dl.writers._atomic import is_temp_name

SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}


@pytest.fixture(scope="module")
def simu() -> Iterator[Simulation]:
    """3 species, 5% of image URLs answering 404 for good."""
    faults = HostFaults(not_found_rate=0.05)
    with Simulation(seed=0, size=3000, n_hosts=2, n_species=3, host_faults=faults) as simulation:
        yield simulation


@pytest.fixture
def hosts() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=1) as media:
        yield media


def _keys(simu: Simulation) -> list[int]:
    return [int(s["key"]) for s in simu.population.species[:3]]


def _issue_items(simu: Simulation, seed: int, nb_samples: int = 300) -> Iterator[Any]:
    return gbif_dl.api.generate_urls(
        queries={"speciesKey": _keys(simu)},
        label="speciesKey",
        nb_samples=nb_samples,
        split_streams_by="speciesKey",
        seed=seed,
        api_url=simu.api_url,
    )


def _images_per_class(root: Path) -> dict[str, int]:
    """Image files per label folder, over every split (what an ImageFolder loader sees)."""
    return dict(
        collections.Counter(
            p.parent.name
            for p in root.rglob("*")
            if p.is_file() and p.parent != root and not is_temp_name(p.name)
        )
    )


def _rows(root: Path) -> list[dict[str, Any]]:
    return pq.read_table(root / MANIFEST_NAME).to_pylist()


def _stored_per_stream(root: Path) -> dict[str, int]:
    return dict(collections.Counter(r["stream"] for r in _rows(root) if r["status"] == "success"))


def _assert_exact(root: Path, per_class: int, classes: list[int]) -> None:
    assert _images_per_class(root) == {str(k): per_class for k in classes}
    assert _stored_per_stream(root) == {f"speciesKey={k}": per_class for k in classes}
    stored = {r["path"] for r in _rows(root) if r["status"] == "success"}
    on_disk = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.parent != root and not is_temp_name(p.name)
    }
    assert stored == on_disk  # every file has its row, no orphan


# --- the sources ------------------------------------------------------------------------------


def test_search_yields_tagged_primaries_then_round_robin_spares(simu: Simulation) -> None:
    items = list(with_spares(_issue_items(simu, 7)))
    primaries = [i for i in items if not i["spare"]]
    spares = [i for i in items if i["spare"]]
    assert len(primaries) == 300 and len(spares) == 3 * spares_for(100, 0.25)
    assert items[:300] == primaries  # every spare after every primary
    assert {i["quota"] for i in items} == {100}
    assert collections.Counter(i["stream"] for i in primaries) == {
        f"speciesKey={k}": 100 for k in _keys(simu)
    }
    streams = [i["stream"] for i in spares]
    assert streams[:3] == streams[3:6] and len(set(streams[:3])) == 3  # round-robin
    assert not {i["url"] for i in spares} & {i["url"] for i in primaries}
    again = list(with_spares(_issue_items(simu, 7)))
    assert [i["url"] for i in again] == [i["url"] for i in items]  # same seed, same spares
    # iterated as gbif-dl 0.1 code does, the generator gives the sample alone
    assert list(_issue_items(simu, 7)) == primaries


def test_iterating_the_generator_gives_the_sample_only_and_download_takes_the_spares(
    simu: Simulation, tmp_path: Path
) -> None:
    """gbif-dl 0.1 code that loops over generate_urls itself gets nb_samples items; the
    downloader given the same generator object takes the spares it needs."""
    for source in (
        lambda: _issue_items(simu, 3, nb_samples=30),
        lambda: gbif_dl.dwca.generate_urls(
            "tests/data/dwca-0022697-200613084148143.zip", label="speciesKey", nb_samples=20
        ),
    ):
        sample = list(source())
        assert sample and not any(i["spare"] for i in sample)
        assert len(sample) == sum({i["stream"]: i["quota"] for i in sample}.values())
        generator = source()
        first = next(generator)  # partly consumed by the caller: the rest and the spares follow
        rest = list(with_spares(generator))
        assert [first, *rest[: len(sample) - 1]] == sample
        assert rest[len(sample) - 1 :] and all(i["spare"] for i in rest[len(sample) - 1 :])


def test_archive_spares_are_the_next_candidates_of_the_same_sampler() -> None:
    """An archive's spares are the items a larger quota would have drawn next."""
    path = "tests/data/dwca-0022697-200613084148143.zip"
    small = list(
        with_spares(gbif_dl.dwca.generate_urls(path, label="speciesKey", nb_samples=20, seed=3))
    )
    larger = gbif_dl.dwca.generate_urls(path, label="speciesKey", nb_samples=25, seed=3, spares=0)
    assert [i["spare"] for i in small] == [False] * 20 + [True] * 5
    assert {i["url"] for i in small} == {i["url"] for i in larger}
    assert {(i["stream"], i["quota"]) for i in small} == {("all", 20)}


def test_no_quota_no_keys_and_no_spares(simu: Simulation) -> None:
    items = list(
        gbif_dl.api.generate_urls(
            queries={"speciesKey": _keys(simu)[:1]}, label="speciesKey", api_url=simu.api_url
        )
    )
    assert items and not any("stream" in i or "spare" in i for i in items)


# --- the acceptance: exactly the quota per class -----------------------------------------------


@pytest.mark.parametrize("seed", [0, 7, 2024])
def test_issue_call_stores_exactly_100_per_class(
    simu: Simulation, tmp_path: Path, seed: int
) -> None:
    """The issue's call with 5% permanent 404s: 100 images per class, every time."""
    stats = gbif_dl.io.download(_issue_items(simu, seed), root=tmp_path, splits=SPLITS)
    _assert_exact(tmp_path, 100, _keys(simu))
    assert stats.failed > 0  # the 404s happened, spares took their places
    assert {s["delivered"] for s in stats.streams.values()} == {100}
    failed_primaries = collections.Counter(
        r["stream"] for r in _rows(tmp_path) if r["status"] == "failed" and not r["spare"]
    )
    for name, stream in stats.streams.items():  # one spare stored per failed primary
        assert stream["spares_used"] == failed_primaries[name]
    assert not any(s["ran_dry"] for s in stats.streams.values())


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2024])
def test_issue_call_with_the_local_runner(simu: Simulation, tmp_path: Path, seed: int) -> None:
    plain = tmp_path / "plain"
    gbif_dl.io.download(_issue_items(simu, seed), root=plain, splits=SPLITS)
    local = tmp_path / "local"
    stats = gbif_dl.io.download(
        _issue_items(simu, seed), root=local, splits=SPLITS, runner="local", shard_size=64
    )
    _assert_exact(local, 100, _keys(simu))
    assert {s["delivered"] for s in stats.streams.values()} == {100}
    ok = {r["url"] for r in _rows(local) if r["status"] == "success"}
    assert ok == {r["url"] for r in _rows(plain) if r["status"] == "success"}  # the same files


@pytest.mark.slow
def test_issue_call_with_the_dask_runner(simu: Simulation, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    stats = gbif_dl.io.download(
        _issue_items(simu, 7), root=tmp_path, splits=SPLITS, runner="dask", workers=2
    )
    _assert_exact(tmp_path, 100, _keys(simu))
    assert {s["delivered"] for s in stats.streams.values()} == {100}


def test_rerun_neither_refetches_nor_overfills(simu: Simulation, tmp_path: Path) -> None:
    """A rerun of the same call requests nothing: the streams are full."""
    gbif_dl.io.download(_issue_items(simu, 7), root=tmp_path, splits=SPLITS)
    simu.hosts.reset_stats()
    stats = gbif_dl.io.download(_issue_items(simu, 7), root=tmp_path, splits=SPLITS)
    assert stats.success == 0
    assert sum(s.requests for s in simu.hosts.stats().values()) == 0
    _assert_exact(tmp_path, 100, _keys(simu))


# --- synthetic streams: failures, dry streams, trim and keep -----------------------------------


def _stream(
    base: str, name: str, quota: int, good: int, bad: int, spares: int, *, balanced: bool = True
) -> list[dict[str, Any]]:
    """``good`` + ``bad`` primaries (``bad`` answer 404), then ``spares`` good spares."""
    items = []
    for i in range(good + bad + spares):
        path = f"media/{i}/0.jpg" if i < good or i >= good + bad else f"status/404/{i}.jpg"
        items.append(
            {
                "url": f"{base}/{path}?s={name}",
                "label": name,
                "gbifID": f"{name}-{i}",
                "stream": f"label={name}",
                "quota": quota,
                "spare": i >= good + bad,
                **({"balanced": True} if balanced else {}),
            }
        )
    return items


def _two_streams(base: str, *, balanced: bool = True) -> list[dict[str, Any]]:
    """Stream a: 10 primaries (2 fail) and 4 spares; stream b: 10 primaries (3 fail), none."""
    a = _stream(base, "a", 10, 8, 2, 4, balanced=balanced)
    b = _stream(base, "b", 10, 7, 3, 0, balanced=balanced)
    return [item for item in a + b if not item["spare"]] + [i for i in a if i["spare"]]


def test_primary_transient_failure_then_rerun_does_not_overfill(tmp_path: Path) -> None:
    """A primary that failed transiently is not fetched again once a spare filled its place."""
    faults = HostFaults(error_rate=0.3, fault_attempts=1)
    with MediaHosts(n_hosts=1, faults=faults) as media:
        items = _stream(media.base_urls[0], "a", 20, 20, 0, 20)
        first = download(items, root=tmp_path, retries=0, progress=False)
        assert first.failed > 0 and first.streams["label=a"]["delivered"] == 20
        media.reset_stats()
        again = download(items, root=tmp_path, retries=0, progress=False)
    assert again.success == 0  # the transient failures would succeed now, but are not needed
    assert _images_per_class(tmp_path) == {"a": 20}


def test_a_dry_stream_trims_the_others_for_a_balanced_request(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    stats = download(_two_streams(hosts.base_urls[0]), root=tmp_path, progress=False)
    assert stats.streams["label=b"] == {
        "requested": 10,
        "delivered": 7,
        "spares_used": 0,
        "failed": 3,
        "ran_dry": True,
        "trimmed": 0,
    }
    a = stats.streams["label=a"]
    assert (a["delivered"], a["trimmed"], a["ran_dry"]) == (7, 3, False)
    assert _images_per_class(tmp_path) == {"a": 7, "b": 7}
    trimmed = [r for r in _rows(tmp_path) if r["status"] == "trimmed"]
    assert len(trimmed) == 3 and all(r["path"] is None for r in trimmed)
    assert all(r["reason"] == "trimmed" and "label=b ran dry" in r["detail"] for r in trimmed)
    assert sum(bool(r["spare"]) for r in trimmed) == 2  # both stored spares go first
    again = download(_two_streams(hosts.base_urls[0]), root=tmp_path, progress=False)
    assert again.success == 0  # the rerun fetches nothing the trim removed
    assert _images_per_class(tmp_path) == {"a": 7, "b": 7}


def test_keep_leaves_the_other_streams_full(hosts: MediaHosts, tmp_path: Path) -> None:
    items = _two_streams(hosts.base_urls[0])
    stats = download(items, root=tmp_path, progress=False, short_streams="keep")
    assert stats.streams["label=b"]["ran_dry"] and stats.streams["label=a"]["delivered"] == 10
    assert _images_per_class(tmp_path) == {"a": 10, "b": 7}


def test_an_explicit_total_keeps_by_default(hosts: MediaHosts, tmp_path: Path) -> None:
    stats = download(_two_streams(hosts.base_urls[0], balanced=False), root=tmp_path)
    assert stats.streams["label=b"]["ran_dry"]
    assert _images_per_class(tmp_path) == {"a": 10, "b": 7}


def test_trim_with_the_local_runner(hosts: MediaHosts, tmp_path: Path) -> None:
    stats = download(_two_streams(hosts.base_urls[0]), root=tmp_path, runner="local", shard_size=4)
    assert stats.streams["label=b"]["ran_dry"] and stats.streams["label=a"]["trimmed"] == 3
    assert _images_per_class(tmp_path) == {"a": 7, "b": 7}
    assert sum(r["status"] == "trimmed" for r in _rows(tmp_path)) == 3


def test_webdataset_refuses_trim_and_keeps_by_default(hosts: MediaHosts, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="short_streams='trim'"):
        download([], root=tmp_path, output="webdataset", short_streams="trim")
    stats = download(_two_streams(hosts.base_urls[0]), root=tmp_path, output="webdataset")
    assert stats.streams["label=b"]["ran_dry"]
    assert stats.streams["label=a"]["delivered"] == 10  # kept: a tar member stays


def test_items_without_stream_keys_are_unchanged(hosts: MediaHosts, tmp_path: Path) -> None:
    urls = [f"{hosts.base_urls[0]}/media/{i}/0.jpg" for i in range(5)]
    items = [{"url": u, "label": "x"} for u in urls] + [f"{hosts.base_urls[0]}/status/404/a.jpg"]
    stats = download(items, root=tmp_path, progress=False)
    assert (stats.success, stats.failed, stats.streams) == (5, 1, {})
    assert {r["stream"] for r in _rows(tmp_path)} == {None}


@pytest.mark.parametrize("runner", [None, "local"])
def test_archive_call_stores_exactly_the_quota(simu: Simulation, tmp_path: Path, runner) -> None:
    """The same with an archive of the simulated occurrences (5% of its URLs answer 404)."""
    from gbif_dl.testing import write_dwca

    archive = tmp_path / "dl.zip"
    write_dwca(simu.population, range(simu.population.size), archive)
    items = gbif_dl.dwca.generate_urls(
        archive, label="speciesKey", split_streams_by="speciesKey", nb_samples=150, seed=2024
    )
    root = tmp_path / "data"
    kw = {} if runner is None else {"runner": runner, "shard_size": 50}
    stats = download(items, root=root, splits=SPLITS, **kw)
    species = [int(k) for k in {r["label"] for r in _rows(root)}]
    assert len(species) == 3 and stats.failed > 0
    _assert_exact(root, 50, species)


@pytest.mark.parametrize("runner", [None, "local"])
def test_balanced_request_gives_equal_classes(tmp_path: Path, runner: str | None) -> None:
    """nb_samples=-1 with 5% 404s: the smallest stream has no spares; every class ends equal."""
    faults = HostFaults(not_found_rate=0.05)
    with Simulation(seed=3, size=240, n_hosts=1, n_species=3, host_faults=faults) as simu:
        items = gbif_dl.api.generate_urls(
            queries={"speciesKey": _keys(simu)},
            label="speciesKey",
            nb_samples=-1,
            split_streams_by="speciesKey",
            seed=5,
            api_url=simu.api_url,
        )
        kw = {} if runner is None else {"runner": runner, "shard_size": 30}
        stats = download(items, root=tmp_path, splits=SPLITS, **kw)
    counts = _images_per_class(tmp_path)
    assert len(counts) == 3 and len(set(counts.values())) == 1
    assert {s["delivered"] for s in stats.streams.values()} == set(counts.values())


def test_a_slice_of_a_sampled_list_downloads_that_slice(hosts: MediaHosts, tmp_path: Path) -> None:
    """Spares replace primaries that failed; they never fill a stream the input cut short."""
    items = _stream(hosts.base_urls[0], "a", 10, 10, 0, 4, balanced=False)
    part = items[7:]  # 3 primaries and the 4 spares
    stats = download(part, root=tmp_path, progress=False)
    assert stats.success == 3 and stats.streams["label=a"]["requested"] == 3
    assert not stats.streams["label=a"]["ran_dry"]


# --- report, plan and command line -------------------------------------------------------------


def test_report_shows_requested_vs_delivered(hosts: MediaHosts, tmp_path: Path) -> None:
    from gbif_dl.report import format_text, render_html, summarize

    download(_two_streams(hosts.base_urls[0]), root=tmp_path, short_streams="keep")
    summary = summarize(tmp_path, thumbnails=0)
    assert summary.streams["label=b"]["ran_dry"] and summary.streams["label=a"]["spares_used"] == 2
    text = format_text(summary)
    assert "Quotas (1 of 2 streams complete):" in text
    line = next(line for line in text.splitlines() if line.strip().startswith("label=b"))
    assert line.split() == ["label=b", "10", "7", "0", "3", "yes", "0"]
    page = render_html(summary)
    assert "Quotas (1 of 2 streams complete)" in page and "spares used" in page


def test_plan_estimates_spares_from_the_failures_seen(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gbif_dl.cli import EXIT_OK, main
    from gbif_dl.estimate import SearchPlan, StreamPlan, observed_failure_share, spares_needed

    root = tmp_path / "data"
    assert observed_failure_share(root) is None
    with MediaHosts(n_hosts=1) as media:
        download(_two_streams(media.base_urls[0]), root=root, short_streams="keep")
    share = observed_failure_share(root)
    assert share == pytest.approx(5 / 22)  # 2 + 3 of 22 fetched answered 404
    plan = SearchPlan([StreamPlan("a", 900, 100), StreamPlan("b", 9, 9)], {}, 1, "StillImage")
    assert spares_needed(plan, share) == {"a": 23, "b": 3}
    args = ["plan", "--api-url", simu.api_url, "--split-streams-by", "speciesKey", "-o", str(root)]
    args += [f"--query=speciesKey={k}" for k in _keys(simu)] + ["--nb-samples", "300"]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    assert "Spares: with the 22.7% permanent failures seen in" in out
    assert "~69 spares needed (most per stream: 23); 75 are drawn" in out


def test_cli_download_reports_quotas(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gbif_dl.cli import EXIT_OK, main

    root = tmp_path / "data"
    args = ["download", "--api-url", simu.api_url, "--split-streams-by", "speciesKey"]
    args += ["--label", "speciesKey", "-o", str(root), "--allow-private", "--seed", "2024"]
    args += [f"--query=speciesKey={k}" for k in _keys(simu)] + ["--nb-samples", "60"]
    assert main([*args, "--spares", "0.5", "--fail-threshold", "0.5"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Quotas (3 of 3 streams complete)" in out
    assert _images_per_class(root) == {str(k): 20 for k in _keys(simu)}

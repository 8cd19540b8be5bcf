"""Cluster runs a user can follow: more workers than per_host, progress from the client, a lost
worker, the CLI's --scheduler and the SLURM example on a LocalCluster. Real HTTP to the media
hosts and the simulator, real files, real Dask clusters on loopback."""

from __future__ import annotations

import collections
import importlib.util
import os
import signal
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.parquet as pq
import pytest

from gbif_dl.cli import EXIT_OK, main
from gbif_dl.fetch import FetchConfig
from gbif_dl.manifest import MANIFEST_NAME
from gbif_dl.records import url_basename
from gbif_dl.runners import run
from gbif_dl.runners.report import ClusterProgress
from gbif_dl.shards.files import shard_files
from gbif_dl.testing import Simulation
from gbif_dl.testing.mediahost import HostFaults, MediaHosts

distributed = pytest.importorskip("distributed")

EXAMPLE = Path(__file__).parents[2] / "examples" / "slurm_jobqueue.py"


def _records(bases: list[str], n: int, *, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        url = f"{bases[i % len(bases)]}/media/{7000 + i}/{i}.jpg"
        out.append({"url": url, "basename": url_basename(url), "label": f"species {i % 3}"})
    return out


def _stored(root: Path) -> list[str]:
    """The stem of every image below the root's class folders."""
    return sorted(p.stem for p in root.rglob("*") if p.is_file() and p.parent != root)


def _manifest_urls(root: Path) -> list[str]:
    return sorted(pq.read_table(root / MANIFEST_NAME, columns=["url"]).column("url").to_pylist())


def _check_once(root: Path, records: list[dict[str, Any]]) -> None:
    """Every item is in the manifest once and on disk once."""
    assert _manifest_urls(root) == sorted(r["url"] for r in records)
    assert _stored(root) == sorted(r["basename"] for r in records)


@pytest.mark.slow
def test_dask_with_more_workers_than_per_host_keeps_per_host(tmp_path: Path) -> None:
    """8 workers, per_host=2, 4 hosts: no host ever sees more than 2 requests in flight, each
    image is requested and stored once, several shards (of different hosts) run at once, and
    the client's progress ends with the job's totals."""
    slow = HostFaults(latency_s=0.03)
    with (
        MediaHosts(n_hosts=4, faults=dict.fromkeys(range(4), slow)) as media,
        distributed.LocalCluster(
            n_workers=8,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        records = _records(media.base_urls, 96)
        progress = ClusterProgress(mode=False)
        stats = run(
            records, tmp_path, runner="dask", dask_client=client, shard_size=8,
            fetch=FetchConfig(per_host=2, concurrency=64), progress=progress,
        )  # fmt: skip
        per_host = {host: s.max_in_flight for host, s in media.stats().items()}
        log = media.request_log()
    assert (stats.success, stats.failed, stats.skipped) == (96, 0, 0)
    assert max(per_host.values()) <= 2, per_host
    assert sorted(log) == sorted(r["url"] for r in records)  # each requested once
    _check_once(tmp_path, records)
    gate = progress.gate
    assert gate is not None and gate.lanes == 2
    assert all(len(hosts) == 1 for hosts in gate.hosts.values())  # shards cut by host
    assert gate.max_per_host == 2
    assert gate.max_running == 8  # 4 hosts x 2 lanes: the 8 workers all had a shard
    totals = progress.totals()
    assert totals == {"success": 96, "failed": 0, "skipped": 0, "bytes": stats.bytes}


def test_local_pool_with_more_processes_than_per_host_keeps_per_host(tmp_path: Path) -> None:
    """The local runner's process pool under the same gate: 3 processes, per_host=1, 2 hosts;
    the progress line tells images, shards and hosts; a rerun skips all (totals again)."""
    with MediaHosts(n_hosts=2, faults={0: HostFaults(latency_s=0.02)}) as media:
        records = _records(media.base_urls, 24)
        progress = ClusterProgress(mode=False)
        fetch = FetchConfig(per_host=1, concurrency=8)
        stats = run(records, tmp_path, shard_size=4, workers=3, fetch=fetch, progress=progress)
        per_host = [s.max_in_flight for s in media.stats().values()]
        again = ClusterProgress(mode=False)
        rerun = run(records, tmp_path, shard_size=4, workers=3, fetch=fetch, progress=again)
    assert (stats.success, stats.failed) == (24, 0) and max(per_host) == 1
    _check_once(tmp_path, records)
    assert progress.totals() == {"success": 24, "failed": 0, "skipped": 0, "bytes": stats.bytes}
    assert progress.gate is not None and progress.gate.max_per_host == 1
    line = progress.line()
    assert line.startswith("24/24 img") and "ok 24, failed 0" in line and "6/6 done" in line
    assert rerun.skipped == 24 and again.totals()["skipped"] == 24


def _executing(dask_worker: Any) -> tuple[list[str], int]:
    return [str(ts.key) for ts in dask_worker.state.executing], os.getpid()


def _kill_worker_running(client: Any, key_part: str) -> int | None:
    for keys, pid in client.run(_executing).values():
        if any(key_part in key for key in keys):
            os.kill(pid, signal.SIGKILL)
            return int(pid)
    return None


@pytest.mark.slow
def test_lost_worker_loses_nothing_and_refetches_nothing_stored(tmp_path: Path) -> None:
    """3 worker processes, per_host=2: SIGKILL of the worker running a shard of the slow host
    mid-way. Its shard runs again elsewhere and resumes: the request log shows no image that was
    stored before the kill requested twice, every item is stored and listed exactly once, and
    the client's progress totals are the job's."""
    slow = HostFaults(latency_s=0.2)
    with (
        MediaHosts(n_hosts=2, faults={1: slow}) as media,
        distributed.LocalCluster(
            n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        fast, slow_base = media.base_urls
        records = _records([fast], 24) + _records([slow_base], 16, start=24)
        progress = ClusterProgress(mode=False)
        outcome: dict[str, Any] = {}

        def job() -> None:
            try:
                outcome["stats"] = run(
                    records, tmp_path, runner="dask", dask_client=client, shard_size=8,
                    fetch=FetchConfig(per_host=2, concurrency=8), progress=progress,
                )  # fmt: skip
            except BaseException as exc:  # re-raised in the test thread
                outcome["error"] = exc

        thread = threading.Thread(target=job)
        thread.start()
        slow_shards = (3, 4)  # by host: shards 0-2 hold the fast host, 3-4 the slow one
        deadline = time.monotonic() + 60
        killed = None
        stored_at_kill: list[str] = []
        while killed is None and time.monotonic() < deadline and thread.is_alive():
            for sid in slow_shards:
                journal = tmp_path / shard_files(sid).journal
                if journal.exists() and len(journal.read_text().splitlines()) >= 2:
                    killed = _kill_worker_running(client, f"gbif-dl-shard-{sid:06d}")
                    stored_at_kill = _stored(tmp_path)  # temp files have other stems
                    if killed is not None:
                        break
            time.sleep(0.05)
        thread.join(timeout=90)
        log = media.request_log()

    assert killed is not None, "no slow shard was seen running"
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    stats = outcome["stats"]
    assert (stats.success + stats.skipped, stats.failed) == (40, 0)
    _check_once(tmp_path, records)
    requests = collections.Counter(log)
    by_stem = {r["basename"]: r["url"] for r in records}
    stored_before = [by_stem[stem] for stem in stored_at_kill if stem in by_stem]
    assert stored_before, "nothing was stored before the kill"
    assert all(requests[url] == 1 for url in stored_before)
    assert set(requests) == {r["url"] for r in records}
    assert progress.totals() == {
        "success": stats.success, "failed": 0, "skipped": stats.skipped, "bytes": stats.bytes,
    }  # fmt: skip


@pytest.mark.slow
def test_cli_download_on_a_running_scheduler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gbif-dl download --urls F --runner dask --scheduler tcp://...` runs on that cluster (3
    workers, --per-host 1: never 2 in flight on a host) and logs the cluster's progress line."""
    with (
        MediaHosts(n_hosts=2) as media,
        distributed.LocalCluster(
            n_workers=3, threads_per_worker=1, processes=False, protocol="tcp",
            dashboard_address=None,
        ) as cluster,
    ):  # fmt: skip
        records = _records(media.base_urls, 20)
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(r["url"] + "\n" for r in records))
        root = tmp_path / "out"
        code = main([
            "download", "--urls", str(urls), "-o", str(root), "--runner", "dask",
            "--scheduler", cluster.scheduler_address, "--per-host", "1", "--shard-size", "5",
        ])  # fmt: skip
        per_host = [s.max_in_flight for s in media.stats().values()]
    captured = capsys.readouterr()
    assert code == EXIT_OK and max(per_host) == 1
    assert "20 images downloaded, 0 failed" in captured.out
    assert "20/20 img" in captured.err and "4/4 done" in captured.err
    assert _manifest_urls(root) == sorted(r["url"] for r in records)


def test_scheduler_flag_and_its_old_spelling() -> None:
    """--scheduler and --dask-address set the same option."""
    from gbif_dl.cli.parser import build_parser

    for flag in ("--scheduler", "--dask-address"):
        args = build_parser().parse_args(["download", "--runner", "dask", flag, "tcp://h:8786"])
        assert args.dask_address == "tcp://h:8786"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slurm_jobqueue_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_slurm_example_runs_on_a_local_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/slurm_jobqueue.py --local 2: the documented SLURM job, on a LocalCluster of this
    machine against the simulator, builds a balanced dataset with splits; a rerun resumes (no
    image requested again). dask-jobqueue is not needed for --local."""
    example = _example()
    with Simulation(seed=5, size=400, n_hosts=2, n_species=3) as simu:
        keys = [str(s["key"]) for s in simu.population.species[:2]]
        argv = ["--root", str(tmp_path), "--local", "2", "--nb-samples", "24", "--per-host", "1",
                "--shard-size", "5", "--api-url", simu.api_url]  # fmt: skip
        for key in keys:
            argv += ["--species-key", key]
        assert example.main(argv) == 0
        first = capsys.readouterr().out
        requests = sum(s.requests for s in simu.hosts.stats().values())
        assert example.main(argv) == 0
        again = capsys.readouterr().out
        assert sum(s.requests for s in simu.hosts.stats().values()) == requests
    rows = pq.read_table(tmp_path / MANIFEST_NAME).to_pylist()
    assert len(rows) == 24 and f"{sum(r['status'] == 'success' for r in rows)} stored" in first
    assert {r["label"] for r in rows} == set(keys)
    assert {r["subset"] for r in rows} <= {"train", "val", "test"}
    assert "0 stored, 0 failed, 24 skipped" in again

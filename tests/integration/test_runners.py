"""Shards, run_shard and the local and Dask runners: real HTTP to the media hosts, real files."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbif_dl.errors import ConfigError, MissingExtraError
from gbif_dl.fetch import FetchConfig
from gbif_dl.io import download
from gbif_dl.manifest import MANIFEST_NAME
from gbif_dl.records import url_basename
from gbif_dl.runners import run, share_fetch
from gbif_dl.shards.files import shard_files
from gbif_dl.shards.plan import plan_shards
from gbif_dl.shards.run import ShardConfig, run_shard
from gbif_dl.testing.mediahost import HostFaults, MediaHosts
from gbif_dl.writers._atomic import is_temp_name
from gbif_dl.writers.classes import CLASSES_NAME, load_classes
from gbif_dl.writers.imagefolder import existing_folders

TIMING_COLUMNS = {"updated", "elapsed_s"}


@pytest.fixture
def hosts() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=2) as media:
        yield media


def _records(bases: list[str], n: int, *, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        url = f"{bases[i % len(bases)]}/media/{5000 + i // 2}/{i}.jpg"
        out.append(
            {
                "url": url,
                "basename": url_basename(url),
                "label": f"species {i % 3}",
                "gbifID": str(5000 + i // 2),
                "datasetKey": f"ds-{i % 2}",
                "license": "http://creativecommons.org/licenses/by/4.0/",
                "rightsHolder": f"holder {i}",
            }
        )
    return out


def _files(root: Path) -> list[str]:
    """Every file below a folder of the root, relative and sorted (images and sidecars)."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.parent != root
    )


def _rows(root: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(root / MANIFEST_NAME).to_pylist()
    return sorted(
        ({k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows),
        key=lambda row: row["url"],
    )


def _requests(media: MediaHosts) -> int:
    return sum(s.requests for s in media.stats().values())


def test_sharded_local_run_matches_plain_download_and_reruns_for_free(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """runner="local" stores the same files and manifest rows as the plain download (splits
    included), keeps run state in files at the root, and a rerun makes no request."""
    records = _records(hosts.base_urls, 30)
    splits = {"train": 0.7, "test": 0.3}
    plain = download(records, root=tmp_path / "plain", splits=splits, progress=False)
    sharded = download(
        records,
        root=tmp_path / "sharded",
        splits=splits,
        runner="local",
        shard_size=8,
        progress=False,
    )
    assert (plain["success"], sharded["success"], sharded["failed"]) == (30, 30, 0)
    assert _files(tmp_path / "sharded") == _files(tmp_path / "plain")
    assert _rows(tmp_path / "sharded") == _rows(tmp_path / "plain")
    root_dirs = {p.name for p in (tmp_path / "sharded").iterdir() if p.is_dir()}
    assert root_dirs == {"train", "test"}  # class folders only; shard state is in root files
    for sid in range(4):
        assert (tmp_path / "sharded" / shard_files(sid).done).is_file()
    attribution = (tmp_path / "sharded" / "ATTRIBUTION.csv").read_text().splitlines()
    assert len(attribution) == 31
    classes = [(tmp_path / name / CLASSES_NAME).read_text() for name in ("plain", "sharded")]
    assert classes[0] == classes[1]
    assert load_classes(tmp_path / "sharded").labels == ["species 0", "species 1", "species 2"]

    before = _requests(hosts)
    again = download(
        records, root=tmp_path / "sharded", runner="local", shard_size=8, splits=splits
    )
    assert (again["success"], again["skipped"]) == (0, 30)
    assert _requests(hosts) == before


def test_half_done_shard_resumes_and_changed_input_runs_only_new_items(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """A shard without its marker resumes from its manifest part (no request for stored items);
    added records change only the shards they land in; repeated URLs are fetched once."""
    records = _records(hosts.base_urls, 20)
    stats = run(records + records[:3], tmp_path, shard_size=10)
    assert (stats.success, stats.skipped) == (20, 3)
    os.unlink(tmp_path / shard_files(1).done)  # as if killed after its last item
    before = _requests(hosts)
    assert run_shard(1, tmp_path).skipped == 10
    assert _requests(hosts) == before

    more = records + _records(hosts.base_urls, 5, start=20)
    stats = run(more, tmp_path, shard_size=10)
    assert (stats.success, stats.skipped) == (5, 20)
    assert _requests(hosts) == before + 5
    rows = _rows(tmp_path)
    assert [row["url"] for row in rows] == sorted(r["url"] for r in more)
    assert len(_files(tmp_path)) == 25


def test_sharded_hf_run_writes_the_same_metadata_and_classes_as_a_plain_run(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """runner= with output="hf" writes classes.json and every split's metadata.jsonl after the
    merge, identical to the plain download's; a rerun with new labels appends to classes.json."""
    records = _records(hosts.base_urls, 18)
    for record in records:
        record["scientificName"] = record["label"].upper()
    splits = {"train": 0.5, "test": 0.5}
    download(records, root=tmp_path / "plain", output="hf", splits=splits, progress=False)
    stats = download(
        records, root=tmp_path / "sharded", output="hf", splits=splits, runner="local",
        shard_size=5, progress=False,
    )  # fmt: skip
    assert (stats["success"], stats["failed"]) == (18, 0)
    for name in (CLASSES_NAME, "train/metadata.jsonl", "test/metadata.jsonl"):
        plain = (tmp_path / "plain" / name).read_text().splitlines()
        sharded = (tmp_path / "sharded" / name).read_text().splitlines()
        assert sorted(sharded) == sorted(plain) and plain, name
    assert load_classes(tmp_path / "sharded").names["species 1"] == "SPECIES 1"

    more = _records(hosts.base_urls, 4, start=18)
    for record in more:
        record["label"] = "a new species"
    download(
        records + more, root=tmp_path / "sharded", output="hf", splits=splits, runner="local",
        shard_size=5, progress=False,
    )  # fmt: skip
    labels = load_classes(tmp_path / "sharded").labels
    assert labels == ["species 0", "species 1", "species 2", "a new species"]
    lines = [
        line
        for split in ("train", "test")
        for line in (tmp_path / "sharded" / split / "metadata.jsonl").read_text().splitlines()
    ]
    assert len(lines) == 22 and sum('"class_index": 3' in line for line in lines) == 4


def test_streaming_and_sharded_runs_give_the_same_rows_for_every_kind_of_item(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """The one core: a streaming run and a sharded run of the same mixed input (records, URL
    strings, a repeated URL, an ftp URL, a record without url, a non-record) give the same
    manifest rows, files and counts; the sharded run reads the generator in the caller's
    thread (no async round trip)."""
    records = _records(hosts.base_urls, 12)
    odd: list[Any] = [records[0]["url"], {"url": "ftp://h.example/a.jpg"}, {"label": "x"}, 42]
    items = [*records, *odd, records[3]]
    readers: set[str] = set()

    def generate() -> Iterator[Any]:
        for item in items:
            readers.add(threading.current_thread().name)
            yield item

    splits = {"train": 0.5, "test": 0.5}
    plain = download(items, root=tmp_path / "plain", splits=splits, progress=False)
    sharded = download(
        generate(), root=tmp_path / "sharded", splits=splits, runner="local", shard_size=5,
        progress=False,
    )  # fmt: skip
    assert readers == {threading.current_thread().name}
    counts = ("success", "failed", "skipped", "reasons")
    assert [plain[k] for k in counts] == [sharded[k] for k in counts]
    assert (plain["success"], plain["failed"], plain["skipped"]) == (12, 3, 2)
    assert _files(tmp_path / "sharded") == _files(tmp_path / "plain")
    assert _rows(tmp_path / "sharded") == _rows(tmp_path / "plain")


def test_sharded_rerun_with_new_splits_moves_files_without_requests(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """The shards run the streaming core, so a rerun whose splits changed moves the stored
    files (the ImageFolder writer's job) instead of fetching them again, as a streaming rerun
    does."""
    records = _records(hosts.base_urls, 16)
    first = download(records, root=tmp_path, splits={"train": 0.5, "test": 0.5},
                     runner="local", shard_size=6, progress=False)  # fmt: skip
    assert first["success"] == 16
    before = _requests(hosts)
    again = download(records, root=tmp_path, splits={"a": 0.5, "b": 0.5}, seed=1,
                     runner="local", shard_size=6, progress=False)  # fmt: skip
    assert (again["success"], again["skipped"], _requests(hosts) - before) == (0, 16, 0)
    assert {name.split("/")[0] for name in _files(tmp_path)} == {"a", "b"}
    rows = _rows(tmp_path)
    assert len(rows) == 16 and {row["subset"] for row in rows} == {"a", "b"}
    assert all(row["path"].startswith(f"{row['subset']}/") for row in rows)
    assert sorted(row["path"] for row in rows) == _files(tmp_path)


def test_process_pool_runner_resizes_and_matches_one_process(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """workers=2 (a process pool over run_shard) gives the same files and rows as one process."""
    records = _records(hosts.base_urls, 16)
    fetch = FetchConfig(max_size=48, resize_workers=1, concurrency=8, per_host=4)
    one = run(records, tmp_path / "one", shard_size=4, workers=1, fetch=fetch)
    two = run(records, tmp_path / "two", shard_size=4, workers=2, fetch=fetch)
    assert one.success == two.success == 16
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert _rows(tmp_path / "one") == _rows(tmp_path / "two")
    for rel in _files(tmp_path / "two"):
        with Image.open(tmp_path / "two" / rel) as image:
            assert max(image.size) <= 48


def test_share_fetch_divides_politeness_and_bad_options_fail_fast(tmp_path: Path) -> None:
    """Caps are divided among workers (never below 1); wrong runner options raise ConfigError."""
    shared = share_fetch(FetchConfig(concurrency=100, per_host=16), 3)
    assert (shared.concurrency, shared.per_host) == (33, 5)
    assert share_fetch(FetchConfig(per_host=2), 20).per_host == 1
    with pytest.raises(ConfigError, match="unknown runner"):
        run(["http://127.0.0.1:9/a.jpg"], tmp_path, runner="spark")
    with pytest.raises(ConfigError, match="runner='dask'"):
        run(["http://127.0.0.1:9/a.jpg"], tmp_path, dask_address="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="shard_size"):
        run(["http://127.0.0.1:9/a.jpg"], tmp_path, shard_size=0)
    with pytest.raises(ConfigError, match="imagefolder"):
        download(["http://127.0.0.1:9/a.jpg"], root=tmp_path, runner="local", output="webdataset")


def test_missing_dask_fails_at_once_with_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without dask.distributed, runner="dask" raises MissingExtraError before any work."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'gbif-dl\[dask\]'"):
        run(["http://127.0.0.1:9/a.jpg"], tmp_path, runner="dask")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_dask_local_cluster_matches_local_runner_and_shares_per_host_cap(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """A 4-shard job on a LocalCluster of 2 worker processes stores the same files and manifest
    rows as the local runner, and both workers together stay within per_host."""
    records = _records(hosts.base_urls, 40)
    local = download(records, root=tmp_path / "local", runner="local", shard_size=10)
    hosts.reset_stats()
    dask_stats = download(
        records, root=tmp_path / "dask", runner="dask", workers=2, shard_size=10, per_host=4
    )
    assert local["success"] == dask_stats["success"] == 40
    assert _files(tmp_path / "dask") == _files(tmp_path / "local")
    assert _rows(tmp_path / "dask") == _rows(tmp_path / "local")
    assert max(s.max_in_flight for s in hosts.stats().values()) <= 4


def _executing(dask_worker: Any) -> tuple[list[str], int]:
    return [str(ts.key) for ts in dask_worker.state.executing], os.getpid()


@pytest.mark.slow
def test_killed_worker_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL of the worker running a shard mid-way: Dask runs the shard again elsewhere, it
    resumes from its journal, and every item is in the manifest and on disk exactly once."""
    import distributed

    slow = HostFaults(latency_s=0.25)
    with (
        MediaHosts(n_hosts=2, faults={1: slow}) as media,
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        fast_base, slow_base = media.base_urls
        records = _records([fast_base], 30) + _records([slow_base], 20, start=30)
        outcome: dict[str, Any] = {}

        def job() -> None:
            try:
                outcome["stats"] = run(
                    records,
                    tmp_path,
                    runner="dask",
                    dask_client=client,
                    shard_size=10,
                    fetch=FetchConfig(per_host=2, concurrency=8),
                )
            except BaseException as exc:  # re-raised in the test thread
                outcome["error"] = exc

        thread = threading.Thread(target=job)
        thread.start()
        journal = tmp_path / shard_files(4).journal  # the last shard: all from the slow host
        deadline = time.monotonic() + 40
        killed = None
        slow_stems = {r["basename"] for r in records[30:]}
        requested_at_kill = stored_at_kill = 0
        while killed is None and time.monotonic() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= 3:
                for keys, pid in client.run(_executing).values():
                    if any("gbif-dl-shard-000004" in key for key in keys):
                        os.kill(pid, signal.SIGKILL)
                        killed = pid
                        # requests to the slow host so far, and its items already stored
                        requested_at_kill = media.stats()[slow_base.split("//")[1]].requests
                        stored_at_kill = len(slow_stems & {Path(r).stem for r in _files(tmp_path)})
            time.sleep(0.05)
        thread.join(timeout=50)
        slow_requests = media.stats()[slow_base.split("//")[1]].requests

    assert killed is not None, "the slow shard was never seen running"
    assert not thread.is_alive(), "the job did not finish after the kill"
    assert "error" not in outcome, outcome.get("error")
    assert all((tmp_path / shard_files(sid).done).is_file() for sid in range(5))
    stats = outcome["stats"]
    assert (stats.success + stats.skipped, stats.failed) == (50, 0)
    urls = [row["url"] for row in _rows(tmp_path)]
    assert sorted(urls) == sorted(r["url"] for r in records)  # each exactly once
    stems = [Path(rel).stem for rel in _files(tmp_path)]
    assert sorted(stems) == sorted(r["basename"] for r in records)  # one file per item
    assert not [p for p in tmp_path.rglob("*") if is_temp_name(p.name)]
    # what the killed run had stored was not fetched again: the only repeated requests are
    # those made before the kill whose images were not stored yet (in flight or being written)
    assert 20 <= slow_requests <= 20 + (requested_at_kill - stored_at_kill)
    # and the bound says something: most requested images were stored when the kill came
    assert requested_at_kill - stored_at_kill < 10


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize("resumed", [False, True])
def test_a_resumed_shard_probes_the_folders_its_job_created(
    hosts: MediaHosts, tmp_path: Path, resumed: bool
) -> None:
    """A shard's first attempt probes only the folders that existed before the job; a shard
    that ran before in this job (a killed worker left its journal) probes them all, so an
    image that attempt stored without recording it is adopted, not requested again."""
    records = _records(hosts.base_urls, 3)
    plan_shards(records, tmp_path, size=3)
    before_job = existing_folders(tmp_path)
    record = records[0]
    folder = tmp_path / record["label"]  # created during the job, after the listing
    folder.mkdir()
    (folder / f"{record['basename']}.jpg").write_bytes(_jpeg())
    if resumed:
        (tmp_path / shard_files(0).journal).write_text("")  # the earlier attempt's journal
    config = ShardConfig(fetch=FetchConfig(allow_private=True), folders_before=before_job)
    result = run_shard(0, tmp_path, config)
    assert (result.success + result.skipped, result.failed) == (3, 0)
    assert _requests(hosts) == (2 if resumed else 3)
    assert result.skipped == (1 if resumed else 0)

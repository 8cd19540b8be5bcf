"""download(processes=...): a plain download fetched by several processes gives the streaming
download's files and rows; "auto" picks them only for a large input it can shard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gbif_dl.errors import ConfigError
from gbif_dl.io import download
from gbif_dl.manifest import MANIFEST_NAME
from gbif_dl.options import DownloadOptions
from gbif_dl.records import url_basename
from gbif_dl.runners import processes as processes_module
from gbif_dl.runners.processes import choose_processes, sharded_options
from gbif_dl.shards.files import shard_ids_on_disk
from gbif_dl.testing.mediahost import MediaHosts

TIMING_COLUMNS = {"updated", "elapsed_s"}


@pytest.fixture
def hosts() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=2) as media:
        yield media


def _records(bases: list[str], n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        url = f"{bases[i % len(bases)]}/media/{7000 + i // 2}/{i}.jpg"
        out.append(
            {
                "url": url,
                "basename": url_basename(url),
                "label": f"species {i % 3}",
                "gbifID": str(7000 + i // 2),
                "license": "http://creativecommons.org/licenses/by/4.0/",
            }
        )
    return out


def _files(root: Path) -> list[str]:
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


def test_two_processes_give_the_streaming_download_s_files_rows_and_counts(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """processes=2 fetches in shards in two processes: the same files, manifest rows and
    counts as one streaming process, bad items and a repeated URL included; a rerun requests
    nothing."""
    records = _records(hosts.base_urls, 14)
    items: list[Any] = [*records, {"url": "ftp://h.example/a.jpg"}, records[2]]
    splits = {"train": 0.5, "test": 0.5}
    plain = download(items, root=tmp_path / "plain", splits=splits, progress=False)
    multi = download(
        items, root=tmp_path / "multi", splits=splits, processes=2, shard_size=4, progress=False
    )
    counts = ("success", "failed", "skipped", "reasons")
    assert [plain[k] for k in counts] == [multi[k] for k in counts]
    assert (multi["success"], multi["failed"], multi["skipped"]) == (14, 1, 1)
    assert _files(tmp_path / "multi") == _files(tmp_path / "plain")
    assert _rows(tmp_path / "multi") == _rows(tmp_path / "plain")
    assert len(shard_ids_on_disk(tmp_path / "multi")) == 4  # 15 distinct records, 4 a shard

    before = sum(s.requests for s in hosts.stats().values())
    again = download(
        items, root=tmp_path / "multi", splits=splits, processes=2, shard_size=4, progress=False
    )
    plain_again = download(items, root=tmp_path / "plain", splits=splits, progress=False)
    assert [again[k] for k in counts] == [plain_again[k] for k in counts]
    assert (again["success"], again["failed"], again["skipped"]) == (0, 1, 15)
    assert sum(s.requests for s in hosts.stats().values()) == before


def test_auto_streams_a_small_input(hosts: MediaHosts, tmp_path: Path) -> None:
    """processes="auto" below AUTO_MIN_RECORDS is the streaming download: no shard files."""
    stats = download(_records(hosts.base_urls, 6), root=tmp_path, processes="auto", progress=False)
    assert stats["success"] == 6
    assert shard_ids_on_disk(tmp_path) == []


def test_auto_shards_a_large_generator_and_reads_it_whole(
    hosts: MediaHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generator at least AUTO_MIN_RECORDS long goes to several processes; the records read
    to find that out are fetched too, once each."""
    monkeypatch.setattr(processes_module, "AUTO_MIN_RECORDS", 8)
    monkeypatch.setattr(processes_module, "auto_processes", lambda: 2)
    monkeypatch.setattr(processes_module, "PROCESS_SHARD_SIZE", 5)
    records = _records(hosts.base_urls, 12)
    stats = download((record for record in records), root=tmp_path, processes="auto")
    assert (stats["success"], stats["failed"], stats["skipped"]) == (12, 0, 0)
    assert len(shard_ids_on_disk(tmp_path)) == 3
    assert [row["url"] for row in _rows(tmp_path)] == sorted(r["url"] for r in records)


def test_auto_reads_a_peeked_generator_back_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """What "auto" read of a generator comes first again, then the rest, in order."""
    monkeypatch.setattr(processes_module, "AUTO_MIN_RECORDS", 3)
    monkeypatch.setattr(processes_module, "auto_processes", lambda: 2)
    options = DownloadOptions(processes="auto")
    items, processes = choose_processes((f"http://h/{i}.jpg" for i in range(5)), options)
    assert processes == 2 and list(items) == [f"http://h/{i}.jpg" for i in range(5)]
    items, processes = choose_processes((f"http://h/{i}.jpg" for i in range(2)), options)
    assert processes == 1 and list(items) == ["http://h/0.jpg", "http://h/1.jpg"]


def test_auto_stays_in_one_process_when_the_job_cannot_be_sharded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A layout that does not shard, an unpicklable is_valid_file, an async input or a runner:
    one process, whatever the input's length."""
    monkeypatch.setattr(processes_module, "AUTO_MIN_RECORDS", 2)
    monkeypatch.setattr(processes_module, "auto_processes", lambda: 2)
    urls = [f"http://h/{i}.jpg" for i in range(4)]
    assert choose_processes(urls, DownloadOptions(processes="auto"))[1] == 2
    webdataset = DownloadOptions(processes="auto", output="webdataset")
    assert choose_processes(urls, webdataset)[1] == 1
    check = DownloadOptions(processes="auto").fetch.__class__(is_valid_file=lambda body: True)
    assert choose_processes(urls, DownloadOptions(processes="auto", fetch=check))[1] == 1

    async def agen() -> Any:
        for url in urls:
            yield url

    assert choose_processes(agen(), DownloadOptions(processes="auto"))[1] == 1
    assert choose_processes(urls, DownloadOptions(runner="local"))[1] == 1


def test_auto_is_the_default_and_shards_a_large_input_without_being_asked(
    hosts: MediaHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """download() without processes= is processes="auto": a large input is fetched by
    several processes, with the files a streaming run gives."""
    assert DownloadOptions().processes == "auto"
    monkeypatch.setattr(processes_module, "AUTO_MIN_RECORDS", 8)
    monkeypatch.setattr(processes_module, "auto_processes", lambda: 2)
    monkeypatch.setattr(processes_module, "PROCESS_SHARD_SIZE", 5)
    records = _records(hosts.base_urls, 10)
    stats = download(records, root=tmp_path / "auto", progress=False)
    plain = download(records, root=tmp_path / "plain", processes=1, progress=False)
    assert (stats["success"], stats["failed"]) == (plain["success"], plain["failed"]) == (10, 0)
    assert len(shard_ids_on_disk(tmp_path / "auto")) == 2
    assert shard_ids_on_disk(tmp_path / "plain") == []
    assert _files(tmp_path / "auto") == _files(tmp_path / "plain")
    assert _rows(tmp_path / "auto") == _rows(tmp_path / "plain")


def test_auto_resizes_in_several_processes_into_the_streaming_run_s_files(
    hosts: MediaHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resize job that "auto" shards stores the same resized files and rows as one
    streaming process."""
    monkeypatch.setattr(processes_module, "AUTO_MIN_RECORDS", 6)
    monkeypatch.setattr(processes_module, "auto_processes", lambda: 2)
    monkeypatch.setattr(processes_module, "PROCESS_SHARD_SIZE", 4)
    records = _records(hosts.base_urls, 8)
    auto = download(records, root=tmp_path / "auto", max_size=32, progress=False)
    plain = download(records, root=tmp_path / "plain", max_size=32, processes=1, progress=False)
    assert (auto["success"], auto["failed"]) == (plain["success"], plain["failed"]) == (8, 0)
    assert len(shard_ids_on_disk(tmp_path / "auto")) == 2
    assert _files(tmp_path / "auto") == _files(tmp_path / "plain")
    assert _rows(tmp_path / "auto") == _rows(tmp_path / "plain")
    from PIL import Image

    for name in _files(tmp_path / "auto"):
        with Image.open(tmp_path / "auto" / name) as image:
            assert max(image.size) <= 32


def test_auto_keeps_an_object_store_root_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sharded run writes local folders only: a store root streams, and an explicit
    processes=N there is refused before any request."""
    monkeypatch.setattr(processes_module, "AUTO_MIN_RECORDS", 2)
    monkeypatch.setattr(processes_module, "auto_processes", lambda: 2)
    urls = [f"http://h/{i}.jpg" for i in range(4)]
    store = DownloadOptions(root="s3://bucket/ds", output="hf")
    assert choose_processes(urls, store)[1] == 1
    with pytest.raises(ConfigError, match="processes=2 cannot write to the object store"):
        DownloadOptions(root="s3://bucket/ds", output="hf", processes=2)
    assert DownloadOptions(runner="local").processes == "auto"  # the default: no conflict


def test_several_processes_adopt_an_earlier_run_s_unjournaled_files(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """Files an earlier run stored but never recorded (no manifest) sit in folders that existed
    before the job: the shards probe them and adopt the files without a request."""
    records = _records(hosts.base_urls, 8)
    root = tmp_path / "data"
    download(records, root=root, processes=1, progress=False)
    expected = _files(root)
    (root / MANIFEST_NAME).unlink()  # as if the run was killed before recording anything
    hosts.reset_stats()
    stats = download(records, root=root, processes=2, shard_size=3, progress=False)
    assert (stats["success"], stats["skipped"]) == (0, 8)
    assert sum(s.requests for s in hosts.stats().values()) == 0
    assert _files(root) == expected


def test_sharded_options_keep_a_given_shard_size() -> None:
    options = sharded_options(DownloadOptions(processes=3, shard_size=300), 3)
    assert (options.runner, options.workers, options.shard_size, options.processes) == (
        "local",
        3,
        300,
        1,
    )


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"processes": 0}, "processes must be a positive integer or 'auto'"),
        ({"processes": "many"}, "processes must be a positive integer or 'auto'"),
        ({"processes": True}, "processes must be a positive integer or 'auto'"),
        ({"processes": 2, "runner": "local"}, "use workers="),
        ({"processes": 2, "output": "webdataset"}, "drop processes="),
    ],
)
def test_bad_processes_values_are_refused_before_any_request(
    keywords: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DownloadOptions(**keywords)

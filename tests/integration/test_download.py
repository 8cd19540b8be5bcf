"""gbif_dl.io.download end to end: real HTTP to the media hosts, real files, real parquet."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbif_dl.errors import ConfigError, OutputError
from gbif_dl.fetch.result import FetchResult
from gbif_dl.io import OUTPUTS, DownloadStats, download, download_async
from gbif_dl.manifest import JOURNAL_NAME, MANIFEST_NAME, merge_journal_file
from gbif_dl.records import url_basename
from gbif_dl.testing.mediahost import HostFaults, MediaHosts
from gbif_dl.writers._atomic import is_temp_name
from gbif_dl.writers.classes import CLASSES_NAME
from gbif_dl.writers.imagefolder import ImageFolderWriter

HERE = Path(__file__).parent
STATE_FILES = {
    MANIFEST_NAME,
    JOURNAL_NAME,
    ".gbif-dl.lock",
    "ATTRIBUTION.csv",
    "CITATION.txt",
    CLASSES_NAME,
}
EXT_OF_FORMAT = {"JPEG": ".jpg", "PNG": ".png"}


@pytest.fixture
def hosts() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=2) as media:
        yield media


def _requests(media: MediaHosts) -> int:
    return sum(s.requests for s in media.stats().values())


def _records(media: MediaHosts, n: int, *, labels: int = 3, per_occurrence: int = 1) -> list[dict]:
    out = []
    for i in range(n):
        gbif_id = 1000 + i // per_occurrence
        base = media.base_urls[i % len(media.base_urls)]
        out.append(
            {
                "url": f"{base}/media/{gbif_id}/{i}.jpg",
                "basename": url_basename(f"{base}/media/{gbif_id}/{i}.jpg"),
                "label": f"species {i % labels}",
                "gbifID": str(gbif_id),
                "datasetKey": f"ds-{gbif_id % 2}",
                "license": "http://creativecommons.org/licenses/by/4.0/",
                "rightsHolder": f"holder {i}",
                "creator": f"creator {i}",
                "publisher": "Museum",
                "references": f"https://example.org/obs/{gbif_id}",
            }
        )
    return out


def _images(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name not in STATE_FILES and not is_temp_name(p.name)
    )


def _manifest(root: Path) -> list[dict]:
    return pq.read_table(root / MANIFEST_NAME).to_pylist()


def test_layout_manifest_and_failures(hosts: MediaHosts, tmp_path: Path) -> None:
    """Images land at root/[subset/]label/basename.ext (ext from content); the manifest has one
    typed row per item, failures included."""
    base = hosts.base_urls[0]
    records = _records(hosts, 12)
    records[0]["subset"] = "holdout"
    bad = [
        {"url": f"{base}/status/404/a.jpg", "label": "x", "gbifID": "9"},
        {"url": f"{base}/html/b.jpg", "label": "x", "gbifID": "9"},
    ]
    root = tmp_path / "data"
    stats = download(records + bad, root=root, retries=0, progress=False)

    assert isinstance(stats, DownloadStats)
    assert (stats["success"], stats["failed"], stats["skipped"]) == (12, 2, 0)
    assert stats["reasons"] == {"http_status": 1, "not_image": 1}
    assert stats["manifest"] == str(root / MANIFEST_NAME)
    for rec in records:
        folder = root / rec.get("subset", "") / rec["label"]
        (found,) = folder.glob(rec["basename"] + ".*")
        with Image.open(found) as image:
            assert found.suffix == EXT_OF_FORMAT[image.format]
            image.load()
    assert {p.name for p in root.iterdir() if p.is_file()} <= STATE_FILES
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "holdout",
        "species 0",
        "species 1",
        "species 2",
    ]

    rows = {r["url"]: r for r in _manifest(root)}
    assert len(rows) == 14
    ok = rows[records[1]["url"]]
    assert ok["status"] == "success" and ok["reason"] is None and ok["http_status"] == 200
    assert ok["path"] == f"species 1/{records[1]['basename']}{Path(ok['path']).suffix}"
    assert ok["bytes"] == (root / ok["path"]).stat().st_size and len(ok["sha256"]) == 64
    with Image.open(root / ok["path"]) as image:
        assert (ok["width"], ok["height"]) == image.size
    assert (ok["gbifID"], ok["datasetKey"], ok["rightsHolder"]) == ("1001", "ds-1", "holder 1")
    assert rows[records[0]["url"]]["subset"] == "holdout"
    not_found = rows[bad[0]["url"]]
    assert (not_found["status"], not_found["reason"], not_found["http_status"]) == (
        "failed",
        "http_status",
        404,
    )
    assert not_found["path"] is None
    assert rows[bad[1]["url"]]["reason"] == "not_image"
    schema = pq.read_schema(root / MANIFEST_NAME)
    assert schema.field("http_status").type == pa.int32()
    assert schema.field("bytes").type == pa.int64()


def test_rerun_skips_done_retries_failed_and_overwrite_forces(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """A rerun makes no request for done items nor for a permanent failure (a 404), which it
    counts as failed; retry_failed=True retries it; overwrite re-fetches all."""
    records = [*_records(hosts, 10), {"url": f"{hosts.base_urls[0]}/status/404/z.jpg"}]
    root = tmp_path / "data"
    download(records, root=root, retries=0, progress=False)
    before = {p: p.stat().st_mtime_ns for p in _images(root)}
    hosts.reset_stats()

    plain = download(records, root=root, retries=0, progress=False)
    assert (plain["success"], plain["failed"], plain["skipped"]) == (0, 1, 10)
    assert plain["not_retried"] == 1 and _requests(hosts) == 0  # a 404 stays a 404

    again = download(records, root=root, retries=0, progress=False, retry_failed=True)
    assert (again["success"], again["failed"], again["skipped"]) == (0, 1, 10)
    assert _requests(hosts) == 1  # only the failed one was tried again
    assert {p: p.stat().st_mtime_ns for p in _images(root)} == before
    assert len(_manifest(root)) == 11

    hosts.reset_stats()
    forced = download(records, root=root, retries=0, overwrite=True, progress=False)
    assert (forced["success"], forced["failed"], forced["skipped"]) == (10, 1, 0)
    assert _requests(hosts) == 11
    assert len(_manifest(root)) == 11 and len(_images(root)) == 10


def test_failed_items_succeed_on_rerun(tmp_path: Path) -> None:
    """Items that failed transiently (503 without retries) are fetched on the next run."""
    with MediaHosts(n_hosts=1, faults=HostFaults(error_rate=0.5, fault_attempts=1)) as media:
        records = _records(media, 30)
        root = tmp_path / "data"
        first = download(records, root=root, retries=0, progress=False)
        assert first["failed"] > 0 and first["reasons"] == {"http_status": first["failed"]}
        requests_before = _requests(media)  # (reset_stats would re-arm the faults)
        second = download(records, root=root, retries=0, progress=False)
        assert second["success"] == first["failed"] and second["skipped"] == first["success"]
        assert _requests(media) - requests_before == first["failed"]
    rows = _manifest(root)
    assert len(rows) == 30 and {r["status"] for r in rows} == {"success"}


def test_deleted_file_is_fetched_again(hosts: MediaHosts, tmp_path: Path) -> None:
    """A manifest success whose file was deleted is downloaded again (one stat per item)."""
    records = _records(hosts, 5)
    root = tmp_path / "data"
    download(records, root=root, progress=False)
    _images(root)[0].unlink()
    hosts.reset_stats()
    stats = download(records, root=root, progress=False)
    assert (stats["success"], stats["skipped"]) == (1, 4) and _requests(hosts) == 1


def test_unjournaled_files_and_temp_leftovers_are_recovered(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """Files stored by a run that died before journaling them are adopted without a request
    (manifest rows rebuilt from the files); leftover temp files are removed."""
    records = _records(hosts, 6)
    root = tmp_path / "data"
    download(records, root=root, progress=False)
    expected = {r["url"]: (r["path"], r["sha256"], r["bytes"]) for r in _manifest(root)}
    (root / MANIFEST_NAME).unlink()  # as if the run was killed before any journal line
    leftover = root / "species 0" / f".{records[0]['basename']}.jpg.gbif-dl-0123456789ab.tmp"
    leftover.write_bytes(b"partial")
    hosts.reset_stats()
    stats = download(records, root=root, progress=False)
    assert (stats["success"], stats["skipped"]) == (0, 6) and _requests(hosts) == 0
    assert not leftover.exists()
    assert {r["url"]: (r["path"], r["sha256"], r["bytes"]) for r in _manifest(root)} == expected


def test_grouped_splits_are_deterministic_and_stable(hosts: MediaHosts, tmp_path: Path) -> None:
    """splits= puts every occurrence's media in one split; adding items keeps old assignments."""
    records = _records(hosts, 60, per_occurrence=3)
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    root = tmp_path / "data"
    download(records[:30], root=root, splits=fractions, seed=5, progress=False)
    first = {r["url"]: r["subset"] for r in _manifest(root)}
    assert set(first.values()) <= set(fractions) and len(set(first.values())) > 1

    hosts.reset_stats()
    stats = download(records, root=root, splits=fractions, seed=5, progress=False)
    assert (stats["success"], stats["skipped"]) == (30, 30)
    assert _requests(hosts) == 30
    rows = _manifest(root)
    subsets = {r["url"]: r["subset"] for r in rows}
    assert all(subsets[url] == split for url, split in first.items())
    by_occurrence: dict[str, set[str]] = {}
    for row in rows:
        by_occurrence.setdefault(row["gbifID"], set()).add(row["subset"])
        assert row["path"].split("/")[0] == row["subset"]
    assert all(len(s) == 1 for s in by_occurrence.values())

    other = tmp_path / "other"
    download(records, root=other, splits=fractions, seed=5, progress=False)
    assert {r["url"]: r["subset"] for r in _manifest(other)} == subsets


def test_changed_splits_move_files_without_requests(hosts: MediaHosts, tmp_path: Path) -> None:
    """Rerunning with another seed moves stored files to their new split (no request, no copy
    left behind in the old split)."""
    records = _records(hosts, 20)
    fractions = {"train": 0.5, "test": 0.5}
    root = tmp_path / "data"
    download(records, root=root, splits=fractions, seed=1, progress=False)
    hosts.reset_stats()
    stats = download(records, root=root, splits=fractions, seed=2, progress=False)
    assert stats["skipped"] == 20 and _requests(hosts) == 0
    rows = _manifest(root)
    assert {r["path"] for r in rows} == {p.relative_to(root).as_posix() for p in _images(root)}
    assert all(r["path"].split("/")[0] == r["subset"] for r in rows)
    assert len(_images(root)) == 20


def test_random_subsets_reproducible_and_item_subset_wins(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """random_subsets draws a subset per item (reproducible by seed); an item's subset wins."""
    records = _records(hosts, 40)
    records[0]["subset"] = "mine"
    subsets = {"train": 0.5, "test": 0.5}
    a = tmp_path / "a"
    b = tmp_path / "b"
    download(records, root=a, random_subsets=subsets, seed=1, progress=False)
    download(records, root=b, random_subsets=subsets, seed=1, progress=False)
    rows_a = {r["url"]: r["subset"] for r in _manifest(a)}
    assert rows_a == {r["url"]: r["subset"] for r in _manifest(b)}
    assert rows_a[records[0]["url"]] == "mine"
    assert set(rows_a.values()) == {"train", "test", "mine"}
    assert sorted(p.name for p in a.iterdir() if p.is_dir()) == ["mine", "test", "train"]
    with pytest.raises(ConfigError, match="add up to 1"):
        download(records, root=a, random_subsets={"train": 0.5, "test": 0.3})


def test_url_strings_and_text_file(hosts: MediaHosts, tmp_path: Path) -> None:
    """A list of URL strings and a .txt file of URLs both download into the root folder."""
    urls = [f"{hosts.base_urls[i % 2]}/media/{i}/0.jpg" for i in range(6)]
    listed = download(urls[:3], root=tmp_path / "list", progress=False)
    assert listed["success"] == 3
    assert sorted(p.stem for p in _images(tmp_path / "list")) == sorted(
        url_basename(u) for u in urls[:3]
    )
    url_file = tmp_path / "urls.txt"
    url_file.write_text("# media\n" + "\n".join(urls) + "\n\n")
    from_file = download(str(url_file), root=tmp_path / "file", progress=False)
    assert from_file["success"] == 6
    assert all(p.parent == tmp_path / "file" for p in _images(tmp_path / "file"))


def test_async_generator_input(hosts: MediaHosts, tmp_path: Path) -> None:
    """An async generator of records is consumed like a list."""
    records = _records(hosts, 8)

    async def produce():
        for record in records:
            await asyncio.sleep(0)
            yield record

    stats = download(produce(), root=tmp_path / "data", progress=False)
    assert stats["success"] == 8 and len(_images(tmp_path / "data")) == 8


def test_sync_generator_input(hosts: MediaHosts, tmp_path: Path) -> None:
    """A plain generator is consumed lazily (in a worker thread) like a list."""
    records = _records(hosts, 8)
    stats = download((r for r in records), root=tmp_path / "data", progress=False)
    assert stats["success"] == 8


def test_download_inside_a_running_event_loop(hosts: MediaHosts, tmp_path: Path) -> None:
    """download() works when called from code already running an event loop (Jupyter)."""
    records = _records(hosts, 5)

    async def notebook_cell() -> tuple[DownloadStats, DownloadStats]:
        sync_stats = download(records, root=tmp_path / "sync", progress=False)
        async_stats = await download_async(records, root=tmp_path / "async", progress=False)
        return sync_stats, async_stats

    sync_stats, async_stats = asyncio.run(notebook_cell())
    assert sync_stats["success"] == 5 and async_stats["success"] == 5


def test_hostile_records_write_nothing_outside_root(hosts: MediaHosts, tmp_path: Path) -> None:
    """A traversal label, a file: url and a redirect to file: write nothing outside the root and
    are recorded with reason unsafe_url."""
    base = hosts.base_urls[0]
    root = tmp_path / "sandbox" / "data"
    hostile = [
        {"url": f"{base}/media/1/0.jpg", "label": "../../etc", "basename": "../../passwd"},
        {"url": f"{base}/media/1/1.jpg", "label": "/abs/path", "subset": ".."},
        {"url": "file:///etc/passwd", "label": "x"},
        {"url": "ftp://example.org/a.jpg", "label": "x"},
        {"url": "data:image/png;base64,AAAA", "label": "x"},
        {"url": f"{base}/redirect?to=file:///etc/passwd", "label": "x"},
        {"label": "no url"},
        42,
    ]
    stats = download(hostile, root=root, progress=False)
    assert (stats["success"], stats["failed"]) == (2, 6)
    for path in tmp_path.rglob("*"):
        assert path == root.parent or root == path or root in path.parents, path
    rows = {r["url"]: r for r in _manifest(root)}
    assert len(rows) == 8
    for url in ("file:///etc/passwd", "ftp://example.org/a.jpg", "data:image/png;base64,AAAA"):
        assert rows[url]["reason"] == "unsafe_url" and rows[url]["status"] == "failed"
    assert rows[f"{base}/redirect?to=file:///etc/passwd"]["reason"] == "unsafe_url"
    invalid = [r for r in rows.values() if r["reason"] == "invalid"]
    assert len(invalid) == 2
    for row in rows.values():
        if row["path"]:
            assert ".." not in row["path"].split("/") and not row["path"].startswith("/")
            assert (root / row["path"]).is_file()


def test_attribution_and_citation_files(hosts: MediaHosts, tmp_path: Path) -> None:
    """ATTRIBUTION.csv lists every stored file with licence and credit; CITATION.txt counts
    occurrences per GBIF dataset."""
    records = _records(hosts, 8, per_occurrence=2)
    records.append({"url": f"{hosts.base_urls[0]}/status/404/q.jpg", "datasetKey": "ds-9"})
    root = tmp_path / "data"
    download(records, root=root, retries=0, progress=False)
    with open(root / "ATTRIBUTION.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    assert {r["file"] for r in rows} == {p.relative_to(root).as_posix() for p in _images(root)}
    first = next(r for r in rows if r["url"] == records[0]["url"])
    assert first["license"] == records[0]["license"]
    assert (first["rightsHolder"], first["creator"], first["publisher"]) == (
        "holder 0",
        "creator 0",
        "Museum",
    )
    assert first["occurrence"] == "https://www.gbif.org/occurrence/1000"
    citation = (root / "CITATION.txt").read_text()
    assert "ds-0,2" in citation and "ds-1,2" in citation and "ds-9" not in citation


def test_unusable_root_raises_output_error_before_requests(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """A root that is a file, or below a file, raises OutputError and makes no request."""
    records = _records(hosts, 3)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        download(records, root=a_file, progress=False)
    with pytest.raises(OutputError, match="root="):
        download(records, root=a_file / "sub", progress=False)
    assert _requests(hosts) == 0


def test_deprecated_arguments_warn_and_unknown_ones_fail(hosts: MediaHosts, tmp_path: Path) -> None:
    """gbif-dl 0.1's tcp_connections/nb_workers/batch_size warn; a typo is a ConfigError."""
    records = _records(hosts, 2)
    with pytest.warns(DeprecationWarning) as caught:
        stats = download(
            records, root=tmp_path / "d", tcp_connections=4, nb_workers=2, progress=False
        )
    assert stats["success"] == 2
    messages = " ".join(str(w.message) for w in caught)
    assert "tcp_connections" in messages and "nb_workers" in messages
    with pytest.raises(ConfigError, match="overwrite"):
        download(records, root=tmp_path / "d", overwrit=True)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    """Kill -9 mid-run, rerun: every final file decodes, the manifest has every url once, and
    nothing stored before the kill is requested again."""
    n = 300
    with MediaHosts(n_hosts=2, faults=HostFaults(latency_s=0.03)) as media:
        records = _records(media, n, labels=4)
        records_file = tmp_path / "records.json"
        records_file.write_text(json.dumps(records))
        root = tmp_path / "data"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GBIF_DL_ALLOW_PRIVATE": "1"}
        child = subprocess.Popen(
            [sys.executable, str(HERE / "kill_helper.py"), str(records_file), str(root)],
            env=env,
            stderr=subprocess.PIPE,
        )
        journal = root / JOURNAL_NAME
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 40:
                break
            time.sleep(0.01)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stderr is not None
        child.stderr.close()

        stored_before = _images(root)
        assert 40 <= len(stored_before) < n
        for path in stored_before:  # no partial file under a final name
            with Image.open(path) as image:
                image.load()
        journaled = journal.read_bytes().count(b"\n")

        media.reset_stats()
        stats = download(records, root=root, progress=False)
        requested_again = sum(s.requests for s in media.stats().values())

    assert stats["failed"] == 0
    assert stats["skipped"] == len(stored_before) and stats["success"] == n - len(stored_before)
    assert requested_again == n - len(stored_before)  # stored files are never fetched twice
    assert journaled <= len(stored_before)
    assert not [p for p in root.rglob("*") if is_temp_name(p.name)]
    images = _images(root)
    assert len(images) == n
    for path in images:
        with Image.open(path) as image:
            image.load()
    rows = _manifest(root)
    assert sorted(r["url"] for r in rows) == sorted(r["url"] for r in records)
    assert {r["status"] for r in rows} == {"success"}
    assert {r["path"] for r in rows} == {p.relative_to(root).as_posix() for p in images}


class _GatedWriter(ImageFolderWriter):
    """An ImageFolder writer whose writes wait for a gate: the run is cancelled meanwhile."""

    entered = threading.Event()
    gate = threading.Event()

    def write(self, result: FetchResult) -> str:
        type(self).entered.set()
        type(self).gate.wait(10)
        return super().write(result)


def test_cancel_while_a_file_is_being_written_keeps_its_manifest_row(
    hosts: MediaHosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled (Ctrl-C) while a writer thread is storing a file: the thread still puts the
    file in place, so its row must reach the manifest; the rerun then makes no request for it."""
    monkeypatch.setitem(OUTPUTS, "gated", f"{__name__}:_GatedWriter")
    _GatedWriter.entered.clear()
    _GatedWriter.gate.clear()
    records = _records(hosts, 1)
    root = tmp_path / "out"

    async def cancelled_run() -> None:
        task = asyncio.ensure_future(download_async(records, root=root, output="gated"))
        assert await asyncio.to_thread(_GatedWriter.entered.wait, 10)
        task.cancel()
        await asyncio.sleep(0.05)
        _GatedWriter.gate.set()  # the write completes after the cancellation
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled_run())
    stored = [p for p in root.rglob("*.jpg")]
    assert len(stored) == 1
    merge_journal_file(root)
    rows = pq.read_table(root / MANIFEST_NAME).to_pylist()
    assert [(r["status"], r["path"]) for r in rows] == [
        ("success", stored[0].relative_to(root).as_posix())
    ]
    before = _requests(hosts)
    stats = download(records, root=root)
    assert (stats.skipped, stats.success, _requests(hosts) - before) == (1, 0, 0)

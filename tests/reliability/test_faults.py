"""The fault matrix: every fault has a documented outcome (RELIABILITY.md).

Whatever the fault, the outcome is the same four things: no partial file under a final name, no
manifest row lost or duplicated, a clear message (a typed reason + detail per item, or one
``OutputError`` for the whole run), and a rerun that completes the job.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import (
    ResetServer,
    assert_complete_images,
    assert_manifest_exact,
    manifest_rows,
    remount,
    requests,
    stored_files,
    temp_files,
    tmpfs,
)

from gbif_dl.errors import OutputError
from gbif_dl.io import LOCK_NAME, download
from gbif_dl.manifest import JOURNAL_NAME, MANIFEST_NAME
from gbif_dl.records import url_basename
from gbif_dl.testing.mediahost import HostFaults, MediaHosts, render_image

HERE = Path(__file__).resolve().parent


def _urls(base: str, n: int, prefix: str = "media") -> list[str]:
    return [f"{base}/{prefix}/{i}/0.jpg" for i in range(n)]


def _faulted(faults: HostFaults, urls: list[str]) -> set[str]:
    """The URLs that ``faults`` hits (predicted from the hash, as the host decides)."""
    return {u for u in urls if faults.fault_for("/" + u.split("/", 3)[3]) is not None}


def _fast(**kwargs: Any) -> dict[str, Any]:
    return {"progress": False, "concurrency": 16, "per_host": 8, **kwargs}


# --- slow and failing hosts ----------------------------------------------------------------


def test_latency_spike_on_one_host_delays_but_loses_nothing(tmp_path: Path) -> None:
    """A host answering 0.3 s late: every image still arrives, complete, one row each."""
    faults = {1: HostFaults(latency_s=0.3)}
    with MediaHosts(n_hosts=2, faults=faults) as hosts:
        urls = _urls(hosts.base_urls[0], 20) + _urls(hosts.base_urls[1], 10)
        stats = download(urls, tmp_path, **_fast(per_host=4))
        assert (stats["success"], stats["failed"]) == (30, 0)
        hosts.reset_stats()
        again = download(urls, tmp_path, progress=False)
        assert (again["skipped"], requests(hosts)) == (30, 0)
    assert len(assert_complete_images(tmp_path)) == 30
    assert_manifest_exact(tmp_path, set(urls))


TRANSIENT = {
    # fault name: (HostFaults, reason in the manifest, HTTP status in the manifest)
    "5xx_burst": (HostFaults(error_rate=0.5, retry_after_s=0), "http_status", 503),
    "429_storm": (HostFaults(throttle_rate=0.5, retry_after_s=0.2), "http_status", 429),
    "truncated_body": (HostFaults(truncate_rate=0.5), "truncated", 200),
}


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
def test_transient_fault_without_retries_fails_typed_then_rerun_completes(
    fault: str, tmp_path: Path
) -> None:
    """retries=0: each faulted URL fails with a typed reason and no file; a rerun fetches
    exactly those again and completes the job."""
    faults, reason, status = TRANSIENT[fault]
    with MediaHosts(n_hosts=1, faults=faults) as hosts:
        urls = _urls(hosts.base_urls[0], 40)
        hit = _faulted(faults, urls)
        assert 5 <= len(hit) <= 35
        first = download(urls, tmp_path, retries=0, **_fast())
        assert (first["success"], first["failed"]) == (40 - len(hit), len(hit))
        assert first["reasons"] == {reason: len(hit)}
        rows = assert_manifest_exact(tmp_path, set(urls))
        failed = {r["url"]: r for r in rows if r["status"] == "failed"}
        assert set(failed) == hit
        for row in failed.values():
            assert (row["reason"], row["http_status"]) == (reason, status)
            assert row["detail"]  # a human-readable explanation
            assert not list(tmp_path.glob(f"{url_basename(row['url'])}.*"))  # no partial file
        assert_complete_images(tmp_path)

        before = requests(hosts)  # (no reset_stats: it would re-arm the faults)
        second = download(urls, tmp_path, retries=0, **_fast())
        assert (second["success"], second["skipped"], second["failed"]) == (
            len(hit),
            40 - len(hit),
            0,
        )
        assert requests(hosts) - before == len(hit)  # only the failed ones are asked again
    assert len(assert_complete_images(tmp_path)) == 40
    assert {r["status"] for r in assert_manifest_exact(tmp_path, set(urls))} == {"success"}
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
def test_transient_fault_with_retries_completes_in_one_run(fault: str, tmp_path: Path) -> None:
    """With retries, a burst of 503s, a 429 storm or truncated bodies cost attempts, not items:
    every image arrives complete and the manifest counts the attempts."""
    faults = TRANSIENT[fault][0]
    faults = HostFaults(**{**_fields(faults), "fault_attempts": 2})
    with MediaHosts(n_hosts=1, faults=faults) as hosts:
        urls = _urls(hosts.base_urls[0], 30)
        hit = _faulted(faults, urls)
        stats = download(urls, tmp_path, retries=3, **_fast())
        assert (stats["success"], stats["failed"]) == (30, 0)
        assert sum(s.early_retries for s in hosts.stats().values()) == 0
    rows = assert_manifest_exact(tmp_path, set(urls))
    assert {r["url"]: r["attempts"] for r in rows} == {u: 3 if u in hit else 1 for u in urls}
    for path in assert_complete_images(tmp_path):
        row = next(r for r in rows if r["path"] == path.relative_to(tmp_path).as_posix())
        assert path.read_bytes() == render_image("/" + row["url"].split("/", 3)[3])[0]


def _fields(faults: HostFaults) -> dict[str, Any]:
    return {name: getattr(faults, name) for name in faults.__slots__}


def test_long_retry_after(tmp_path: Path) -> None:
    """Issue 21 row "long Retry-After" (429 + ``Retry-After: 599``): no item waits ten minutes
    per attempt. Each is put back at the end of the run (holding no slot meanwhile) and asked
    once more after every other item; a URL the host keeps throttling then fails typed
    (``retry_after``, the wait in its detail) and, being transient, is asked again by a rerun."""
    faults = HostFaults(throttle_rate=0.25, retry_after_s=599)
    with MediaHosts(n_hosts=1, faults=faults) as hosts:
        base = hosts.base_urls[0]
        stuck = f"{base}/status/429/stuck.jpg"
        urls = [*_urls(base, 30), stuck]
        hit = _faulted(faults, urls[:-1])
        assert 3 <= len(hit) <= 20
        stats = download(urls, tmp_path, **_fast())
        assert (stats["success"], stats["failed"], stats["reasons"]) == (30, 1, {"retry_after": 1})
        log = hosts.request_log()
        last_plain = max(i for i, url in enumerate(log) if url not in hit | {stuck})
        for url in hit | {stuck}:
            asked = [i for i, seen in enumerate(log) if seen == url]
            assert len(asked) == 2 and asked[1] > last_plain  # after every other item

        again = download(urls, tmp_path, **_fast())
        assert hosts.request_log()[len(log) :] == [stuck, stuck]
        assert (again["skipped"], again["failed"], again["not_retried"]) == (30, 1, 0)
    rows = {r["url"]: r for r in assert_manifest_exact(tmp_path, set(urls))}
    assert all(rows[url]["attempts"] == 2 and rows[url]["status"] == "success" for url in hit)
    row = rows[stuck]
    assert (row["status"], row["reason"], row["http_status"], row["attempts"]) == (
        "failed",
        "retry_after",
        429,
        2,
    )
    assert "599 s (Retry-After)" in row["detail"]
    assert_complete_images(tmp_path)


def test_429_storm_retry_after_is_a_floor(tmp_path: Path) -> None:
    """Every URL answers 429 + Retry-After: 1 once: no retry comes early, none is lost."""
    faults = HostFaults(throttle_rate=1.0, retry_after_s=1.0)
    with MediaHosts(n_hosts=2, faults=faults) as hosts:
        urls = _urls(hosts.base_urls[0], 15) + _urls(hosts.base_urls[1], 15)
        started = time.monotonic()
        stats = download(urls, tmp_path, retries=2, **_fast())
        elapsed = time.monotonic() - started
        host_stats = hosts.stats().values()
        assert sum(s.early_retries for s in host_stats) == 0
        assert sum(s.status_counts.get(429, 0) for s in host_stats) == 30
        assert sum(s.requests for s in host_stats) == 60
    assert (stats["success"], stats["failed"]) == (30, 0)
    assert elapsed >= 1.0  # the server's Retry-After is a floor
    assert len(assert_complete_images(tmp_path)) == 30
    assert_manifest_exact(tmp_path, set(urls))


@pytest.mark.parametrize(("where", "resets"), [("reset-before", 2), ("reset-mid", 1)])
def test_connection_reset_is_typed_and_rerun_completes(
    where: str, resets: int, tmp_path: Path
) -> None:
    """A TCP reset before the answer or in the middle of the body: the item fails as
    ``network``/``truncated`` with no file (retries=0), succeeds on retry or on a rerun.

    (aiohttp itself silently repeats a GET once when the connection is reset before any byte
    of the answer, hence two resets in that case.)"""
    with ResetServer(resets=resets) as server:
        urls = _urls(server.base_url, 12, prefix=where)
        first = download(urls, tmp_path / "a", retries=0, **_fast())
        assert (first["success"], first["failed"]) == (0, 12)
        assert set(first["reasons"]) <= {"network", "truncated"}
        rows = assert_manifest_exact(tmp_path / "a", set(urls))
        assert all(r["detail"] for r in rows)
        assert stored_files(tmp_path / "a") == []
        second = download(urls, tmp_path / "a", retries=0, **_fast())
        assert (second["success"], second["failed"]) == (12, 0)

        server.attempts.clear()
        retried = download(urls, tmp_path / "b", retries=2, **_fast())
        assert (retried["success"], retried["failed"]) == (12, 0)
    for root in (tmp_path / "a", tmp_path / "b"):
        assert len(assert_complete_images(root)) == 12
        assert_manifest_exact(root, set(urls))


def test_slow_drip_never_exposes_a_partial_file(tmp_path: Path) -> None:
    """Bodies dripped over 1 s: while they arrive, every file under a final name already
    holds the exact served bytes; at the end all are there."""
    faults = HostFaults(drip_rate=1.0, drip_s=1.0)
    with MediaHosts(n_hosts=1, faults=faults) as hosts:
        urls = _urls(hosts.base_urls[0], 24)
        expected = {url_basename(u): render_image("/" + u.split("/", 3)[3])[0] for u in urls}
        result: list[Any] = []
        worker = threading.Thread(
            target=lambda: result.append(download(urls, tmp_path, **_fast(per_host=6)))
        )
        worker.start()
        checks = 0
        while worker.is_alive():
            for path in stored_files(tmp_path):
                try:
                    body = path.read_bytes()
                except FileNotFoundError:
                    continue
                assert body == expected[path.stem], f"partial file under final name: {path}"
                checks += 1
            time.sleep(0.02)
        worker.join()
    assert checks > 0
    assert (result[0]["success"], result[0]["failed"]) == (24, 0)
    assert_manifest_exact(tmp_path, set(urls))


def test_unresolvable_host_fails_typed_and_rest_completes(tmp_path: Path) -> None:
    """Media on a host that does not resolve fail as ``network`` naming the host; the rest is
    stored, and a rerun asks only for the failed ones again."""
    with MediaHosts(n_hosts=1) as hosts:
        good = _urls(hosts.base_urls[0], 10)
        bad = [f"http://nonexistent.invalid/media/{i}.jpg" for i in range(3)]
        first = download(good + bad, tmp_path, retries=1, **_fast())
        assert (first["success"], first["failed"], first["reasons"]) == (10, 3, {"network": 3})
        rows = assert_manifest_exact(tmp_path, set(good + bad))
        for row in rows:
            if row["url"] in bad:
                assert "nonexistent.invalid" in row["detail"]
        hosts.reset_stats()
        second = download(good + bad, tmp_path, retries=0, **_fast())
        assert (second["skipped"], second["failed"], requests(hosts)) == (10, 3, 0)
    assert len(assert_complete_images(tmp_path)) == 10
    assert_manifest_exact(tmp_path, set(good + bad))


def test_permanent_faults_are_typed_and_never_stored(tmp_path: Path) -> None:
    """An HTML page instead of an image and a 404 fail as ``not_image`` / ``http_status`` on
    the first attempt (not retried) and leave no file."""
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        html = [f"{base}/html/{i}.jpg" for i in range(4)]
        missing = [f"{base}/status/404/{i}.jpg" for i in range(4)]
        good = _urls(base, 4)
        stats = download(html + missing + good, tmp_path, retries=3, **_fast())
        assert requests(hosts) == 12  # permanent failures are not retried
    assert stats["reasons"] == {"not_image": 4, "http_status": 4}
    rows = {r["url"]: r for r in assert_manifest_exact(tmp_path, set(html + missing + good))}
    assert all(rows[u]["reason"] == "not_image" and "text/html" in rows[u]["detail"] for u in html)
    assert all(rows[u]["http_status"] == 404 for u in missing)
    assert len(assert_complete_images(tmp_path)) == 4


# --- the output root -----------------------------------------------------------------------


def test_disk_full_stops_cleanly_and_rerun_completes(tmp_path: Path) -> None:
    """A 1 MiB file system fills up: the run stops with one OutputError that says the disk is
    full and to rerun; stored files are complete; after freeing space the rerun completes
    without fetching the stored files again."""
    root = tmp_path / "small"
    with tmpfs(root, "1m"), MediaHosts(n_hosts=1) as hosts:
        urls = [f"{hosts.base_urls[0]}/big/60000/{i}.jpg" for i in range(40)]  # 2.4 MB
        with pytest.raises(OutputError, match=r"(?i)full.*rerun") as info:
            download(urls, root, retries=0, **_fast(concurrency=4, per_host=4))
        assert str(root) in str(info.value)
        stored = assert_complete_images(root)
        assert 0 < len(stored) < 40
        assert all(p.stat().st_size == 60000 for p in stored)
        assert temp_files(root) == []  # the failed write was removed

        remount(root, "size=20m")
        hosts.reset_stats()
        stats = download(urls, root, retries=0, **_fast())
        assert stats["failed"] == 0
        assert stats["success"] + stats["skipped"] == 40
        assert stats["skipped"] >= len(stored)  # stored files are not fetched again
        assert requests(hosts) == 40 - stats["skipped"]
        assert len(assert_complete_images(root)) == 40
        rows = assert_manifest_exact(root, set(urls))
        assert {r["status"] for r in rows} == {"success"}
        assert temp_files(root) == []


def test_root_is_a_regular_file_fails_before_any_request(tmp_path: Path) -> None:
    """root= a regular file: OutputError naming it, no request, the file untouched."""
    target = tmp_path / "not-a-folder"
    target.write_bytes(b"keep me")
    with MediaHosts(n_hosts=1) as hosts:
        urls = _urls(hosts.base_urls[0], 3)
        with pytest.raises(OutputError, match="not a directory") as info:
            download(urls, target, progress=False)
        with pytest.raises(OutputError, match="cannot create"):
            download(urls, target / "sub", progress=False)  # a parent that is a file
        assert requests(hosts) == 0
    assert str(target) in str(info.value)
    assert target.read_bytes() == b"keep me"


def test_read_only_root_fails_before_any_request_then_rerun_completes(tmp_path: Path) -> None:
    """A root on a read-only file system (real EROFS, not chmod: we run as root): OutputError
    naming the root, no request; once writable, the same call completes."""
    root = tmp_path / "ro"
    with tmpfs(root, "4m"), MediaHosts(n_hosts=1) as hosts:
        remount(root, "ro")
        urls = _urls(hosts.base_urls[0], 6)
        with pytest.raises(OutputError, match=r"not writable|cannot") as info:
            download(urls, root, progress=False)
        assert str(root) in str(info.value)
        with pytest.raises(OutputError):
            download(urls, root / "data", progress=False)  # cannot even create it
        assert requests(hosts) == 0
        assert list(root.iterdir()) == []
        remount(root, "rw")
        stats = download(urls, root, progress=False)
        assert (stats["success"], stats["failed"]) == (6, 0)
        assert_manifest_exact(root, set(urls))


def test_second_run_on_a_locked_root_is_refused(tmp_path: Path) -> None:
    """While another run holds the root's lock, a second run fails at once with a message
    saying so (no request, nothing written); after release it completes."""
    with MediaHosts(n_hosts=1) as hosts:
        urls = _urls(hosts.base_urls[0], 5)
        with open(tmp_path / LOCK_NAME, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            with pytest.raises(OutputError, match="another gbif-dl run"):
                download(urls, tmp_path, progress=False)
        assert requests(hosts) == 0
        assert stored_files(tmp_path) == []
        stats = download(urls, tmp_path, progress=False)
    assert stats["success"] == 5


# --- the process dies or is interrupted ----------------------------------------------------


def _wait_for_journal(root: Path, lines: int, child: subprocess.Popen[bytes]) -> None:
    journal = root / JOURNAL_NAME
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.01)
    err = child.stderr.read().decode() if child.stderr and child.poll() is not None else ""
    pytest.fail(f"the child finished or stalled before journaling {lines} items: {err}")


@pytest.mark.slow
def test_sigkill_mid_write_then_rerun_completes(tmp_path: Path) -> None:
    """SIGKILL while images are being written: no partial file under a final name, the
    journal's rows are kept, and the rerun completes every item exactly once."""
    root = tmp_path / "root"
    with MediaHosts(n_hosts=2, faults=HostFaults(latency_s=0.02)) as hosts:
        urls = [f"{b}/big/300000/{i}.jpg" for b in hosts.base_urls for i in range(60)]
        records = [{"url": u, "label": f"class {i % 3}"} for i, u in enumerate(urls)]
        records_file = tmp_path / "records.json"
        records_file.write_text(json.dumps(records))
        child = subprocess.Popen(
            [sys.executable, str(HERE / "download_child.py"), str(records_file), str(root), "8"],
            stderr=subprocess.PIPE,
            env={**os.environ, "GBIF_DL_ALLOW_PRIVATE": "1"},  # this test's media hosts
        )
        try:
            _wait_for_journal(root, 20, child)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            assert child.stderr is not None
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        stored = assert_complete_images(root)  # temp files may remain, final names are whole
        assert 20 <= len(stored) < 120
        assert all(p.stat().st_size == 300000 for p in stored)

        hosts.reset_stats()
        stats = download(records, root, **_fast())
        assert stats["failed"] == 0
        assert stats["success"] + stats["skipped"] == 120
        assert stats["skipped"] >= len(stored)  # journaled or not, stored files are kept
        assert requests(hosts) == stats["success"]
    assert len(assert_complete_images(root)) == 120
    rows = assert_manifest_exact(root, set(urls))
    assert {r["status"] for r in rows} == {"success"}
    assert temp_files(root) == []
    assert (root / JOURNAL_NAME).stat().st_size == 0  # merged


@pytest.mark.slow
def test_sigint_stops_cleanly_with_exit_130_then_rerun_completes(
    tmp_path: Path, interruptible_children: None
) -> None:
    """Ctrl-C on ``gbif-dl download``: exit code 130 and a message saying how to resume; the
    journal is merged into the manifest (one row per stored file), no temp file is left; the
    same command then completes the job."""
    root = tmp_path / "root"
    with MediaHosts(n_hosts=1, faults=HostFaults(latency_s=0.05)) as hosts:
        urls = _urls(hosts.base_urls[0], 160)
        url_file = tmp_path / "urls.txt"
        url_file.write_text("\n".join(urls) + "\n")
        command = [
            sys.executable,
            "-m",
            "gbif_dl.cli",
            "download",
            "--urls",
            str(url_file),
            "-o",
            str(root),
            "--concurrency",
            "4",
            "--per-host",
            "4",
            "--quiet",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GBIF_DL_ALLOW_PRIVATE": "1"}
        child = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
        try:
            _wait_for_journal(root, 20, child)
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        message = err.decode()
        assert child.returncode == 130, message
        assert "interrupted" in message and "again" in message
        assert temp_files(root) == []
        assert (root / MANIFEST_NAME).is_file()
        assert (root / JOURNAL_NAME).stat().st_size == 0  # merged into the manifest
        stored = assert_complete_images(root)
        assert 20 <= len(stored) < 160
        rows = manifest_rows(root)  # one row per stored file: none lost, none duplicated
        assert len({r["url"] for r in rows}) == len(rows) and {r["url"] for r in rows} <= set(urls)
        assert {r["path"] for r in rows if r["status"] == "success"} == {
            p.relative_to(root).as_posix() for p in stored
        }

        hosts.reset_stats()
        rerun = subprocess.run(command, capture_output=True, env=env, timeout=120)
        assert rerun.returncode == 0, rerun.stderr.decode()
        assert requests(hosts) == 160 - len(stored)
    assert len(assert_complete_images(root)) == 160
    assert_manifest_exact(root, set(urls))

"""Reruns and failures: a permanent failure (404, an HTML page) is not requested again unless
``retry_failed=True``; a transient one (503, timeouts, ...) always is. Streaming and sharded
runs alike, real HTTP to the media hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from gbif_dl.fetch.result import Reason, is_permanent
from gbif_dl.io import download
from gbif_dl.manifest import GONE, MANIFEST_NAME, SUCCESS, load_index, manifest_row
from gbif_dl.manifest.journal import Journal
from gbif_dl.pipeline.stats import Counters
from gbif_dl.testing.mediahost import HostFaults, MediaHosts

FAULTS = HostFaults(not_found_rate=0.15, html_rate=0.15, error_rate=0.2, seed=3)
PERMANENT_FAULTS = {"not_found": "http_status", "html": "not_image"}


def _failed_rows(root: Path) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(root / MANIFEST_NAME).to_pylist()
    return {row["url"]: row for row in rows if row["status"] == "failed"}


def _download(urls: list[str], root: Path, runner: str | None, **keywords: Any) -> Any:
    if runner is not None:
        keywords.update(runner=runner, workers=1, shard_size=16)
    return download(urls, root=root, retries=0, progress=False, **keywords)


@pytest.mark.parametrize("runner", [None, "local"])
def test_a_rerun_requests_transient_failures_only_and_retry_failed_the_rest(
    tmp_path: Path, runner: str | None
) -> None:
    with MediaHosts(n_hosts=2, faults=FAULTS) as hosts:
        urls = [f"{base}/media/7/{i}.jpg" for base in hosts.base_urls for i in range(24)]
        fate = {url: FAULTS.fault_for(urlsplit(url).path) for url in urls}
        permanent = {url for url in urls if fate[url] in PERMANENT_FAULTS}
        transient = {url for url in urls if fate[url] == "error"}
        assert permanent and transient  # the seed gives both kinds

        first = _download(urls, tmp_path, runner)
        assert first.failed == len(permanent) + len(transient) and first.not_retried == 0
        before = _failed_rows(tmp_path)

        seen = len(hosts.request_log())
        second = _download(urls, tmp_path, runner)
        requested = hosts.request_log()[seen:]
        # the transient failures are asked again (and now succeed), the permanent ones are not
        assert sorted(requested) == sorted(transient)
        assert second.success == len(transient)
        assert second.failed == second.not_retried == len(permanent)
        expected: dict[str, int] = {}
        for url in permanent:
            reason = PERMANENT_FAULTS[fate[url] or ""]
            expected[reason] = expected.get(reason, 0) + 1
        assert second.reasons == expected
        after = _failed_rows(tmp_path)
        assert set(after) == permanent
        assert all(after[url] == before[url] for url in permanent)  # rows kept as they were

        seen = len(hosts.request_log())
        third = _download(urls, tmp_path, runner, retry_failed=True)
        requested = hosts.request_log()[seen:]
        assert sorted(requested) == sorted(permanent)
        assert third.failed == len(permanent) and third.not_retried == 0
        assert third.skipped == len(urls) - len(permanent)


def test_the_same_gone_url_twice_in_one_rerun_counts_once_as_failed(tmp_path: Path) -> None:
    with MediaHosts(n_hosts=1, faults=HostFaults(not_found_rate=1.0)) as hosts:
        url = f"{hosts.base_urls[0]}/media/1/0.jpg"
        download([url], root=tmp_path, progress=False)
        seen = len(hosts.request_log())
        stats = download([url, url], root=tmp_path, progress=False)
        assert hosts.request_log()[seen:] == []
    assert (stats.failed, stats.not_retried, stats.skipped) == (1, 1, 1)
    assert stats.reasons == {"http_status": 1}


def test_overwrite_requests_permanent_failures_again(tmp_path: Path) -> None:
    with MediaHosts(n_hosts=1, faults=HostFaults(html_rate=1.0)) as hosts:
        url = f"{hosts.base_urls[0]}/media/1/0.jpg"
        download([url], root=tmp_path, progress=False)
        seen = len(hosts.request_log())
        stats = download([url], root=tmp_path, progress=False, overwrite=True)
        assert hosts.request_log()[seen:] == [url]
    assert (stats.failed, stats.not_retried, stats.reasons) == (1, 0, {"not_image": 1})


@pytest.mark.parametrize(
    ("reason", "status", "permanent"),
    [
        (Reason.HTTP_STATUS, 404, True),
        (Reason.HTTP_STATUS, 410, True),
        (Reason.HTTP_STATUS, 400, True),
        (Reason.HTTP_STATUS, 403, False),
        (Reason.HTTP_STATUS, 408, False),
        (Reason.HTTP_STATUS, 429, False),
        (Reason.HTTP_STATUS, 503, False),
        (Reason.HTTP_STATUS, None, False),
        (Reason.NOT_IMAGE, None, True),
        (Reason.TOO_LARGE, None, True),
        (Reason.UNSAFE_URL, None, True),
        (Reason.INVALID, None, True),
        (Reason.DECODE_ERROR, None, True),
        (Reason.TOO_MANY_REDIRECTS, None, True),
        (Reason.TIMEOUT, None, False),
        (Reason.NETWORK, None, False),
        (Reason.TRUNCATED, None, False),
        (Reason.WRITE_ERROR, None, False),
        (Reason.RESIZE_ERROR, None, False),
        (Reason.CANCELLED, None, False),
        (Reason.RETRY_AFTER, 429, False),
    ],
)
def test_the_resume_index_marks_gone_exactly_the_permanent_failures(
    tmp_path: Path, reason: Reason, status: int | None, permanent: bool
) -> None:
    """The index's vectorised rule at load time agrees with is_permanent, row by row."""
    url = "http://h.example/a.jpg"
    with Journal(tmp_path) as journal:
        journal.append(
            manifest_row({"url": url}, status="failed", reason=reason.value, http_status=status)
        )
        journal.append(manifest_row({"url": "http://h.example/b.jpg"}, status=SUCCESS, path="b"))
    index = load_index(tmp_path)
    assert is_permanent(reason, status) is permanent
    assert (index[url][0] == GONE) is permanent
    assert index.gone_reason(url) == (reason.value if permanent else None)
    assert index["http://h.example/b.jpg"] == (SUCCESS, "b")


def test_a_later_success_or_transient_failure_replaces_a_gone_row(tmp_path: Path) -> None:
    """The latest row decides: a url that failed for good and then succeeded is not gone."""
    url = "http://h.example/a.jpg"
    with Journal(tmp_path) as journal:
        journal.append(manifest_row({"url": url}, status="failed", reason="not_image"))
        journal.append(manifest_row({"url": url}, status="failed", reason="timeout"))
    assert load_index(tmp_path)[url] == ("failed", None)


def test_failures_known_from_before_do_not_count_towards_fail_threshold() -> None:
    """fail_threshold judges what this run fetched, not the permanent failures it left alone."""
    assert not Counters(success=60, failed=40, not_retried=40).over_threshold(0.1)
    assert Counters(success=60, failed=48, not_retried=40).over_threshold(0.1)
    assert Counters(success=60, failed=40, not_retried=40).stats().not_retried == 40

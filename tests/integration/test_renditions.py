"""Renditions over real HTTP: iNaturalist URLs served by the simulator's media hosts under their
real host name (a resolver maps it to loopback); failed renditions fall back in the same run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gbif_dl.fetch import FetchConfig, FetchEngine, FetchResult
from gbif_dl.options import DownloadOptions
from gbif_dl.pipeline.stream import download_stream
from gbif_dl.records import make_record
from gbif_dl.testing.mediahost import MediaHosts
from gbif_dl.testing.renditions import (
    INATURALIST_HOST,
    LoopbackResolver,
    photo_jpeg,
    serve_inaturalist_photo,
)

ORIGINAL = photo_jpeg(1600, 1200, seed=1)


def _config(hosts: MediaHosts, **changes: Any) -> FetchConfig:
    address = hosts.hosts[0].split(":")[0]
    resolver = LoopbackResolver({INATURALIST_HOST: address})
    values: dict[str, Any] = {
        "concurrency": 8,
        "per_host": 4,
        "max_size": 512,
        "resize_workers": 1,
        "resolver": resolver,
        "allow_private": True,
        **changes,
    }
    return FetchConfig(**values)


def _fetch(urls: list[str], config: FetchConfig) -> dict[str, FetchResult]:
    results: dict[str, FetchResult] = {}

    def collect(result: FetchResult) -> None:
        assert result.record["url"] not in results, "one result per record"
        results[result.record["url"]] = result

    summary = asyncio.run(FetchEngine(config).run([make_record(u) for u in urls], collect))
    assert summary.total == len(urls) == len(results)
    return results


def _paths(hosts: MediaHosts) -> list[str]:
    return ["/" + url.split("/", 3)[3] for url in hosts.request_log()]


def test_the_smallest_sufficient_rendition_is_fetched_and_resized() -> None:
    with MediaHosts(n_hosts=1) as hosts:
        url = serve_inaturalist_photo(hosts, 1, ORIGINAL)["original"]
        result = _fetch([url], _config(hosts))[url]
        assert _paths(hosts) == ["/photos/1/large.jpg"]  # never the original
        sent = hosts.stats()[hosts.hosts[0]].bytes_sent
    assert result.ok and (result.width, result.height) == (512, 384)
    assert result.fetched_url == url.replace("original", "large")
    assert result.record["url"] == url
    assert result.attempts == 1
    assert sent < len(ORIGINAL) / 2


@pytest.mark.parametrize("fault", ["missing", "not_image", "too_small"])
def test_a_failed_rendition_falls_back_to_the_record_url_in_the_same_run(fault: str) -> None:
    """404, an HTML page, or an image below max_size: the original is fetched next; its fetch
    is the item's result (ok), and the rendition's failure is no result of its own."""
    with MediaHosts(n_hosts=1) as hosts:
        url = serve_inaturalist_photo(hosts, 2, ORIGINAL, **{fault: {"large"}})["original"]
        results = _fetch([url], _config(hosts))
        assert _paths(hosts) == ["/photos/2/large.jpg", "/photos/2/original.jpg"]
    result = results[url]
    assert result.ok, result
    assert (result.width, result.height) == (512, 384)
    assert result.fetched_url == url
    assert result.attempts == 2  # the rendition's request and the original's


def test_a_failing_record_url_after_a_failed_rendition_is_the_items_failure() -> None:
    with MediaHosts(n_hosts=1) as hosts:
        url = serve_inaturalist_photo(hosts, 3, ORIGINAL, missing={"large", "original"})["original"]
        result = _fetch([url], _config(hosts))[url]
    assert not result.ok and result.http_status == 404
    assert result.fetched_url == url and result.attempts == 2


def test_renditions_off_or_without_max_size_fetch_the_record_url() -> None:
    with MediaHosts(n_hosts=1) as hosts:
        url = serve_inaturalist_photo(hosts, 4, ORIGINAL)["original"]
        off = _fetch([url], _config(hosts, renditions=False))[url]
        assert _paths(hosts) == ["/photos/4/original.jpg"]
        hosts.reset_stats()
        plain = _fetch([url], _config(hosts, max_size=None))[url]
        assert _paths(hosts) == ["/photos/4/original.jpg"]
    assert off.ok and (off.width, off.height) == (512, 384) and off.fetched_url == url
    assert plain.ok and plain.body == ORIGINAL and plain.fetched_url == url


def test_bytes_fetched_with_and_without_renditions() -> None:
    """The point of renditions: at max_size=512 the host sends the 1024 px copies only."""
    sent = {}
    with MediaHosts(n_hosts=1) as hosts:
        urls = [serve_inaturalist_photo(hosts, i, ORIGINAL)["original"] for i in range(10, 16)]
        for renditions in (True, False):
            hosts.reset_stats()
            results = _fetch(urls, _config(hosts, renditions=renditions))
            assert all(r.ok and r.width == 512 for r in results.values())
            sent[renditions] = hosts.stats()[hosts.hosts[0]].bytes_sent
    assert sent[False] == 6 * len(ORIGINAL)
    assert sent[True] < sent[False] / 2


def test_manifest_keeps_the_record_url_and_the_fetched_url(tmp_path: Path) -> None:
    with MediaHosts(n_hosts=1) as hosts:
        good = serve_inaturalist_photo(hosts, 5, ORIGINAL)["original"]
        missing = serve_inaturalist_photo(hosts, 6, ORIGINAL, missing={"large"})["original"]
        options = DownloadOptions(root=tmp_path, progress=False, fetch=_config(hosts))
        stats = asyncio.run(download_stream([good, missing], options))
    assert stats["success"] == 2 and stats["failed"] == 0
    rows = {r["url"]: r for r in pq.read_table(tmp_path / "manifest.parquet").to_pylist()}
    assert set(rows) == {good, missing}  # one row per record, no row for the failed rendition
    assert rows[good]["fetched_url"] == good.replace("original", "large")
    assert rows[missing]["fetched_url"] == missing
    assert rows[good]["status"] == rows[missing]["status"] == "success"
    assert (rows[good]["width"], rows[good]["height"]) == (512, 384)

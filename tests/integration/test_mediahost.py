"""The image hosts simulator: real images over real loopback HTTP, deterministic faults, stats."""

from __future__ import annotations

import http.client
import io
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
from PIL import Image

from gbif_dl.errors import ConfigError
from gbif_dl.testing.mediahost import HostFaults, MediaHosts, render_image


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    """One GET without following redirects; returns status, headers, body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def hosts() -> Iterator[MediaHosts]:
    faults = {1: HostFaults(error_rate=0.5, fault_attempts=2, retry_after_s=0.5, seed=3)}
    with MediaHosts(n_hosts=3, faults=faults) as media:
        yield media


def test_hosts_listen_on_distinct_loopback_addresses(hosts: MediaHosts) -> None:
    """Host i listens on 127.0.0.(i+1), each on its own port; stats are keyed host:port."""
    addresses = [urlsplit(u).hostname for u in hosts.base_urls]
    assert addresses == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert set(hosts.stats()) == {u.removeprefix("http://") for u in hosts.base_urls}


def test_images_are_real_deterministic_and_mixed(hosts: MediaHosts) -> None:
    """Any path serves a decodable JPEG or PNG (~20% PNG), 64..400 px, the same bytes every time."""
    formats = []
    for i in range(120):
        status, headers, body = get(f"{hosts.base_urls[0]}/media/{i}/0.jpg")
        assert status == 200
        image = Image.open(io.BytesIO(body))
        image.load()
        assert headers["Content-Type"] == f"image/{image.format.lower()}"
        assert all(64 <= side <= 400 for side in image.size)
        formats.append(image.format)
    assert 0.08 <= formats.count("PNG") / len(formats) <= 0.35
    again = get(f"{hosts.base_urls[2]}/media/7/0.jpg")[2]
    assert (
        again == get(f"{hosts.base_urls[0]}/media/7/0.jpg")[2] == render_image("/media/7/0.jpg")[0]
    )
    assert render_image("/media/7/0.jpg")[0] != render_image("/media/8/0.jpg")[0]


def test_transient_fault_hits_first_attempts_then_succeeds(hosts: MediaHosts) -> None:
    """A URL chosen for 503 fails exactly fault_attempts times, with Retry-After, then serves."""
    faults = HostFaults(error_rate=0.5, fault_attempts=2, retry_after_s=0.5, seed=3)
    path = next(f"/media/{i}/0.jpg" for i in range(100) if faults.fault_for(f"/media/{i}/0.jpg"))
    assert faults.fault_for(path) == "error"
    statuses = []
    for _ in range(3):
        status, headers, _body = get(hosts.base_urls[1] + path)
        statuses.append(status)
        if status == 503:
            assert headers["Retry-After"] == "0.5"
    assert statuses == [503, 503, 200]
    clean = next(
        f"/media/{i}/0.jpg" for i in range(100) if not faults.fault_for(f"/media/{i}/0.jpg")
    )
    assert get(hosts.base_urls[1] + clean)[0] == 200


def test_fixed_paths(hosts: MediaHosts) -> None:
    """/html, /status/<code>, /redirect, /big/<n> behave the same whatever the fault rates."""
    base = hosts.base_urls[0]
    status, headers, body = get(f"{base}/html/a.jpg")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body.lstrip().lower().startswith(b"<!doctype html")
    assert get(f"{base}/status/418/a.jpg")[0] == 418
    status, headers, _ = get(f"{base}/redirect?to={quote(base + '/media/1.jpg', safe='')}")
    assert status == 302 and headers["Location"] == base + "/media/1.jpg"
    status, _, body = get(f"{base}/big/300001/x.jpg")
    assert status == 200 and len(body) == 300001
    Image.open(io.BytesIO(body)).load()  # still a valid JPEG


def test_truncated_body_is_shorter_than_content_length(hosts: MediaHosts) -> None:
    """/truncate announces Content-Length N, sends fewer bytes and closes the connection."""
    with pytest.raises(http.client.IncompleteRead) as info:
        get(f"{hosts.base_urls[0]}/truncate/t1.jpg")
    assert info.value.expected > 0 and len(info.value.partial) > 0


def test_throttle_counts_early_retries(hosts: MediaHosts) -> None:
    """/throttle/<s> answers 429 once; a retry before Retry-After counts as early, later not."""
    base = hosts.base_urls[2]
    key = base.removeprefix("http://")
    before = hosts.stats()[key].early_retries
    status, headers, _ = get(f"{base}/throttle/0.3/a.jpg")
    assert status == 429 and headers["Retry-After"] == "0.3"
    assert get(f"{base}/throttle/0.3/a.jpg")[0] == 200  # immediately: too early
    assert hosts.stats()[key].early_retries == before + 1
    status, _, _ = get(f"{base}/throttle/0.2/b.jpg")
    assert status == 429
    time.sleep(0.25)
    assert get(f"{base}/throttle/0.2/b.jpg")[0] == 200
    assert hosts.stats()[key].early_retries == before + 1


def test_stats_measure_concurrency_and_reset() -> None:
    """max_in_flight counts requests handled at once, per host and in total; reset_stats zeroes."""
    with MediaHosts(n_hosts=2, faults=HostFaults(latency_s=0.3)) as media:
        threads = [
            threading.Thread(target=get, args=(f"{media.base_urls[i % 2]}/media/{i}.jpg",))
            for i in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = media.stats()
        assert sum(s.requests for s in stats.values()) == 6
        assert all(s.max_in_flight <= 3 for s in stats.values())
        assert all(s.status_counts == {200: 3} for s in stats.values())
        assert all(s.bytes_sent > 0 and s.in_flight == 0 for s in stats.values())
        assert 2 <= media.max_in_flight <= 6
        media.reset_stats()
        assert all(s.requests == 0 and s.max_in_flight == 0 for s in media.stats().values())
        assert media.max_in_flight == 0


def test_serve_fixed_body_and_not_found_rate() -> None:
    """serve() pins a body at a path; not_found_rate=1 answers 404 for every other path."""
    with MediaHosts(n_hosts=1, faults=HostFaults(not_found_rate=1.0)) as media:
        media.serve("/pinned.jpg", b"exact bytes", "image/jpeg")
        assert get(media.base_urls[0] + "/pinned.jpg")[2] == b"exact bytes"
        assert get(media.base_urls[0] + "/media/1.jpg")[0] == 404


def test_urllib_client_sees_a_plain_image_host() -> None:
    """Any ordinary HTTP client can use the hosts (the demo and users' own pipelines do)."""
    with MediaHosts(n_hosts=1) as media, urllib.request.urlopen(media.base_urls[0] + "/a.jpg") as r:
        assert r.status == 200 and r.read()[:2] in (b"\xff\xd8", b"\x89P")
    with pytest.raises(urllib.error.URLError):  # closed: nothing listens any more
        urllib.request.urlopen(media.base_urls[0] + "/a.jpg", timeout=2)


@pytest.mark.parametrize(
    "kwargs",
    [{"error_rate": 0.7, "html_rate": 0.5}, {"latency_s": -1.0}, {"fault_attempts": -1}],
)
def test_bad_faults_are_config_errors(kwargs: dict[str, float]) -> None:
    """Impossible fault settings raise ConfigError naming the problem."""
    with pytest.raises(ConfigError):
        HostFaults(**kwargs)


def test_faults_for_unknown_host_index_rejected() -> None:
    """Faults for a host that does not exist are a ConfigError, before any server starts."""
    with pytest.raises(ConfigError, match="host indices"):
        MediaHosts(n_hosts=2, faults={5: HostFaults()})

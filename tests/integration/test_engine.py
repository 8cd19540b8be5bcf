"""The fetch engine against real loopback image hosts: caps, retries, validation, resize, cancel."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from PIL import Image

from gbif_dl.fetch import FetchConfig, FetchEngine, FetchResult, Reason, RetryPolicy
from gbif_dl.records import make_record
from gbif_dl.testing.mediahost import HostFaults, MediaHosts, render_image

FAST_RETRY = RetryPolicy(retries=3, backoff_s=0.02, max_backoff_s=0.1, jitter_s=0.02)


def fetch_all(
    records: Any, config: FetchConfig, engine: FetchEngine | None = None
) -> dict[str, FetchResult]:
    """Run the engine over ``records``; results keyed by URL (each reported exactly once)."""
    results: dict[str, FetchResult] = {}

    def collect(result: FetchResult) -> None:
        url = result.record["url"]
        assert url not in results, f"on_result called twice for {url}"
        results[url] = result

    engine = engine or FetchEngine(config)
    summary = asyncio.run(engine.run(records, collect))
    assert summary.total == len(results) == summary.ok + summary.failed
    return results


def host_key(base_url: str) -> str:
    return base_url.removeprefix("http://")


def test_per_host_and_global_caps_are_respected() -> None:
    """With per_host=8 no host ever sees more than 8 requests at once; the global cap holds too."""
    with MediaHosts(n_hosts=3, faults=HostFaults(latency_s=0.03)) as hosts:
        urls = [f"{hosts.base_urls[i % 3]}/media/{i}.jpg" for i in range(240)]
        results = fetch_all([make_record(u) for u in urls], FetchConfig(concurrency=64, per_host=8))
        assert all(r.ok for r in results.values())
        stats = hosts.stats()
        assert all(2 <= s.max_in_flight <= 8 for s in stats.values()), stats
        assert all(s.requests == 80 for s in stats.values())

        hosts.reset_stats()
        urls = [f"{hosts.base_urls[i % 3]}/media/b{i}.jpg" for i in range(120)]
        results = fetch_all([make_record(u) for u in urls], FetchConfig(concurrency=5, per_host=8))
        assert all(r.ok for r in results.values())
        assert hosts.max_in_flight <= 5


def test_retry_after_is_honoured_and_throttled_items_end_downloaded() -> None:
    """429 + Retry-After: no retry arrives early (host-measured), every throttled item ends ok."""
    faults = HostFaults(throttle_rate=0.3, retry_after_s=0.4)
    with MediaHosts(n_hosts=1, faults=faults) as hosts:
        base = hosts.base_urls[0]
        urls = [f"{base}/media/{i}.jpg" for i in range(60)] + [f"{base}/throttle/1/x.jpg"]
        engine = FetchEngine(FetchConfig(concurrency=16, per_host=8, retry=FAST_RETRY))
        results = fetch_all([make_record(u) for u in urls], engine.config, engine)
        stats = hosts.stats()[host_key(base)]
        assert stats.status_counts.get(429, 0) >= 5
        assert stats.early_retries == 0
        assert all(r.ok for r in results.values())
        throttled = [u for u in urls[:-1] if faults.fault_for(u.removeprefix(base)) == "throttle"]
        assert throttled and all(results[u].attempts == 2 for u in throttled)
        assert all(results[u].elapsed_s >= 0.4 for u in throttled)
        assert results[urls[-1]].elapsed_s >= 1.0
        assert engine.host_stats()[host_key(base)]["throttled"] == len(throttled) + 1


def test_mixed_faults_every_record_gets_the_right_outcome() -> None:
    """5% 5xx, 2% truncated, 1% HTML, a throttled and a slow host: recoverable items all end ok,
    HTML ones are NOT_IMAGE, and the run ends."""
    common = {"error_rate": 0.05, "truncate_rate": 0.02, "html_rate": 0.01, "retry_after_s": 0.2}
    faults = {
        0: HostFaults(**common),
        1: HostFaults(**common, throttle_rate=0.15, seed=1),
        2: HostFaults(**common, latency_s=0.15, seed=2),
        3: HostFaults(**common, seed=3),
    }
    with MediaHosts(n_hosts=4, faults=faults) as hosts:
        urls = [f"{hosts.base_urls[i % 4]}/media/{i}/0.jpg" for i in range(400)]
        results = fetch_all(
            [make_record(u) for u in urls],
            FetchConfig(concurrency=32, per_host=8, retry=FAST_RETRY),
        )
        assert len(results) == 400
        kinds: dict[str, int] = {}
        for i, url in enumerate(urls):
            fault = faults[i % 4].fault_for(url.removeprefix(hosts.base_urls[i % 4]))
            kinds[str(fault)] = kinds.get(str(fault), 0) + 1
            result = results[url]
            if fault == "html":
                assert result.reason is Reason.NOT_IMAGE and result.attempts == 1, url
            else:
                assert result.ok, (url, fault, result.reason, result.detail)
                assert result.body is not None and result.ext in (".jpg", ".png")
                assert result.attempts == (2 if fault else 1)
        assert kinds.get("error", 0) >= 5 and kinds.get("truncate", 0) >= 1
        assert kinds.get("html", 0) >= 1 and kinds.get("throttle", 0) >= 5
        assert all(s.early_retries == 0 for s in hosts.stats().values())


def test_unsafe_urls_fail_without_a_request() -> None:
    """Only http(s) URLs are fetched; a redirect to file: is refused too."""
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        redirect = f"{base}/redirect?to={quote('file:///etc/passwd', safe='')}"
        urls = [
            "file:///etc/passwd",
            "ftp://127.0.0.1/a.jpg",
            "data:image/png;base64,iVBORw0KGgo=",
            "javascript:alert(1)",
            "/etc/passwd",
            "",
        ]
        records = [make_record(u) for u in urls] + [{"url": None}, make_record(redirect)]
        results = fetch_all(records, FetchConfig(concurrency=4, per_host=2))
        assert all(r.reason is Reason.UNSAFE_URL and not r.ok for r in results.values())
        assert all(results[u].attempts == 0 for u in urls)
        assert results[redirect].attempts == 1
        assert hosts.stats()[host_key(base)].requests == 1  # only the redirect itself


def test_permanent_failures_have_typed_reasons_and_are_not_retried() -> None:
    """TOO_LARGE, NOT_IMAGE and 404 fail at once; TRUNCATED and 503 are retried, then fail."""
    faults = HostFaults(fault_attempts=100, retry_after_s=0.05)
    with MediaHosts(n_hosts=1, faults=faults) as hosts:
        base = hosts.base_urls[0]
        key = host_key(base)
        config = FetchConfig(
            concurrency=4, per_host=2, max_bytes=100_000, retry=FAST_RETRY, max_redirects=2
        )
        cases = {
            f"{base}/big/300000/a.jpg": (Reason.TOO_LARGE, 1),
            f"{base}/html/a.jpg": (Reason.NOT_IMAGE, 1),
            f"{base}/status/404/a.jpg": (Reason.HTTP_STATUS, 1),
            f"{base}/status/403/a.jpg": (Reason.HTTP_STATUS, 1),
            f"{base}/truncate/a.jpg": (Reason.TRUNCATED, 4),
            f"{base}/status/503/a.jpg": (Reason.HTTP_STATUS, 4),
        }
        for url, (reason, requests) in cases.items():
            hosts.reset_stats()
            result = fetch_all([make_record(url)], config)[url]
            assert (result.reason, result.attempts) == (reason, requests), (url, result.detail)
            assert hosts.stats()[key].requests == requests, url
            assert result.body is None
        assert (
            fetch_all([make_record(f"{base}/status/404/b.jpg")], config)[
                f"{base}/status/404/b.jpg"
            ].http_status
            == 404
        )


def test_redirects_followed_up_to_the_limit() -> None:
    """Redirects are followed by hand to another host; more than max_redirects hops fail."""
    with MediaHosts(n_hosts=2) as hosts:
        a, b = hosts.base_urls
        target = f"{b}/media/9.jpg"
        one = f"{a}/redirect?to={quote(target, safe='')}"
        two = f"{a}/redirect?to={quote(one, safe='')}"
        three = f"{a}/redirect?to={quote(two, safe='')}"
        results = fetch_all(
            [make_record(u) for u in (one, two, three)],
            FetchConfig(concurrency=4, per_host=2, max_redirects=2),
        )
        assert results[one].ok and results[one].final_url == target
        assert results[two].ok and results[two].body == render_image("/media/9.jpg")[0]
        assert results[three].reason is Reason.TOO_MANY_REDIRECTS


def test_extension_is_sniffed_from_bytes_not_url() -> None:
    """A PNG served under a .jpg URL is reported as .png / image/png with its pixel size."""
    png_path = next(
        f"/media/{i}.jpg" for i in range(200) if render_image(f"/media/{i}.jpg")[1] == "image/png"
    )
    jpeg_path = next(
        f"/media/{i}.png" for i in range(200) if render_image(f"/media/{i}.png")[1] == "image/jpeg"
    )
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        results = fetch_all(
            [make_record(base + png_path), make_record(base + jpeg_path)],
            FetchConfig(concurrency=2, per_host=2),
        )
        png, jpeg = results[base + png_path], results[base + jpeg_path]
        assert (png.ext, png.mime, jpeg.ext, jpeg.mime) == (
            ".png",
            "image/png",
            ".jpg",
            "image/jpeg",
        )
        assert (png.width, png.height) == Image.open(io.BytesIO(png.body or b"")).size


def _exif_jpeg(width: int, height: int, orientation: int) -> bytes:
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), quality=95)
    return out.getvalue()


def test_resize_in_process_pool_applies_exif_orientation() -> None:
    """max_size: longest side == max_size, aspect kept, EXIF rotation applied, RGB JPEG out."""
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        hosts.serve("/exif.jpg", _exif_jpeg(600, 200, orientation=6))
        urls = [f"{base}/exif.jpg"] + [f"{base}/media/{i}.jpg" for i in range(20)]
        results = fetch_all(
            [make_record(u) for u in urls],
            FetchConfig(concurrency=8, per_host=4, max_size=150, resize_workers=1),
        )
        rotated = results[urls[0]]
        assert rotated.ok and (rotated.width, rotated.height) == (50, 150)
        image = Image.open(io.BytesIO(rotated.body or b""))
        assert image.size == (50, 150) and image.mode == "RGB" and image.format == "JPEG"
        assert image.getexif().get(0x0112, 1) == 1
        top, bottom = image.getpixel((25, 10)), image.getpixel((25, 140))
        assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
        assert bottom[2] > 200 and bottom[0] < 60
        for url in urls[1:]:
            result = results[url]
            original = Image.open(io.BytesIO(render_image(url.removeprefix(base))[0]))
            out = Image.open(io.BytesIO(result.body or b""))
            assert result.ext == ".jpg" and out.format == "JPEG"
            assert max(out.size) == min(150, max(original.size)) == max(result.width, result.height)


def test_decode_check_catches_a_corrupt_jpeg() -> None:
    """A body with JPEG magic bytes but broken data passes sniffing; decode_check rejects it."""
    good = _exif_jpeg(300, 300, orientation=1)
    corrupt = good[: len(good) // 3]
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        hosts.serve("/corrupt.jpg", corrupt)
        hosts.serve("/good.jpg", good)
        records = [make_record(f"{base}/corrupt.jpg"), make_record(f"{base}/good.jpg")]
        lenient = fetch_all(records, FetchConfig(concurrency=2, per_host=2))
        assert lenient[f"{base}/corrupt.jpg"].ok  # sniffing alone cannot tell
        checked = fetch_all(records, FetchConfig(concurrency=2, per_host=2, decode_check=True))
        assert checked[f"{base}/corrupt.jpg"].reason is Reason.DECODE_ERROR
        assert checked[f"{base}/good.jpg"].ok


def test_is_valid_file_is_called_with_the_body() -> None:
    """gbif-dl 0.1 compatibility: is_valid_file(body) False marks the record INVALID."""
    with MediaHosts(n_hosts=1) as hosts:
        urls = [f"{hosts.base_urls[0]}/media/{i}.jpg" for i in range(10)]
        seen: list[bytes] = []

        def only_png(body: bytes) -> bool:
            seen.append(body)
            return body.startswith(b"\x89PNG")

        results = fetch_all(
            [make_record(u) for u in urls],
            FetchConfig(concurrency=4, per_host=2, is_valid_file=only_png),
        )
        assert len(seen) == 10
        for url, result in results.items():
            is_png = render_image(url.removeprefix(hosts.base_urls[0]))[1] == "image/png"
            assert result.ok is is_png
            assert is_png or result.reason is Reason.INVALID


def test_lookahead_is_bounded() -> None:
    """The engine pulls at most `lookahead` (+1 waiting) records ahead of completed ones."""
    with MediaHosts(n_hosts=2, faults=HostFaults(latency_s=0.005)) as hosts:
        pulled = 0
        completed = 0
        worst = 0

        def records() -> Iterator[dict[str, Any]]:
            nonlocal pulled, worst
            for i in range(400):
                pulled += 1
                worst = max(worst, pulled - completed)
                yield make_record(f"{hosts.base_urls[i % 2]}/media/{i}.jpg")

        def on_result(result: FetchResult) -> None:
            nonlocal completed
            assert result.ok
            completed += 1

        config = FetchConfig(concurrency=4, per_host=2, lookahead=20)
        summary = asyncio.run(FetchEngine(config).run(records(), on_result))
        assert summary.ok == completed == pulled == 400
        assert worst <= 21


def test_async_input_and_async_callback() -> None:
    """An async iterable of records and a coroutine on_result work the same."""
    with MediaHosts(n_hosts=2) as hosts:

        async def records() -> AsyncIterator[dict[str, Any]]:
            for i in range(50):
                yield make_record(f"{hosts.base_urls[i % 2]}/media/{i}.jpg")

        done: list[FetchResult] = []

        async def on_result(result: FetchResult) -> None:
            await asyncio.sleep(0)
            done.append(result)

        summary = asyncio.run(
            FetchEngine(FetchConfig(concurrency=8, per_host=4)).run(records(), on_result)
        )
        assert summary.ok == len(done) == 50 and summary.bytes > 0


def test_slow_host_does_not_stall_the_others() -> None:
    """Round-robin per-host queues: fast-host items finish while the slow host is still busy."""
    faults = {0: HostFaults(latency_s=0.5)}
    with MediaHosts(n_hosts=2, faults=faults) as hosts:
        slow, fast = hosts.base_urls
        urls = [f"{slow}/media/{i}.jpg" for i in range(6)] + [
            f"{fast}/media/{i}.jpg" for i in range(150)
        ]
        order: list[str] = []
        config = FetchConfig(concurrency=8, per_host=2)
        asyncio.run(
            FetchEngine(config).run(
                [make_record(u) for u in urls], lambda r: order.append(r.record["url"])
            )
        )
        third_slow = [i for i, u in enumerate(order) if u.startswith(slow)][2]
        # the third slow result needs two 0.5 s rounds; all fast ones are done before it
        assert all(order.index(u) < third_slow for u in urls[6:])


def test_slow_body_hits_the_total_timeout_and_is_retried() -> None:
    """A dripped body slower than total_timeout_s is a TIMEOUT, retried like other timeouts."""
    with MediaHosts(
        n_hosts=2,
        faults={
            0: HostFaults(drip_rate=1.0, drip_s=1.0, fault_attempts=1),
            1: HostFaults(drip_rate=1.0, drip_s=1.0, fault_attempts=9),
        },
    ) as hosts:
        once, always = (f"{base}/media/1.jpg" for base in hosts.base_urls)
        config = FetchConfig(
            concurrency=4,
            per_host=2,
            total_timeout_s=0.3,
            retry=RetryPolicy(retries=1, backoff_s=0.01, jitter_s=0.01),
        )
        results = fetch_all([make_record(once), make_record(always)], config)
        assert results[once].ok and results[once].attempts == 2
        assert results[always].reason is Reason.TIMEOUT and results[always].attempts == 2


def test_on_result_exception_stops_the_run() -> None:
    """An exception raised by on_result is re-raised by run() after in-flight work is cancelled."""
    with MediaHosts(n_hosts=1) as hosts:
        records = [make_record(f"{hosts.base_urls[0]}/media/{i}.jpg") for i in range(100)]

        def boom(result: FetchResult) -> None:
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            asyncio.run(FetchEngine(FetchConfig(concurrency=4, per_host=2)).run(records, boom))


def test_cancellation_stops_cleanly_without_reporting_unfinished_items() -> None:
    """Cancelling run() cancels in-flight work; only finished records were reported."""
    faults = {0: HostFaults(latency_s=2.0)}
    with MediaHosts(n_hosts=2, faults=faults) as hosts:
        slow, fast = hosts.base_urls
        records = [make_record(f"{slow}/media/{i}.jpg") for i in range(4)]
        records += [make_record(f"{fast}/media/{i}.jpg") for i in range(4)]
        reported: list[FetchResult] = []

        async def main() -> None:
            engine = FetchEngine(FetchConfig(concurrency=8, per_host=4))
            four_done = asyncio.Event()

            def on_result(result: FetchResult) -> None:
                reported.append(result)
                if len(reported) == 4:
                    four_done.set()

            task = asyncio.create_task(engine.run(records, on_result))
            await four_done.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(asyncio.wait_for(main(), timeout=4))
        assert len(reported) == 4
        assert all(r.ok and r.record["url"].startswith(fast) for r in reported)


def test_a_too_long_retry_after_defers_the_item_to_the_end_of_the_run() -> None:
    """429 + Retry-After: 600 (above the 120 s ceiling): the item is not waited for; it is asked
    again once every other record is done, and then succeeds."""
    faults = HostFaults(throttle_rate=0.2, retry_after_s=600, seed=5)
    with MediaHosts(n_hosts=2, faults=faults) as hosts:
        urls = [f"{base}/media/{i}.jpg" for base in hosts.base_urls for i in range(30)]
        throttled = {u for u in urls if faults.fault_for("/" + u.split("/", 3)[3]) == "throttle"}
        assert 3 <= len(throttled) <= 30
        order: list[str] = []

        def collect(result: FetchResult) -> None:
            order.append(result.record["url"])
            assert result.ok, result.detail

        config = FetchConfig(concurrency=8, per_host=4)  # the default policy: a 120 s ceiling
        summary = asyncio.run(FetchEngine(config).run([make_record(u) for u in urls], collect))
        log = hosts.request_log()
    assert summary.ok == len(urls) and sorted(order) == sorted(urls)
    last_other = max(i for i, url in enumerate(log) if url not in throttled)
    for url in throttled:
        asked = [i for i, seen in enumerate(log) if seen == url]
        assert len(asked) == 2 and asked[1] > last_other  # after every other item
    assert set(order[-len(throttled) :]) == throttled  # reported after all the others


def test_a_host_that_keeps_asking_for_a_too_long_wait_fails_the_item_with_retry_after() -> None:
    with MediaHosts(n_hosts=1, faults=HostFaults(retry_after_s=599)) as hosts:
        base = hosts.base_urls[0]
        urls = [f"{base}/status/429/x.jpg", *(f"{base}/media/{i}.jpg" for i in range(5))]
        results = fetch_all([make_record(u) for u in urls], FetchConfig(concurrency=4))
        first_run = hosts.request_log()
        none = fetch_all(
            [make_record(urls[0])], FetchConfig(retry=RetryPolicy(retries=0, max_retry_after_s=120))
        )
        log = hosts.request_log()
    stuck = results[urls[0]]
    assert (stuck.ok, stuck.reason, stuck.http_status, stuck.attempts) == (
        False,
        Reason.RETRY_AFTER,
        429,
        2,
    )
    assert "599 s (Retry-After)" in stuck.detail and "max_retry_after_s=120" in stuck.detail
    assert "asked again at the end of the run" in stuck.detail
    assert all(results[u].ok for u in urls[1:])
    asked = [i for i, url in enumerate(first_run) if url == urls[0]]
    assert asked == [asked[0], len(first_run) - 1]  # the second time after every other request
    # no retries allowed: no deferral either, one request and the same typed reason
    assert (none[urls[0]].reason, none[urls[0]].attempts) == (Reason.RETRY_AFTER, 1)
    assert log[len(first_run) :] == [urls[0]]


def test_deferred_items_stay_bounded_by_the_lookahead() -> None:
    """With a tiny look-ahead and a host throttling half its URLs for 600 s, deferred items are
    asked again once `lookahead` of them wait: the run completes, each asked exactly twice."""
    faults = HostFaults(throttle_rate=0.5, retry_after_s=600, seed=2)
    with MediaHosts(n_hosts=1, faults=faults) as hosts:
        urls = [f"{hosts.base_urls[0]}/media/{i}.jpg" for i in range(40)]
        results = fetch_all(
            [make_record(u) for u in urls], FetchConfig(concurrency=2, per_host=2, lookahead=4)
        )
        log = hosts.request_log()
    throttled = {u for u in urls if faults.fault_for("/" + u.split("/", 3)[3]) == "throttle"}
    assert len(throttled) >= 8 and all(r.ok for r in results.values())
    assert all(log.count(u) == (2 if u in throttled else 1) for u in urls)


def test_a_large_body_arrives_byte_for_byte_whatever_pieces_it_comes_in() -> None:
    """Bodies past the whole-read size are taken in whatever pieces have arrived: each one
    arrives exactly as the host sent it (compared with an independent client's copy), bodies
    past ``spill_bytes`` too, and a body announced past ``max_bytes`` is still refused."""
    import hashlib
    import urllib.request

    sizes = (300_000, 3_000_000, 6_000_000)  # past WHOLE_READ_BYTES; the last spills to a file
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        urls = [f"{base}/big/{size}/a.jpg" for size in sizes]
        results = fetch_all([make_record(u) for u in urls], FetchConfig(concurrency=3, per_host=3))
        for url, size in zip(urls, sizes, strict=True):
            with urllib.request.urlopen(url, timeout=30) as response:
                expected = response.read()
            result = results[url]
            assert result.ok, result.detail
            body = result.body if result.body is not None else b""
            assert len(body) == size == len(expected)
            assert hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()
        small = FetchConfig(concurrency=1, per_host=1, max_bytes=1_000_000)
        refused = fetch_all([make_record(urls[1])], small)[urls[1]]
        assert refused.reason is Reason.TOO_LARGE and refused.body is None

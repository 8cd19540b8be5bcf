"""Hostile data on the fetching side (issue 21): private addresses and pixel bombs.

Private ranges are only ever *named* here: a test resolver maps host names to them, and the
address guard must refuse before any connection (each test records every ``connect`` and checks
none went to a private range). Real connections go to loopback servers of the test. Memory is
measured in a child interpreter (``VmHWM``, the peak resident set), never time.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from gbif_dl._aio import run_sync
from gbif_dl.fetch.engine import FetchConfig, FetchEngine
from gbif_dl.fetch.result import FetchResult, Reason
from gbif_dl.io import download
from gbif_dl.records import make_record
from gbif_dl.testing._server import BackgroundLoop, serve_on_loopback
from gbif_dl.testing.mediahost import MediaHosts

# --- helpers ------------------------------------------------------------------------------------


class TableResolver(AbstractResolver):
    """Resolves names from a table, as a DNS server of the test would."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        self.asked.append(host)
        address = self.table[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket of this process tries to connect to during the test."""
    seen: list[Any] = []
    real = socket.socket.connect

    def recording(self: socket.socket, address: Any) -> Any:
        seen.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    return seen


def _private(addresses: list[Any]) -> list[Any]:
    return [
        a
        for a in addresses
        if isinstance(a, tuple) and ipaddress.ip_address(a[0].split("%")[0]).is_private
        if not ipaddress.ip_address(a[0].split("%")[0]).is_loopback
    ]


def _fetch(urls: list[str], **config: Any) -> list[FetchResult]:
    results: list[FetchResult] = []
    engine = FetchEngine(FetchConfig(concurrency=4, per_host=2, **config))
    run_sync(engine.run([make_record(u) for u in urls], results.append))
    return results


class ForeignServer:
    """A loopback HTTP server that is *not* registered with the address guard (a service of
    the user's own machine); counts the requests it gets. ``body`` is served at every path."""

    def __init__(self, body: bytes, content_type: str = "image/png") -> None:
        self.body = body
        self.content_type = content_type
        self.requests = 0
        self._loop = BackgroundLoop("foreign-server")
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(body=self.body, content_type=self.content_type)

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # not serve_on_loopback: not allowed
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def _teardown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> ForeignServer:
        self._loop.start(self._setup, self._teardown)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.stop()


class OwnServer(ForeignServer):
    """The same server, started the way ``gbif_dl.testing`` starts its own (allowed)."""

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = await serve_on_loopback(self._runner, "127.0.0.1")
        self.base_url = f"http://127.0.0.1:{port}"


def _small_png() -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def flat_png(path: Path, width: int, height: int) -> Path:
    """Write a ``width`` x ``height`` RGBA PNG of one flat colour, streaming (a 13,300 x 13,300
    one is ~700 KB on disk and needs a few MB to write; decoded it is 708 MB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    row = b"\x00" + bytes((30, 120, 60, 255)) * width
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def pixel_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's input: a ~700 KB PNG of 13,300 x 13,300 RGBA."""
    return flat_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 13_300, 13_300)


_PEAK = """
import sys
from gbif_dl.fetch import images
body = open(sys.argv[1], "rb").read()
outcome = images.prepare(body, 256, 90, sys.argv[2] == "1")
ok = isinstance(outcome, images.ResizedImage)
kind = f"{outcome[1]}x{outcome[2]}" if ok else outcome[0]
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(kind, int(status) // 1024)
"""


def _peak(path: Path, decode_check: bool) -> tuple[str, int]:
    """What the resize job of the process pool answers for ``path`` and its peak RSS in MB."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _PEAK, str(path), "1" if decode_check else "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    kind, megabytes = done.stdout.split()
    return kind, int(megabytes)


# --- private addresses (SSRF) ------------------------------------------------------------------


@pytest.mark.parametrize("address", ["10.20.30.40", "192.168.1.20"])
def test_media_url_on_a_private_name_is_refused_without_connection(
    address: str, connects: list[Any]
) -> None:
    """A media URL whose host name resolves to 10.x / 192.168.x fails with blocked_address,
    once (no retry), and no socket connects there."""
    resolver = TableResolver({"media.publisher.test": address})
    results = _fetch(["http://media.publisher.test/a.jpg"], resolver=resolver)
    assert [r.reason for r in results] == [Reason.BLOCKED_ADDRESS]
    assert results[0].attempts == 1
    assert address in results[0].detail and "GBIF_DL_ALLOW_PRIVATE" in results[0].detail
    assert resolver.asked == ["media.publisher.test"]
    assert _private(connects) == []


def test_private_ip_literal_is_refused_before_any_lookup(connects: list[Any]) -> None:
    results = _fetch(["http://10.0.0.5/a.jpg", "http://[fe80::1]/b.jpg"])
    assert [r.reason for r in results] == [Reason.BLOCKED_ADDRESS] * 2
    assert _private(connects) == []


def test_redirect_to_the_metadata_address_is_refused(connects: list[Any]) -> None:
    """A publisher's 302 to ``169.254.169.254`` (cloud metadata) is not followed."""
    with MediaHosts(n_hosts=1) as hosts:
        target = "http://169.254.169.254/latest/meta-data/iam"
        results = _fetch([f"{hosts.base_urls[0]}/redirect?to={target}"])
    assert [r.reason for r in results] == [Reason.BLOCKED_ADDRESS]
    assert results[0].http_status == 302 and results[0].attempts == 1
    assert results[0].final_url == target
    assert not any(isinstance(a, tuple) and a[0] == "169.254.169.254" for a in connects)


def test_redirect_to_a_name_resolving_privately_is_refused(connects: list[Any]) -> None:
    resolver = TableResolver({"internal.test": "10.9.9.9"})
    with MediaHosts(n_hosts=1) as hosts:
        host = hosts.base_urls[0].split("//")[1]
        resolver.table["media.test"] = host.split(":")[0]
        url = f"http://media.test:{host.split(':')[1]}/redirect?to=http://internal.test/x.jpg"
        results = _fetch([url], resolver=resolver)
    assert [r.reason for r in results] == [Reason.BLOCKED_ADDRESS]
    assert _private(connects) == []


def test_loopback_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service of the user's own machine is not reached by default; ``allow_private=True``,
    ``GBIF_DL_ALLOW_PRIVATE=1`` and ``download(allow_private=True)`` let it through."""
    monkeypatch.delenv("GBIF_DL_ALLOW_PRIVATE", raising=False)
    with ForeignServer(_small_png()) as server:
        url = f"{server.base_url}/a.png"
        named = url.replace("127.0.0.1", "mirror.test")
        resolver = TableResolver({"mirror.test": "127.0.0.1"})
        refused = _fetch([url]) + _fetch([named], resolver=resolver)
        assert [r.reason for r in refused] == [Reason.BLOCKED_ADDRESS] * 2
        assert server.requests == 0
        allowed = _fetch([url, named], resolver=resolver, allow_private=True)
        assert [r.ok for r in allowed] == [True, True]
        monkeypatch.setenv("GBIF_DL_ALLOW_PRIVATE", "1")
        assert [r.ok for r in _fetch([url])] == [True]
        assert server.requests == 3


def test_download_allow_private_reaches_a_local_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GBIF_DL_ALLOW_PRIVATE", raising=False)
    with ForeignServer(_small_png()) as server:
        items = [{"url": f"{server.base_url}/{i}.png", "label": "a"} for i in range(3)]
        refused = download(items, root=tmp_path / "refused", progress=False)
        assert refused["failed"] == 3 and refused["reasons"] == {"blocked_address": 3}
        assert server.requests == 0
        allowed = download(items, root=tmp_path / "mirror", progress=False, allow_private=True)
        assert allowed["success"] == 3


def test_the_projects_own_servers_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``gbif_dl.testing`` servers register themselves: reachable with the guard on."""
    monkeypatch.delenv("GBIF_DL_ALLOW_PRIVATE", raising=False)
    with OwnServer(_small_png()) as server:
        assert [r.ok for r in _fetch([f"{server.base_url}/a.png"])] == [True]


# --- pixel bombs --------------------------------------------------------------------------------


@pytest.mark.parametrize("decode_check", [False, True])
def test_pixel_bomb_is_refused_before_decoding_with_bounded_memory(
    pixel_bomb: Path, decode_check: bool
) -> None:
    """The issue's 13,300 x 13,300 RGBA PNG with max_size=256: the resize job refused it with
    ``too_many_pixels`` and peaks well under the decoded size (the old job: 2,232 MB)."""
    assert pixel_bomb.stat().st_size < 1_000_000
    kind, peak_mb = _peak(pixel_bomb, decode_check)
    assert kind == "too_many_pixels"
    assert peak_mb < 200


def test_under_budget_png_resizes_with_less_than_the_old_peak(tmp_path: Path) -> None:
    """7,000 x 7,000 RGBA (49 MP, 196 MB decoded), max_size=256: reduced right after decoding,
    before the copies; the old job peaked at 645 MB, this one at about 2 decoded sizes."""
    kind, peak_mb = _peak(flat_png(tmp_path / "mid.png", 7_000, 7_000), decode_check=False)
    assert kind == "256x256"
    assert peak_mb < 520


def test_engine_refuses_a_pixel_bomb_from_its_header(pixel_bomb: Path, tmp_path: Path) -> None:
    """Resizing or decode-checking a pixel bomb fails with too_many_pixels (nothing decoded);
    a plain download (no decode) stores it as it is."""
    with OwnServer(pixel_bomb.read_bytes()) as server:
        url = f"{server.base_url}/bomb.png"
        for config in ({"max_size": 256}, {"decode_check": True}):
            results = _fetch([url], **config)
            assert [r.reason for r in results] == [Reason.TOO_MANY_PIXELS]
            assert "176890000 pixels" in results[0].detail
        assert [r.ok for r in _fetch([url])] == [True]


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("GBIF_DL_ALLOW_PRIVATE", raising=False)
    yield


# --- many large bodies at once ------------------------------------------------------------------

_BODIES = """
import json, sys
from gbif_dl._aio import run_sync
from gbif_dl.fetch.engine import FetchConfig, FetchEngine
from gbif_dl.records import make_record
urls = json.loads(sys.argv[1])
sizes = []
def on_result(result):
    sizes.append(len(result.body or b"") if result.ok else str(result.reason))
config = FetchConfig(concurrency=16, per_host=16, max_bytes=60 * 2**20, **json.loads(sys.argv[2]))
run_sync(FetchEngine(config).run([make_record(u) for u in urls], on_result))
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({"sizes": sizes, "peak_mb": int(status) // 1024}))
"""


def _bodies_peak(urls: list[str], **config: Any) -> tuple[list[Any], int]:
    import json
    import os

    done = subprocess.run(
        [sys.executable, "-c", _BODIES, json.dumps(urls), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GBIF_DL_ALLOW_PRIVATE": "1"},  # this test's media host
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return out["sizes"], out["peak_mb"]


def test_many_large_bodies_in_flight_stay_within_the_memory_budget() -> None:
    """16 bodies of 50 MiB at concurrency 16: each spills to a temp file while it downloads and
    at most ``memory_budget`` bytes of them are loaded at once (the old engine held all of
    them: about 16 x 50 MiB = 800 MB)."""
    size = 50 * 2**20
    with MediaHosts(n_hosts=1) as hosts:
        urls = [f"{hosts.base_urls[0]}/big/{size}/{i}.jpg" for i in range(16)]
        sizes, peak_mb = _bodies_peak(urls, memory_budget=100 * 2**20)
    assert sizes == [size] * 16
    assert peak_mb < 400

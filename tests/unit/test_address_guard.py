"""The address guard: no request reaches a private, loopback or link-local address unless allowed.

Private ranges are only ever *named* here: a test resolver maps host names to them and the guard
must refuse before aiohttp connects. Real connections go to loopback servers of the test itself.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from gbif_dl.fetch.guard import (
    ALLOW_PRIVATE_ENV,
    AddressGuard,
    BlockedAddressError,
    allow_service,
    forget_service,
    is_blocked_address,
)
from gbif_dl.testing.mediahost import MediaHosts


class TableResolver(AbstractResolver):
    """Resolves names from a table, as a DNS server of the test would; counts the look-ups."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": self.table[host],
                "port": port,
                "family": socket.AF_INET6 if ":" in self.table[host] else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.0.0.5", True),
        ("172.16.3.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),  # shared address space (carrier-grade NAT)
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:192.168.0.1", True),  # IPv4-mapped: judged as the IPv4 address
        ("93.184.216.34", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_blocked_addresses(address: str, blocked: bool) -> None:
    assert is_blocked_address(address) is blocked


def test_ip_literals_are_checked_in_the_url() -> None:
    guard = AddressGuard(allow_private=False)
    for url in ("http://127.0.0.1:8080/a.jpg", "https://[fe80::1]/x", "http://169.254.169.254/"):
        with pytest.raises(BlockedAddressError, match="allow_private=True"):
            guard.check_url(url)
    guard.check_url("https://93.184.216.34/a.jpg")
    guard.check_url("https://inaturalist-open-data.example/photos/1/large.jpg")  # names: later
    AddressGuard(allow_private=True).check_url("http://10.0.0.1/a.jpg")


def test_the_environment_variable_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    assert AddressGuard().allow_private
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "0")
    assert not AddressGuard().allow_private
    monkeypatch.delenv(ALLOW_PRIVATE_ENV)
    assert not AddressGuard().allow_private
    assert AddressGuard(allow_private=True).allow_private


@pytest.fixture
def loopback_server() -> Iterator[tuple[int, list[str]]]:
    """A real HTTP server on 127.0.0.1, in its own thread, recording every request path."""
    seen: list[str] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(body=b"image bytes")

    async def start() -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, runner.addresses[0][1]

    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield port, seen
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _get(url: str, resolver: AbstractResolver) -> bytes:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as session,
        session.get(url) as response,
    ):
        return await response.read()


def test_names_resolving_to_private_ranges_are_refused_before_connecting() -> None:
    """A test resolver maps names to private ranges; the guard refuses after the look-up and
    before any connection (a connection to those ranges would fail or hang here: it is never
    tried)."""
    table = {
        "metadata.test": "169.254.169.254",
        "intranet.test": "10.0.0.5",
        "router.test": "192.168.1.1",
        "v6.test": "fd00::5",
    }
    for name in table:
        inner = TableResolver(table)
        resolver = AddressGuard(allow_private=False).resolver(inner)
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            asyncio.run(_get(f"http://{name}/a.jpg", resolver))
        assert isinstance(caught.value.os_error, BlockedAddressError)
        assert inner.asked == [name]


def test_a_loopback_server_is_refused_unless_allowed(
    loopback_server: tuple[int, list[str]],
) -> None:
    port, seen = loopback_server
    table = {"media.test": "127.0.0.1"}
    url = f"http://media.test:{port}/photo.jpg"
    with pytest.raises(aiohttp.ClientConnectorError):
        asyncio.run(_get(url, AddressGuard(allow_private=False).resolver(TableResolver(table))))
    assert seen == []  # refused before the request was sent
    body = asyncio.run(_get(url, AddressGuard(allow_private=True).resolver(TableResolver(table))))
    assert body == b"image bytes" and seen == ["/photo.jpg"]


def test_an_allowed_service_passes_and_only_on_its_port(
    loopback_server: tuple[int, list[str]],
) -> None:
    port, seen = loopback_server
    guard = AddressGuard(allow_private=False)
    assert not guard.allows("127.0.0.1", port)
    allow_service("127.0.0.1", port)
    try:
        assert guard.allows("127.0.0.1", port) and not guard.allows("127.0.0.1", port + 1)
        guard.check_url(f"http://127.0.0.1:{port}/x.jpg")
        body = asyncio.run(
            _get(
                f"http://media.test:{port}/x.jpg",
                guard.resolver(TableResolver({"media.test": "127.0.0.1"})),
            )
        )
        assert body == b"image bytes" and seen == ["/x.jpg"]
    finally:
        forget_service("127.0.0.1", port)
    assert not guard.allows("127.0.0.1", port)


def test_a_stopped_test_server_leaves_no_permission_behind() -> None:
    """The project's media hosts allow their ports while they serve and forget them when they
    stop, so a later program on a reused port is refused as any other."""
    guard = AddressGuard(allow_private=False)
    with MediaHosts(n_hosts=2) as hosts:
        ports = [(urlsplit(u).hostname or "", urlsplit(u).port or 0) for u in hosts.base_urls]
        assert all(guard.allows(host, port) for host, port in ports)
    assert not any(guard.allows(host, port) for host, port in ports)

"""Test-wide guards: no connection leaves the machine.

Every test talks real HTTP, but only over loopback to the project's own simulator and media
hosts. Any attempt to connect or resolve a name outside loopback fails loudly.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host: Any) -> bool:
    if host in ("localhost", "localhost.localdomain", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(address: Any) -> None:
    if isinstance(address, (tuple, list)) and address and not _is_loopback(address[0]):
        raise ConnectionRefusedError(f"tests may not connect outside loopback: {address!r}")


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, bytes):
        host = host.decode()
    if not _is_loopback(host):
        raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(autouse=True)
def _no_real_gbif(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reaches api.gbif.org by accident: the default base URL points nowhere."""
    monkeypatch.setenv("GBIF_API_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("GBIF_USER", raising=False)
    monkeypatch.delenv("GBIF_PWD", raising=False)
    yield


@pytest.fixture
def interruptible_children() -> Iterator[None]:
    """Child processes started in the test get SIGINT's default behaviour (Ctrl-C stops them).

    A shell starts a background job (``pytest ... &``, a CI step run that way) with SIGINT
    ignored, and every child inherits that: a test sending SIGINT would then see the child
    run to its end. A Python handler is reset to the default by ``exec``; ``SIG_IGN`` is not.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous)


# --- GBIF simulator fixtures (gbif_dl.testing) --------------------------------------------------


@pytest.fixture
def gbif_sim() -> Iterator[Any]:
    """A GBIF API simulator over a small population (600 records, no media hosts).

    Users: ``alice``/``secret``. Media URLs point at a dead loopback port.
    """
    from gbif_dl.testing import GbifSimulator, Population

    population = Population(seed=0, size=600, n_species=6, n_datasets=3)
    with GbifSimulator(population, users={"alice": "secret"}) as sim:
        yield sim


@pytest.fixture
def simulation() -> Iterator[Any]:
    """A small full simulation: 2 media hosts, 300 records pointing at them, the GBIF API."""
    from gbif_dl.testing import Simulation

    with Simulation(seed=0, size=300, n_hosts=2, n_species=5, n_datasets=3) as simu:
        yield simu

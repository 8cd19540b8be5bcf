"""The test suite itself cannot reach the internet."""

import socket

import pytest


def test_outside_connection_is_refused() -> None:
    """A connection to a non-loopback address fails before any packet is sent."""
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("93.184.216.34", 80))


def test_outside_name_resolution_is_refused() -> None:
    """Resolving a public host name fails; loopback names still resolve."""
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("api.gbif.org", 443)
    assert socket.getaddrinfo("127.0.0.1", 80)

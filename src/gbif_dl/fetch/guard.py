"""The address guard: media URLs never reach private, loopback or link-local addresses.

Media URLs come from thousands of publishers. A URL (or a redirect) that points at
``169.254.169.254``, ``10.0.0.5`` or ``localhost`` would make gbif-dl fetch from the user's own
network (server-side request forgery). The guard refuses, before any connection:

- a URL whose host is an IP literal that is not a global unicast address;
- a host name that resolves to any such address (checked on the resolved addresses, through an
  aiohttp resolver, so a name cannot point somewhere else between the check and the connect).

Refused requests fail with reason ``blocked_address``. Allow them with ``allow_private=True``, the
environment variable ``GBIF_DL_ALLOW_PRIVATE=1`` (local mirrors, simulators, tests), or for one
service at a time with :func:`allow_service` (how ``gbif_dl.testing`` and the demo let their own
loopback servers through).

Example:
    >>> guard = AddressGuard(allow_private=False)
    >>> guard.blocked_address("10.1.2.3"), guard.blocked_address("93.184.216.34")
    (True, False)
    >>> guard.check_url("http://[::1]:8080/a.jpg")
    Traceback (most recent call last):
    ...
    gbif_dl.fetch.guard.BlockedAddressError: ::1 is a private, loopback or link-local address \
(set allow_private=True or GBIF_DL_ALLOW_PRIVATE=1 to allow it)
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = [
    "ALLOW_PRIVATE_ENV",
    "AddressGuard",
    "BlockedAddressError",
    "GuardedResolver",
    "allow_service",
    "allowed_services",
    "forget_service",
    "is_blocked_address",
]

#: Set to ``1`` (or ``true``/``yes``) to allow private addresses in every run.
ALLOW_PRIVATE_ENV = "GBIF_DL_ALLOW_PRIVATE"

_services: set[tuple[str, int]] = set()
_services_lock = threading.Lock()


class BlockedAddressError(OSError):
    """A media URL or redirect leads to a private, loopback or link-local address."""

    def __init__(self, address: str, host: str | None = None) -> None:
        where = address if host is None or host == address else f"{host} ({address})"
        super().__init__(
            f"{where} is a private, loopback or link-local address "
            f"(set allow_private=True or {ALLOW_PRIVATE_ENV}=1 to allow it)"
        )
        self.address = address
        self.host = host


def is_blocked_address(address: str) -> bool:
    """True for an address a publisher's URL must not reach: anything but global unicast
    (private, loopback, link-local, shared, reserved, multicast, unspecified; IPv4-mapped IPv6
    addresses are judged as the IPv4 address they carry).

    Example:
        >>> [is_blocked_address(a) for a in ("127.0.0.1", "169.254.169.254", "::ffff:10.0.0.1")]
        [True, True, True]
        >>> is_blocked_address("2606:4700::1111")
        False
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def allow_service(host: str, port: int) -> None:
    """Let the guard through to one local service (``host`` an IP address, ``port`` its port),
    in this process. The project's simulator and media hosts call it for their own sockets.

    Example:
        >>> allow_service("127.0.0.1", 65000)
        >>> AddressGuard(allow_private=False).allows("127.0.0.1", 65000)
        True
    """
    with _services_lock:
        _services.add((str(ipaddress.ip_address(host)), int(port)))


def forget_service(host: str, port: int) -> None:
    """Undo :func:`allow_service` once the service has stopped (its port may be reused by
    another program, which must not inherit the permission).

    Example:
        >>> allow_service("127.0.0.1", 65001); forget_service("127.0.0.1", 65001)
        >>> AddressGuard(allow_private=False).allows("127.0.0.1", 65001)
        False
    """
    with _services_lock:
        _services.discard((str(ipaddress.ip_address(host)), int(port)))


def allowed_services() -> frozenset[tuple[str, int]]:
    """The ``(address, port)`` pairs let through by :func:`allow_service`.

    Example:
        >>> isinstance(allowed_services(), frozenset)
        True
    """
    with _services_lock:
        return frozenset(_services)


def _env_allows() -> bool:
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class AddressGuard:
    """Decides which addresses media requests may reach.

    Args:
        allow_private: allow every address; ``None`` reads ``GBIF_DL_ALLOW_PRIVATE``.
        services: ``(address, port)`` pairs let through besides those of
            :func:`allow_service` (how runners carry them to worker processes).

    Example:
        >>> AddressGuard(allow_private=True).allows("10.0.0.1", 80)
        True
    """

    def __init__(
        self,
        allow_private: bool | None = None,
        services: frozenset[tuple[str, int]] | None = None,
    ) -> None:
        self.allow_private = _env_allows() if allow_private is None else bool(allow_private)
        self.services = frozenset(
            (str(ipaddress.ip_address(host)), int(port)) for host, port in services or ()
        )

    def blocked_address(self, address: str) -> bool:
        """True when ``address`` is one the guard refuses (on any port).

        Example:
            >>> AddressGuard(allow_private=False).blocked_address("192.168.1.1")
            True
        """
        return not self.allow_private and is_blocked_address(address)

    def allows(self, address: str, port: int) -> bool:
        """True when a connection to ``address``:``port`` may be made.

        Example:
            >>> AddressGuard(allow_private=False).allows("8.8.8.8", 443)
            True
        """
        if not self.blocked_address(address):
            return True
        service = (str(ipaddress.ip_address(address.split("%", 1)[0])), port)
        return service in self.services or service in allowed_services()

    def check_url(self, url: str) -> None:
        """Raise :class:`BlockedAddressError` for a URL whose host is a refused IP literal
        (host names are checked when they are resolved, by :class:`GuardedResolver`).

        Example:
            >>> AddressGuard(allow_private=False).check_url("https://example.org/a.jpg")
        """
        if self.allow_private:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return  # a name: judged on the addresses it resolves to
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        if not self.allows(host, port):
            raise BlockedAddressError(host)

    def resolver(self, inner: AbstractResolver | None = None) -> AbstractResolver:
        """An aiohttp resolver that refuses names resolving to blocked addresses (``inner``,
        default aiohttp's, does the resolving); ``inner`` itself when everything is allowed.

        Example:
            >>> guard = AddressGuard(allow_private=True)
            >>> guard.resolver(inner=None).__class__.__name__  # doctest: +SKIP
            'ThreadedResolver'
        """
        if self.allow_private:
            return inner if inner is not None else DefaultResolver()
        return GuardedResolver(self, inner)


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` and refuses the name if any address it gives is blocked.

    Refusing on *any* blocked address (not only when all are) keeps a name that mixes a public
    and a private address from reaching the private one on a retry or a fallback.
    """

    def __init__(self, guard: AddressGuard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self.inner: AbstractResolver = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host``, or :class:`BlockedAddressError` before any connection."""
        results = await self.inner.resolve(host, port, family)
        for result in results:
            address: Any = result["host"]
            if not self.guard.allows(str(address), port):
                raise BlockedAddressError(str(address), host)
        return results

    async def close(self) -> None:
        """Close the inner resolver."""
        await self.inner.close()

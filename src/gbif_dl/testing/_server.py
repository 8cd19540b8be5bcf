"""What the simulator and the media hosts share: an aiohttp app served from a background thread.

Example:
    >>> async def setup() -> None: ...
    >>> async def teardown() -> None: ...
    >>> server = BackgroundLoop("example")
    >>> server.start(setup, teardown)
    >>> server.running
    True
    >>> server.stop()
    >>> server.running
    False
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

from gbif_dl.fetch.guard import allow_service, forget_service


class BackgroundLoop:
    """An asyncio loop running in a daemon thread from :meth:`start` until :meth:`stop`.

    ``setup`` runs on the loop before :meth:`start` returns (an exception it raises is raised
    by :meth:`start`); ``teardown`` runs on the loop after :meth:`stop` is called.

    Example:
        >>> async def nothing() -> None: ...
        >>> loop = BackgroundLoop("doc")
        >>> loop.start(nothing, nothing)
        >>> loop.stop()
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is serving."""
        return self._thread is not None

    def start(
        self, setup: Callable[[], Awaitable[None]], teardown: Callable[[], Awaitable[None]]
    ) -> None:
        """Start the thread and wait for ``setup`` to finish (no-op when already running)."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(setup())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(teardown())
            loop.close()

        thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            self._loop = self._thread = None
            raise failure[0]

    def stop(self) -> None:
        """Run ``teardown`` and end the thread (no-op when not running)."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop = self._thread = None


async def serve_on_loopback(runner: web.AppRunner, host: str, port: int = 0) -> int:
    """Serve an aiohttp ``runner`` (already set up) on ``host:port``; returns the bound port.

    ``port=0`` picks a free port. The address guard of this process lets the service through
    (:func:`gbif_dl.fetch.guard.allow_service`): the project's own servers are reachable with
    the guard on.

    Example:
        >>> async def demo() -> int:  # doctest: +SKIP
        ...     runner = web.AppRunner(web.Application())
        ...     await runner.setup()
        ...     return await serve_on_loopback(runner, "127.0.0.1")
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = int(sock.getsockname()[1])
    allow_service(str(sock.getsockname()[0]), bound)
    await web.SockSite(runner, sock, backlog=1024).start()
    return bound


async def stop_serving(runner: web.AppRunner) -> None:
    """Stop what :func:`serve_on_loopback` served, and take its ports off the guard's list.

    Example:
        >>> async def demo(runner: web.AppRunner) -> None:  # doctest: +SKIP
        ...     await stop_serving(runner)
    """
    for address in list(runner.addresses):
        forget_service(str(address[0]), int(address[1]))
    await runner.cleanup()

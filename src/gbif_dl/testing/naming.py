"""Fixed host names for the simulated media hosts: a forwarding HTTP proxy on loopback.

The media hosts listen on free ports, which change from run to run; URLs that carry the port
change with it, and so do the file names derived from them. With host names, media URLs look
like ``http://media-1.gbif-dl-demo.invalid/media/12/0.jpg`` whatever the ports are: a client
sends its requests through :attr:`HostNameProxy.proxy_url` (the ``proxy=`` option that every
HTTP client has, :func:`gbif_dl.io.download` included) and the proxy forwards each one to the
host that serves the name. The ``.invalid`` top-level domain never resolves, so a URL used
without the proxy fails at once instead of reaching some real host.

Example:
    >>> from gbif_dl.testing import MediaHosts
    >>> with MediaHosts(n_hosts=1) as hosts, HostNameProxy(
    ...         {"media-1.example.invalid": hosts.base_urls[0]}) as proxy:
    ...     proxy.proxy_url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aiohttp
from aiohttp import web

from gbif_dl.testing._server import BackgroundLoop, serve_on_loopback, stop_serving

__all__ = ["HostNameProxy", "host_names"]

#: The headers a forwarded answer keeps (what the downloader looks at).
_KEPT_HEADERS = ("Content-Type", "Content-Encoding", "Retry-After", "Location", "ETag")


def host_names(n: int, domain: str = "gbif-dl-demo.invalid") -> list[str]:
    """``n`` stable media host names: ``media-1.<domain>`` .. ``media-N.<domain>``.

    Example:
        >>> host_names(2)
        ['media-1.gbif-dl-demo.invalid', 'media-2.gbif-dl-demo.invalid']
    """
    return [f"media-{i + 1}.{domain}" for i in range(n)]


class HostNameProxy:
    """An HTTP proxy on ``127.0.0.1`` that forwards ``http://NAME/...`` to ``targets[NAME]``.

    Args:
        targets: host name -> base URL of the server behind it (``http://127.0.0.2:PORT``).

    A name it does not know is answered 502 (like a proxy that cannot resolve it).

    Example:
        >>> HostNameProxy({"a.invalid": "http://127.0.0.1:9"}).targets
        {'a.invalid': 'http://127.0.0.1:9'}
    """

    def __init__(self, targets: Mapping[str, str]) -> None:
        self.targets = {name.lower(): url.rstrip("/") for name, url in targets.items()}
        self._server = BackgroundLoop("gbif-dl-hostnames")
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._proxy_url: str | None = None

    @property
    def proxy_url(self) -> str:
        """``http://127.0.0.1:PORT``: the ``proxy=`` to give clients (after start)."""
        if self._proxy_url is None:
            raise RuntimeError("HostNameProxy is not started; use it as a context manager")
        return self._proxy_url

    def base_urls(self, names: Sequence[str] | None = None) -> list[str]:
        """``["http://NAME", ...]`` for ``names`` (default: every name, in order).

        Example:
            >>> HostNameProxy({"a.invalid": "http://127.0.0.1:9"}).base_urls()
            ['http://a.invalid']
        """
        return [f"http://{name}" for name in (names or list(self.targets))]

    def start(self) -> HostNameProxy:
        """Start serving (idempotent); returns ``self``."""
        self._server.start(self._setup, self._teardown)
        return self

    def close(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> HostNameProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        self._session = aiohttp.ClientSession(auto_decompress=False)
        port = await serve_on_loopback(self._runner, "127.0.0.1")
        self._proxy_url = f"http://127.0.0.1:{port}"

    async def _teardown(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await stop_serving(self._runner)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        target = self.targets.get((request.url.host or request.host or "").lower())
        if target is None or self._session is None:
            return web.Response(status=502, text=f"unknown host {request.host!r}")
        try:
            async with self._session.request(
                request.method,
                target + request.path_qs,
                allow_redirects=False,
                headers={k: v for k, v in request.headers.items() if k.lower() == "range"},
            ) as answer:
                body = await answer.read()
                headers = {k: answer.headers[k] for k in _KEPT_HEADERS if k in answer.headers}
                return web.Response(status=answer.status, body=body, headers=headers)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"upstream failed: {type(exc).__name__}")

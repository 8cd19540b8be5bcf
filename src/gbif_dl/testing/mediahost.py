"""Image hosts on loopback: real JPEG/PNG bytes for any path, with per-host fault injection.

Every host is an ``aiohttp.web`` server on its own loopback address (``127.0.0.1``,
``127.0.0.2``, ...; Linux routes the whole ``127.0.0.0/8`` to loopback) and its own free port.
All hosts run in one background thread with its own event loop, so tests, benchmarks and the demo
can drive them from synchronous or asynchronous code alike.

Any path answers with a deterministic image: format (about 20% PNG, whatever the URL's
extension), pixel size (64..400 px a side) and pixels (a smooth random field, so two paths
never look alike: their dHashes differ in about half their bits) are chosen from a hash of the
path, and the bytes carry the path's hash in a comment, so two URLs never share the same bytes.
Rendered images stay in a small LRU cache (about half a millisecond to render one).

Faults (:class:`HostFaults`) hit URLs chosen by hash. Transient ones (503, 429 + ``Retry-After``,
truncated body, drip) hit a chosen URL for its first ``fault_attempts`` requests, then the URL
succeeds; HTML bodies and 404 are permanent. Deterministic paths, whatever the rates:

=================================  ================================================================
``/html/...``                      200 ``text/html``
``/status/<code>/...``             that status (429 and 503 carry ``Retry-After: retry_after_s``)
``/redirect?to=<url>``             302 to ``<url>``
``/big/<nbytes>/...``              a valid JPEG of exactly ``nbytes`` bytes (padded with comments)
``/truncate/...``                  ``Content-Length`` larger than the body, then the connection is
                                   closed, for the first ``fault_attempts`` requests
``/throttle/<seconds>/...``        429 with ``Retry-After: <seconds>`` once, then the image
``/copy/<key>/...``                the photo ``<key>``: the same bytes under every such path
``/resized/<percent>/<key>/...``   the photo ``<key>`` resized to ``<percent>``% (JPEG, quality 90)
``/reencoded/<quality>/<key>/...`` the photo ``<key>`` re-encoded as JPEG at ``<quality>``
``/placeholder/...``               one "image not available" picture, the same bytes everywhere
=================================  ================================================================

Example:
    >>> import urllib.request
    >>> with MediaHosts(n_hosts=2) as hosts:
    ...     url = hosts.base_urls[1] + "/media/1/0.jpg"
    ...     body = urllib.request.urlopen(url).read()
    ...     stats = hosts.stats()
    >>> body[:2] in (b"\\xff\\xd8", b"\\x89P")
    True
    >>> sum(s.requests for s in stats.values())
    1
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from gbif_dl.errors import ConfigError
from gbif_dl.testing._server import BackgroundLoop, serve_on_loopback, stop_serving

__all__ = [
    "HostFaults",
    "HostStats",
    "MediaHosts",
    "photo_copy",
    "placeholder_image",
    "render_image",
]

logger = logging.getLogger(__name__)

_PNG_SHARE = 0.2
_MIN_SIDE, _MAX_SIDE = 64, 400
_VARIANTS = 512  # distinct rendered pixel variants; URLs map onto them by hash
_CACHE_SIZE = 1024
_MAX_BIG = 1 << 31


@dataclass(frozen=True, kw_only=True, slots=True)
class HostFaults:
    """The faults one media host injects; rates are shares of distinct URLs, chosen by hash.

    Attributes:
        latency_s: delay before every answer.
        error_rate: share of URLs answered 503 (transient).
        throttle_rate: share of URLs answered 429 with ``Retry-After: retry_after_s`` (transient).
        retry_after_s: the ``Retry-After`` value sent with 429 and 503.
        truncate_rate: share of URLs whose body is cut short of its ``Content-Length`` (transient).
        drip_rate: share of URLs whose body is sent slowly, over ``drip_s`` seconds (transient).
        drip_s: how long a dripped body takes.
        html_rate: share of URLs answered 200 with an HTML page (permanent).
        not_found_rate: share of URLs answered 404 (permanent).
        fault_attempts: how many requests of a URL a transient fault hits before it succeeds.
        seed: changes which URLs are hit.

    Example:
        >>> HostFaults(error_rate=0.05, fault_attempts=2).fault_attempts
        2
    """

    latency_s: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: float = 1.0
    truncate_rate: float = 0.0
    drip_rate: float = 0.0
    drip_s: float = 1.0
    html_rate: float = 0.0
    not_found_rate: float = 0.0
    fault_attempts: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (
            self.error_rate,
            self.throttle_rate,
            self.truncate_rate,
            self.drip_rate,
            self.html_rate,
            self.not_found_rate,
        )
        if any(r < 0 for r in rates) or sum(rates) > 1.0:
            raise ConfigError(
                f"HostFaults rates must be >= 0 and sum to at most 1, got {rates}; lower them."
            )
        if self.latency_s < 0 or self.retry_after_s < 0 or self.drip_s < 0:
            raise ConfigError("HostFaults latency_s, retry_after_s and drip_s must be >= 0.")
        if self.fault_attempts < 0:
            raise ConfigError("HostFaults.fault_attempts must be >= 0.")

    def fault_for(self, path_qs: str) -> str | None:
        """The fault a host with these settings injects for ``path_qs`` (path + query), if any.

        One of ``"error"``, ``"throttle"``, ``"truncate"``, ``"drip"`` (transient), ``"html"``,
        ``"not_found"`` (permanent), or None. Lets tests predict every URL's fate.

        Example:
            >>> HostFaults(html_rate=1.0).fault_for("/media/1/0.jpg")
            'html'
            >>> HostFaults().fault_for("/media/1/0.jpg") is None
            True
        """
        return _fault_for(self, path_qs)


@dataclass(slots=True)
class HostStats:
    """What one media host observed since start (or the last :meth:`MediaHosts.reset_stats`).

    Attributes:
        requests: requests received.
        max_in_flight: the most requests it was handling at the same time.
        status_counts: answers by HTTP status.
        early_retries: requests for a URL that came before the ``Retry-After`` it was given.
        bytes_sent: body bytes sent.
        in_flight: requests being handled right now.

    Example:
        >>> HostStats().requests
        0
    """

    requests: int = 0
    max_in_flight: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    early_retries: int = 0
    bytes_sent: int = 0
    in_flight: int = 0

    def copy(self) -> HostStats:
        """A snapshot that later requests do not change."""
        return replace(self, status_counts=dict(self.status_counts))


# --- images -----------------------------------------------------------------------------------


def _digest(text: str, salt: str = "") -> bytes:
    return hashlib.blake2b(
        f"{salt}|{text}".encode("utf-8", "surrogatepass"), digest_size=16
    ).digest()


def _unit(digest: bytes, offset: int = 0) -> float:
    return int.from_bytes(digest[offset : offset + 4], "big") / 2**32


class _Renderer:
    """Renders the pixel variants once and stamps each URL's hash into the bytes (LRU cache)."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def variant(self, fmt: str, index: int) -> bytes:
        key = (fmt, index)
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                self._cache.move_to_end(key)
                return body
        body = _render_variant(fmt, index)
        with self._lock:
            self._cache[key] = body
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return body

    def image(self, path: str, *, distinct: bool = True) -> tuple[bytes, str]:
        digest = _digest(path)
        fmt = "png" if _unit(digest, 0) < _PNG_SHARE else "jpeg"
        if not distinct:  # one of the cached variants, stamped with the path's hash
            index = int.from_bytes(digest[4:8], "big") % _VARIANTS
            return _stamp(self.variant(fmt, index), fmt, digest.hex().encode()), f"image/{fmt}"
        key = ("path:" + path, 0)
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                self._cache.move_to_end(key)
        if body is None:
            body = _render_photo(fmt, digest)
            with self._lock:
                self._cache[key] = body
                if len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return _stamp(body, fmt, digest.hex().encode()), f"image/{fmt}"


def _render_variant(fmt: str, index: int) -> bytes:
    from PIL import Image, ImageDraw

    digest = _digest(str(index), "variant")
    width = _MIN_SIDE + int(_unit(digest, 0) * (_MAX_SIDE - _MIN_SIDE + 1))
    height = _MIN_SIDE + int(_unit(digest, 4) * (_MAX_SIDE - _MIN_SIDE + 1))
    base = tuple(digest[8:11])
    image = Image.new("RGB", (width, height), base)
    draw = ImageDraw.Draw(image)
    accent = tuple(255 - c for c in base)
    draw.rectangle((width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=accent)
    draw.ellipse((0, 0, width // 3, height // 3), fill=tuple(digest[11:14]))
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", compress_level=1)
    else:
        image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _render_photo(fmt: str, digest: bytes) -> bytes:
    """A photo-like image of its own: a smooth field of random colours (a few cells a side,
    from ``digest``) with a little noise, at a size taken from ``digest``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(int.from_bytes(digest, "big"))
    width = _MIN_SIDE + int(_unit(digest, 8) * (_MAX_SIDE - _MIN_SIDE + 1))
    height = _MIN_SIDE + int(_unit(digest, 12) * (_MAX_SIDE - _MIN_SIDE + 1))
    cells = rng.integers(0, 256, size=(int(rng.integers(4, 9)), int(rng.integers(4, 9)), 3))
    image = Image.fromarray(cells.astype("uint8"), "RGB").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", compress_level=1)
    else:
        image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def photo_copy(kind: str, amount: int, key: str) -> tuple[bytes, str]:
    """The bytes of photo ``key`` served under ``/copy/<key>`` (``kind`` ``"copy"``), resized
    to ``amount`` percent (``"resized"``) or re-encoded at JPEG quality ``amount``
    (``"reencoded"``). Deterministic: tests generate the same copies.

    Example:
        >>> original, _ = photo_copy("copy", 0, "k1")
        >>> original == photo_copy("copy", 0, "k1")[0], photo_copy("resized", 50, "k1")[1]
        (True, 'image/jpeg')
    """
    from PIL import Image

    body, mime = _RENDERER.image(f"/photo/{key}")
    if kind == "copy":
        return body, mime
    with Image.open(io.BytesIO(body)) as image:
        image = image.convert("RGB")
        quality = 90
        if kind == "resized":
            scale = max(1, min(amount, 400)) / 100
            size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        else:
            quality = max(1, min(amount, 95))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality)
    return out.getvalue(), "image/jpeg"


def placeholder_image() -> bytes:
    """The one "image not available" picture ``/placeholder/...`` serves (a grey card with a
    dark frame and a cross, as publishers serve for a missing photo).

    Example:
        >>> placeholder_image()[:2]
        b'\xff\xd8'
    """
    global _PLACEHOLDER
    if _PLACEHOLDER is None:
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (240, 180), (200, 200, 200))
        draw = ImageDraw.Draw(image)
        draw.rectangle((10, 10, 229, 169), outline=(60, 60, 60), width=6)
        draw.line((10, 10, 229, 169), fill=(90, 90, 90), width=5)
        draw.line((10, 169, 229, 10), fill=(90, 90, 90), width=5)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        _PLACEHOLDER = out.getvalue()
    return _PLACEHOLDER


_PLACEHOLDER: bytes | None = None


def _stamp(body: bytes, fmt: str, text: bytes) -> bytes:
    """Insert ``text`` as a JPEG COM segment / PNG tEXt chunk, keeping the image valid."""
    if fmt == "png":
        chunk = b"tEXt" + b"url\x00" + text
        crc = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
        end = len(body) - 12  # the IEND chunk
        return body[:end] + struct.pack(">I", len(chunk) - 4) + chunk + crc + body[end:]
    return body[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + body[2:]


def render_image(path: str) -> tuple[bytes, str]:
    """The bytes and content type a media host serves for ``path`` (deterministic).

    Example:
        >>> body, mime = render_image("/media/1/0.jpg")
        >>> body == render_image("/media/1/0.jpg")[0], mime in ("image/jpeg", "image/png")
        (True, True)
    """
    return _RENDERER.image(path)


_RENDERER = _Renderer()


def _big_jpeg_parts(nbytes: int) -> tuple[bytes, int, bytes]:
    """A JPEG of exactly ``nbytes``: (SOI, padding bytes to emit as COM segments, the rest)."""
    small = _RENDERER.variant("jpeg", 0)
    padding = max(0, nbytes - len(small))
    return small[:2], padding, small[2:]


def _com_segments(padding: int) -> list[int]:
    """Payload sizes of COM segments (4 bytes overhead each) that add exactly ``padding`` bytes."""
    sizes = []
    while padding >= 4:  # fewer than 4 bytes cannot be a segment; the body is that much shorter
        take = min(padding, 65535 + 2)  # marker (2) + length (2) + payload (<= 65533)
        if padding - take in (1, 2, 3):  # leave at least a whole empty segment for the rest
            take -= 4
        sizes.append(take - 4)
        padding -= take
    return sizes


# --- the servers ------------------------------------------------------------------------------


@dataclass(slots=True)
class _HostState:
    index: int
    faults: HostFaults
    key: str = ""
    stats: HostStats = field(default_factory=HostStats)
    attempts: dict[str, int] = field(default_factory=dict)  # faulted URLs only
    not_before: dict[str, float] = field(default_factory=dict)  # URL -> when a retry is allowed
    lock: threading.Lock = field(default_factory=threading.Lock)


_TRANSIENT = ("error", "throttle", "truncate", "drip")


def _fault_for(faults: HostFaults, url: str) -> str | None:
    u = _unit(_digest(url, f"fault{faults.seed}"))
    for name, rate in (
        ("error", faults.error_rate),
        ("throttle", faults.throttle_rate),
        ("truncate", faults.truncate_rate),
        ("drip", faults.drip_rate),
        ("html", faults.html_rate),
        ("not_found", faults.not_found_rate),
    ):
        if u < rate:
            return name
        u -= rate
    return None


_HTML = b"<!DOCTYPE html><html><head><title>Not an image</title></head><body>Login</body></html>"


class MediaHosts:
    """``n_hosts`` image hosts on ``127.0.0.1`` .. ``127.0.0.N``, served from a background thread.

    Args:
        n_hosts: how many hosts.
        faults: one :class:`HostFaults` for every host, or ``{host_index: HostFaults}`` for some
            (0-based; the others have none).
        distinct_pixels: True (default): every path its own picture (about half a millisecond
            to render one, cached); False: the earlier, cheaper pictures, one of 512 cached
            pixel variants a format (the bytes still differ per path), for benchmarks that must not
            change what the hosts cost; content hashing then sees look-alikes.

    Example:
        >>> with MediaHosts(n_hosts=1, faults={0: HostFaults(latency_s=0.01)}) as hosts:
        ...     hosts.base_urls[0].startswith("http://127.0.0.1:")
        True
    """

    def __init__(
        self,
        n_hosts: int = 2,
        faults: HostFaults | Mapping[int, HostFaults] | None = None,
        *,
        distinct_pixels: bool = True,
    ) -> None:
        if not 1 <= n_hosts <= 250:
            raise ConfigError(f"MediaHosts needs 1..250 hosts, got n_hosts={n_hosts}.")
        if isinstance(faults, HostFaults):
            per_host = dict.fromkeys(range(n_hosts), faults)
        else:
            per_host = dict(faults or {})
            unknown = [i for i in per_host if not 0 <= i < n_hosts]
            if unknown:
                raise ConfigError(
                    f"faults given for host indices {unknown}, but hosts are 0..{n_hosts - 1}."
                )
        self._states = [_HostState(i, per_host.get(i, HostFaults())) for i in range(n_hosts)]
        self._server = BackgroundLoop("gbif-dl-mediahosts")
        self._runners: list[web.AppRunner] = []
        self._base_urls: list[str] = []
        self._static: dict[str, tuple[bytes, str, int]] = {}
        self._total_lock = threading.Lock()
        self._total_in_flight = 0
        self._total_max_in_flight = 0
        self._log: list[str] = []  # every request's URL, in the order they arrived
        self._distinct = distinct_pixels

    # lifecycle --------------------------------------------------------------------------------

    def start(self) -> MediaHosts:
        """Start the servers (idempotent); returns ``self``."""
        self._server.start(self._start_all, self._stop_all)
        return self

    def close(self) -> None:
        """Stop the servers and the background thread."""
        self._server.stop()

    def __enter__(self) -> MediaHosts:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _start_all(self) -> None:
        for state in self._states:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._make_handler(state))
            # short shutdown: closing must not wait for slow (latency, drip) handlers
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            host = f"127.0.0.{state.index + 1}"
            port = await serve_on_loopback(runner, host)
            self._runners.append(runner)
            state.key = f"{host}:{port}"
            self._base_urls.append(f"http://{host}:{port}")

    async def _stop_all(self) -> None:
        for runner in self._runners:
            await stop_serving(runner)
        self._runners.clear()

    # observability ----------------------------------------------------------------------------

    @property
    def base_urls(self) -> list[str]:
        """``["http://127.0.0.1:PORT", "http://127.0.0.2:PORT", ...]`` (after start)."""
        return list(self._base_urls)

    @property
    def hosts(self) -> list[str]:
        """``["127.0.0.1:PORT", ...]``: the keys of :meth:`stats`."""
        return [s.key for s in self._states]

    @property
    def max_in_flight(self) -> int:
        """The most requests all hosts together were handling at the same time."""
        with self._total_lock:
            return self._total_max_in_flight

    def serve(
        self, path: str, body: bytes, content_type: str = "image/jpeg", status: int = 200
    ) -> None:
        """Serve exactly ``body`` at ``path`` on every host (e.g. a JPEG with an EXIF tag),
        with ``status`` (a 404 for a path that must not exist).

        Latency applies; other faults do not.

        Example:
            >>> with MediaHosts(n_hosts=1) as hosts:
            ...     hosts.serve("/fixed.jpg", b"\\xff\\xd8\\xff...")
        """
        if not path.startswith("/"):
            raise ConfigError(f"serve() needs a path starting with '/', got {path!r}.")
        self._static[path] = (bytes(body), content_type, status)

    def stats(self) -> dict[str, HostStats]:
        """A snapshot of every host's :class:`HostStats`, keyed ``"127.0.0.2:PORT"``."""
        out = {}
        for state in self._states:
            with state.lock:
                out[state.key] = state.stats.copy()
        return out

    def request_log(self) -> list[str]:
        """The URL of every request received since start (or the last :meth:`reset_stats`), in
        the order they arrived (``"http://127.0.0.2:PORT/media/1/0.jpg"``, ...).

        Example:
            >>> import urllib.request
            >>> with MediaHosts(n_hosts=1) as hosts:
            ...     _ = urllib.request.urlopen(f"{hosts.base_urls[0]}/media/1/0.jpg").read()
            ...     hosts.request_log() == [f"{hosts.base_urls[0]}/media/1/0.jpg"]
            True
        """
        with self._total_lock:
            return list(self._log)

    def reset_stats(self) -> None:
        """Zero every counter and forget which faulted URLs were already requested."""
        for state in self._states:
            with state.lock:
                in_flight = state.stats.in_flight
                state.stats = HostStats(in_flight=in_flight, max_in_flight=in_flight)
                state.attempts.clear()
                state.not_before.clear()
        with self._total_lock:
            self._total_max_in_flight = self._total_in_flight
            self._log.clear()

    # the handler ------------------------------------------------------------------------------

    def _make_handler(self, state: _HostState) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            url = request.path_qs
            now = time.monotonic()
            with state.lock:
                stats = state.stats
                stats.requests += 1
                stats.in_flight += 1
                stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
                allowed = state.not_before.get(url)
                if allowed is not None and now < allowed:
                    stats.early_retries += 1
            with self._total_lock:
                self._total_in_flight += 1
                self._total_max_in_flight = max(self._total_max_in_flight, self._total_in_flight)
                self._log.append(f"http://{state.key}{url}")
            status = 0
            sent = 0
            try:
                if state.faults.latency_s > 0:
                    await asyncio.sleep(state.faults.latency_s)
                response, sent = await self._respond(state, request, url)
                status = response.status
                return response
            finally:
                with self._total_lock:
                    self._total_in_flight -= 1
                with state.lock:
                    stats.in_flight -= 1
                    if status:
                        stats.status_counts[status] = stats.status_counts.get(status, 0) + 1
                    stats.bytes_sent += sent

        return handle

    def _count_attempt(self, state: _HostState, url: str) -> int:
        with state.lock:
            attempt = state.attempts.get(url, 0) + 1
            state.attempts[url] = attempt
        return attempt

    def _throttle(self, state: _HostState, url: str, seconds: float) -> web.Response:
        with state.lock:
            state.not_before[url] = time.monotonic() + seconds
        return web.Response(
            status=429, text="Too Many Requests", headers={"Retry-After": _seconds(seconds)}
        )

    async def _respond(
        self, state: _HostState, request: web.Request, url: str
    ) -> tuple[web.StreamResponse, int]:
        faults = state.faults
        static = self._static.get(request.path)
        if static is not None:
            body, content_type, code = static
            return web.Response(body=body, content_type=content_type, status=code), len(body)
        parts = request.path.strip("/").split("/")
        head = parts[0]
        if head == "html":
            return web.Response(body=_HTML, content_type="text/html"), len(_HTML)
        if head == "status" and len(parts) > 1 and parts[1].isdigit():
            code = int(parts[1])
            headers = {"Retry-After": _seconds(faults.retry_after_s)} if code in (429, 503) else {}
            if code == 429:
                with state.lock:
                    state.not_before[url] = time.monotonic() + faults.retry_after_s
            return web.Response(status=code, text=f"status {code}", headers=headers), 0
        if head == "redirect":
            target = request.query.get("to", "")
            return web.Response(status=302, headers={"Location": target}), 0
        if head == "big" and len(parts) > 1 and parts[1].isdigit():
            return await self._send_big(request, min(int(parts[1]), _MAX_BIG))
        if head in ("copy", "resized", "reencoded", "placeholder"):
            body, mime = _copy_for(parts)
            return web.Response(body=body, content_type=mime), len(body)
        if head == "throttle" and len(parts) > 1 and self._count_attempt(state, url) == 1:
            return self._throttle(state, url, _float(parts[1], faults.retry_after_s)), 0
        fault = "truncate" if head == "truncate" else _fault_for(faults, url)
        if fault == "html":
            return web.Response(body=_HTML, content_type="text/html"), len(_HTML)
        if fault == "not_found":
            return web.Response(status=404, text="Not Found"), 0
        if fault in _TRANSIENT and self._count_attempt(state, url) > faults.fault_attempts:
            fault = None
        if fault == "error":
            headers = {"Retry-After": _seconds(faults.retry_after_s)}
            return web.Response(status=503, text="Service Unavailable", headers=headers), 0
        if fault == "throttle":
            return self._throttle(state, url, faults.retry_after_s), 0
        body, mime = _RENDERER.image(request.path, distinct=self._distinct)
        if fault == "truncate":
            return await self._send_truncated(request, body, mime)
        if fault == "drip":
            return await self._send_drip(request, body, mime, faults.drip_s)
        return web.Response(body=body, content_type=mime), len(body)

    @staticmethod
    async def _send_truncated(
        request: web.Request, body: bytes, mime: str
    ) -> tuple[web.StreamResponse, int]:
        response = web.StreamResponse(headers={"Content-Type": mime})
        response.content_length = len(body)
        await response.prepare(request)
        part = body[: len(body) // 2]
        await response.write(part)
        transport = request.transport
        if transport is not None:
            transport.close()  # the client sees the connection end before Content-Length
        return response, len(part)

    @staticmethod
    async def _send_drip(
        request: web.Request, body: bytes, mime: str, seconds: float
    ) -> tuple[web.StreamResponse, int]:
        response = web.StreamResponse(headers={"Content-Type": mime})
        response.content_length = len(body)
        await response.prepare(request)
        steps = 10
        chunk = max(1, -(-len(body) // steps))
        for start in range(0, len(body), chunk):
            await response.write(body[start : start + chunk])
            await asyncio.sleep(seconds / steps)
        await response.write_eof()
        return response, len(body)

    @staticmethod
    async def _send_big(request: web.Request, nbytes: int) -> tuple[web.StreamResponse, int]:
        soi, padding, rest = _big_jpeg_parts(nbytes)
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(soi) + padding + len(rest)
        await response.prepare(request)
        await response.write(soi)
        full = b"\xff\xfe" + struct.pack(">H", 65535) + bytes(65533)
        for size in _com_segments(padding):
            if size == 65533:
                await response.write(full)
            else:
                await response.write(b"\xff\xfe" + struct.pack(">H", size + 2) + bytes(size))
        await response.write(rest)
        await response.write_eof()
        return response, response.content_length


def _copy_for(parts: list[str]) -> tuple[bytes, str]:
    """The body of a ``/copy``, ``/resized``, ``/reencoded`` or ``/placeholder`` path."""
    head = parts[0]
    if head == "placeholder":
        return placeholder_image(), "image/jpeg"
    if head == "copy":
        return photo_copy("copy", 0, parts[1] if len(parts) > 1 else "")
    amount = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 50
    return photo_copy(head, amount, parts[2] if len(parts) > 2 else "")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _float(text: str, default: float) -> float:
    try:
        value = float(text)
    except ValueError:
        return default
    return value if value >= 0 else default

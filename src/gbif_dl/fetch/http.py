"""One HTTP attempt for one image: the only module that catches aiohttp's exceptions.

:func:`fetch_once` makes a single attempt (following redirects by hand, each hop checked to be
http(s)), streams the body with a size cap, sniffs its type from the first bytes, and returns an
:class:`Attempt`: either the body, or a typed :class:`~gbif_dl.fetch.result.Reason` with whether
trying again could help and how long the server asked to wait. It never raises for a network,
protocol or HTTP problem; retry policy and scheduling live in :mod:`gbif_dl.fetch.engine`.

Example:
    >>> from gbif_dl._aio import run_sync
    >>> async def main(url: str) -> Attempt:
    ...     async with aiohttp.ClientSession() as session:
    ...         return await fetch_once(session, url, timeout=aiohttp.ClientTimeout(total=5))
    >>> run_sync(main("file:///etc/passwd")).reason
    <Reason.UNSAFE_URL: 'unsafe_url'>
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from typing import IO

import aiohttp
from yarl import URL

from gbif_dl.fetch.guard import AddressGuard, BlockedAddressError
from gbif_dl.fetch.images import SNIFF_BYTES, ImageType, sniff_image
from gbif_dl.fetch.result import Reason
from gbif_dl.fetch.retry import RETRYABLE_STATUSES, parse_retry_after
from gbif_dl.records import is_http_url

__all__ = ["READ_BUFSIZE", "REDIRECT_STATUSES", "WHOLE_READ_BYTES", "Attempt", "fetch_once"]

#: Statuses followed as redirects (by hand, so that every hop is checked).
REDIRECT_STATUSES: frozenset[int] = frozenset({301, 302, 303, 307, 308})

#: The HTTP client's read buffer (aiohttp's ``read_bufsize``; it stops reading a connection
#: past twice this many bytes not yet taken). A large body is taken in whatever pieces have
#: arrived (``iter_any``), not cut into 64 kB chunks from aiohttp's default 64 kB buffer: each
#: cut copied the rest of the buffer. Downloading 800 kB photos, that took 4 to 15% less CPU
#: a photo and gave 6 to 19% more photos/s (same-run A/Bs, 1,000 photos, 3 runs of 6 to 8
#: rounds, faster in 20 of 22 rounds). A body may go past ``max_bytes`` by one such piece
#: before it is refused.
READ_BUFSIZE = 2**20
#: A body announcing at most this many bytes (and no Content-Encoding) is read in one call
#: instead of chunk by chunk: the common small image costs less, and a non-image that small
#: costs little to read whole before it is refused.
WHOLE_READ_BYTES = 256 * 1024


@dataclass(slots=True, kw_only=True)
class Attempt:
    """The outcome of one request (redirects included).

    Attributes:
        body: the image bytes when the attempt succeeded (and they were kept in memory).
        spool: an anonymous temp file holding the image instead, for bodies larger than the
            ``spill_bytes`` of :func:`fetch_once`; :meth:`load` reads it (once).
        size: the body's length in bytes.
        image_type: the sniffed type of ``body``.
        reason: why it failed, when it did.
        retryable: whether another attempt may succeed (5xx, 429, timeouts, truncation, ...).
        retry_after: seconds the server asked to wait (``Retry-After``), if it did.
        status: the last HTTP status received.
        final_url: the URL of the last hop.
        detail: a short explanation of a failure.
    """

    body: bytes | None = None
    spool: IO[bytes] | None = None
    size: int = 0
    image_type: ImageType | None = None
    reason: Reason | None = None
    retryable: bool = False
    retry_after: float | None = None
    status: int | None = None
    final_url: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the attempt produced image bytes."""
        return self.body is not None or self.spool is not None

    def load(self) -> bytes | None:
        """The body, read from the spool (then closed) when it was spilled to disk.

        Example:
            >>> Attempt(body=b"abc", size=3).load()
            b'abc'
        """
        if self.body is None and self.spool is not None:
            self.spool.seek(0)
            self.body = self.spool.read()
            self.discard()
        return self.body

    def discard(self) -> None:
        """Close (and so delete) the spool, if any."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None


async def fetch_once(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout: aiohttp.ClientTimeout,
    max_bytes: int = 50 * 2**20,
    max_redirects: int = 5,
    proxy: str | None = None,
    guard: AddressGuard | None = None,
    spill_bytes: int | None = None,
) -> Attempt:
    """Fetch ``url`` once and classify the outcome; never raises for network or HTTP trouble.

    With a ``guard``, the URL and every redirect hop whose host is an IP literal are checked
    before the request, and host names by the guard's resolver (the session's connector, see
    :meth:`AddressGuard.resolver`); a refusal is ``Reason.BLOCKED_ADDRESS``, not retried.
    A body growing past ``spill_bytes`` goes on into an anonymous temp file (``Attempt.spool``)
    instead of memory.

    Example:
        >>> async def main(url: str) -> Attempt:
        ...     async with aiohttp.ClientSession() as session:
        ...         return await fetch_once(session, url, timeout=aiohttp.ClientTimeout(total=5))
        >>> from gbif_dl._aio import run_sync
        >>> run_sync(main("ftp://example.org/a.jpg")).reason.value
        'unsafe_url'
    """
    if not is_http_url(url):
        return Attempt(reason=Reason.UNSAFE_URL, detail=f"not an http(s) URL: {url[:200]!r}")
    current = url
    status: int | None = None
    try:
        for _hop in range(max_redirects + 1):
            if guard is not None:
                guard.check_url(current)
            async with session.get(
                current, allow_redirects=False, timeout=timeout, proxy=proxy
            ) as response:
                status = response.status
                if status in REDIRECT_STATUSES:
                    target = _redirect_target(response)
                    if target is None:
                        return Attempt(
                            reason=Reason.UNSAFE_URL,
                            status=status,
                            final_url=current,
                            detail=f"redirect to a non-http(s) URL: "
                            f"{response.headers.get('Location', '')[:200]!r}",
                        )
                    current = target
                    continue
                if not 200 <= status < 300:
                    return Attempt(
                        reason=Reason.HTTP_STATUS,
                        status=status,
                        final_url=current,
                        retryable=status in RETRYABLE_STATUSES,
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                        detail=f"HTTP {status} {response.reason or ''}".strip(),
                    )
                attempt = await _read_image(response, max_bytes, spill_bytes)
                attempt.status = status
                attempt.final_url = current
                return attempt
        return Attempt(
            reason=Reason.TOO_MANY_REDIRECTS,
            status=status,
            final_url=current,
            detail=f"more than {max_redirects} redirects",
        )
    except (asyncio.TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        return _failure(exc, status, current)


def _failure(exc: BaseException, status: int | None, url: str) -> Attempt:
    """The Attempt for an exception of one request: blocked, timeout, truncated, unsafe URL or
    a (retryable) network error."""
    blocked = _blocked_cause(exc)  # the guard, directly or wrapped by aiohttp's connector
    if blocked is not None:
        return Attempt(
            reason=Reason.BLOCKED_ADDRESS, status=status, final_url=url, detail=str(blocked)[:500]
        )
    if isinstance(exc, asyncio.TimeoutError):
        return Attempt(reason=Reason.TIMEOUT, status=status, retryable=True, detail="timed out")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Attempt(reason=Reason.TRUNCATED, status=status, retryable=True, detail=str(exc))
    if isinstance(exc, aiohttp.InvalidURL):
        return Attempt(reason=Reason.UNSAFE_URL, status=status, detail=f"invalid URL: {exc}")
    # other client errors; socket errors aiohttp did not wrap; bad header values
    return Attempt(
        reason=Reason.NETWORK,
        status=status,
        retryable=True,
        detail=f"{type(exc).__name__}: {exc}"[:500],
    )


def _blocked_cause(exc: BaseException) -> BlockedAddressError | None:
    seen: BaseException | None = exc
    for _ in range(8):  # the cause chain aiohttp builds is short
        if seen is None:
            return None
        if isinstance(seen, BlockedAddressError):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return None


def _redirect_target(response: aiohttp.ClientResponse) -> str | None:
    location = response.headers.get("Location")
    if not location:
        return None
    try:
        target = str(response.url.join(URL(location)))
    except (ValueError, TypeError):
        return None
    return target if is_http_url(target) else None


class _Body:
    """The bytes of a body being received: in memory, then in a temp file past ``spill``."""

    def __init__(self, spill: int | None) -> None:
        self.spill = spill
        self.chunks: list[bytes] = []
        self.head = b""
        self.size = 0
        self.spool: IO[bytes] | None = None

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(self.head) < 64:
            self.head = (self.head + chunk)[:64]
        if self.spool is not None:
            self.spool.write(chunk)
            return
        self.chunks.append(chunk)
        if self.spill is not None and self.size > self.spill:
            self.spool = tempfile.TemporaryFile(prefix="gbif-dl-body-")  # noqa: SIM115 (see discard)
            for kept in self.chunks:
                self.spool.write(kept)
            self.chunks = []

    def attempt(self, image_type: ImageType) -> Attempt:
        if self.spool is not None:
            self.spool.flush()
            return Attempt(spool=self.spool, size=self.size, image_type=image_type)
        return Attempt(body=b"".join(self.chunks), size=self.size, image_type=image_type)

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.close()


async def _read_image(
    response: aiohttp.ClientResponse, max_bytes: int, spill_bytes: int | None = None
) -> Attempt:
    """Stream the body: size cap, type sniffing on the first bytes, truncation check; past
    ``spill_bytes`` the bytes go to a temp file."""
    declared = response.content_length
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    encoded = encoding not in ("", "identity")  # then Content-Length counts compressed bytes
    if declared is not None and declared > max_bytes:
        response.close()
        return Attempt(
            reason=Reason.TOO_LARGE,
            detail=f"Content-Length {declared} > max_bytes {max_bytes}",
        )
    if (
        declared is not None
        and not encoded
        and declared <= min(WHOLE_READ_BYTES, max_bytes, spill_bytes or max_bytes)
    ):
        return await _read_whole(response, declared)
    body = _Body(spill_bytes)
    try:
        return await _receive(response, body, max_bytes, declared, encoded)
    except BaseException:
        body.discard()
        raise


async def _receive(
    response: aiohttp.ClientResponse,
    body: _Body,
    max_bytes: int,
    declared: int | None,
    encoded: bool,
) -> Attempt:
    image_type: ImageType | None = None
    async for chunk in response.content.iter_any():
        body.add(chunk)
        if body.size > max_bytes:
            response.close()
            body.discard()
            return Attempt(reason=Reason.TOO_LARGE, detail=f"body exceeds max_bytes {max_bytes}")
        if image_type is None and body.size >= SNIFF_BYTES:
            image_type = sniff_image(body.head[:SNIFF_BYTES])
            if image_type is None:
                response.close()
                body.discard()
                return Attempt(reason=Reason.NOT_IMAGE, detail=_describe(response, body.head))
    if declared is not None and not encoded and body.size < declared:
        body.discard()
        return Attempt(
            reason=Reason.TRUNCATED,
            retryable=True,
            detail=f"got {body.size} of {declared} bytes",
        )
    if image_type is None:
        image_type = sniff_image(body.head)
        if image_type is None:
            body.discard()
            return Attempt(reason=Reason.NOT_IMAGE, detail=_describe(response, body.head))
    return body.attempt(image_type)


async def _read_whole(response: aiohttp.ClientResponse, declared: int) -> Attempt:
    """A small body announced by its Content-Length, read in one call, checked as
    :func:`_receive` checks a streamed one (complete, an image by its first bytes)."""
    try:
        data = await response.read()
    except aiohttp.ClientPayloadError as exc:
        return Attempt(
            reason=Reason.TRUNCATED,
            retryable=True,
            detail=f"the body ended before its {declared} bytes: {exc}"[:500],
        )
    if len(data) < declared:
        return Attempt(
            reason=Reason.TRUNCATED, retryable=True, detail=f"got {len(data)} of {declared} bytes"
        )
    image_type = sniff_image(data[:SNIFF_BYTES])
    if image_type is None:
        return Attempt(reason=Reason.NOT_IMAGE, detail=_describe(response, data[:64]))
    return Attempt(body=data, size=len(data), image_type=image_type)


def _describe(response: aiohttp.ClientResponse, head: bytes) -> str:
    return f"Content-Type {response.headers.get('Content-Type', '?')!r}, starts with {head[:32]!r}"

"""GBIF occurrence downloads: request, wait, metadata, and one resumable file fetch.

An occurrence download is prepared by GBIF (minutes to hours) and then fetched as one large zip.
:func:`fetch_file` is the one resumable fetch of the package: any http(s) URL to a local path,
resuming ``<dest>.part`` with ``Range``, checking the size, retrying cut transfers, 429/5xx and
connection errors with a ``Retry-After`` as a floor. The lifecycle functions take an open
:class:`~gbif_dl.gbif.client.GbifClient`, whose methods of the same names call them.

Example:
    >>> async def archive(gbif: GbifClient, key: str) -> Path:
    ...     meta = await wait_for_download(gbif, key)
    ...     return await fetch_download(gbif, key, Path(f"{key}.zip"), expected_size=meta["size"])
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from gbif_dl._version import USER_AGENT
from gbif_dl.errors import (
    ConfigError,
    DownloadNotReadyError,
    GbifApiError,
    TooManyDownloadsError,
)
from gbif_dl.fetch.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from gbif_dl.gbif.params import is_download_key, parse_download_id
from gbif_dl.progress import format_bytes

if TYPE_CHECKING:
    from gbif_dl.gbif.client import GbifClient

__all__ = [
    "DEFAULT_FILE_RETRY",
    "DOWNLOAD_FORMATS",
    "FileTooLargeError",
    "Progress",
    "download_metadata",
    "fetch_download",
    "fetch_file",
    "request_download",
    "wait_for_download",
]

logger = logging.getLogger(__name__)

#: Download formats GBIF can produce; only DWCA carries media URLs (multimedia.txt).
DOWNLOAD_FORMATS: frozenset[str] = frozenset(
    {
        "DWCA",
        "SIMPLE_CSV",
        "SIMPLE_AVRO",
        "SIMPLE_WITH_VERBATIM_AVRO",
        "SPECIES_LIST",
        "MAP_OF_LIFE",
        "BIONOMIA",
        "SIMPLE_PARQUET",
        "SQL_TSV_ZIP",
        "FASTA_ARCHIVE",
    }
)
#: How a file fetch retries: a large file is worth waiting for.
DEFAULT_FILE_RETRY = RetryPolicy(retries=5, backoff_s=1.0, max_backoff_s=60.0)

#: ``progress(done_bytes, total_bytes_or_None)``, called as bytes arrive.
Progress = Callable[[int, int | None], None]

_FINISHED_BADLY = frozenset({"KILLED", "CANCELLED", "FAILED", "FILE_ERASED"})
_CHUNK = 256 * 1024
_MAX_ERROR_TEXT = 2000
_TOO_MANY_DOWNLOADS = (
    "too many simultaneous downloads; GBIF allows about 3 per user (1 when its queue is long). "
    "Wait for one of your running downloads to finish (see https://www.gbif.org/user/download) "
    "or reuse an existing download by its key or DOI"
)


# --- one resumable file fetch --------------------------------------------------------------------


class FileTooLargeError(GbifApiError):
    """A fetched file grew past the ``max_bytes`` cap; the partial file stops at the cap.

    Attributes:
        max_bytes: the cap.
        part: the partial file (kept: a fetch with a larger cap resumes it).
    """

    def __init__(self, url: str, max_bytes: int, part: Path) -> None:
        super().__init__(
            f"{url} is larger than the cap of {max_bytes} bytes ({format_bytes(max_bytes)}); "
            f"the transfer stopped there and {part} is kept. If the file is genuine, fetch "
            "again with a larger max_bytes (it resumes)",
            url=url,
            status=200,
        )
        self.max_bytes = max_bytes
        self.part = part

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.url, self.max_bytes, self.part))


@dataclass
class _Outcome:
    """One attempt of a transfer: finished, or why not (and how long the server asked to wait)."""

    done: bool = False
    reason: str = ""
    status: int = 0
    retry_after: float | None = None
    restart: bool = False


class _Transfer:
    """Attempts of one file fetch into ``part``; see :func:`fetch_file`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        part: Path,
        expected_size: int | None,
        progress: Progress | None,
        max_bytes: int | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self.part = part
        self.expected_size = expected_size
        self.progress = progress
        self.max_bytes = max_bytes

    def offset(self) -> int:
        """Bytes already in the part file (a part larger than expected is dropped)."""
        offset = self.part.stat().st_size if self.part.exists() else 0
        if self.expected_size is not None and offset > self.expected_size:
            logger.warning("%s is larger than expected; starting again", self.part)
            self.part.unlink()
            offset = 0
        return offset

    async def attempt(self, offset: int) -> _Outcome:
        """One GET from ``offset``; raises for errors that another try cannot mend."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        try:
            async with self.session.get(self.url, headers=headers) as response:
                if response.status >= 400:
                    return await self._refused(response, offset)
                total = await self._stream(response, offset)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return _Outcome(reason=f"{type(exc).__name__}: {exc}".rstrip(": "))
        size = self.part.stat().st_size
        wanted = self.expected_size if self.expected_size is not None else total
        if wanted is None or size == wanted:
            if size == 0:
                raise GbifApiError(f"{self.url} answered an empty file", url=self.url, status=200)
            return _Outcome(done=True)
        if size > wanted:
            self.part.unlink()
            raise GbifApiError(
                f"{self.url}: got {size} bytes, expected {wanted}; the partial file was "
                "removed, try again",
                url=self.url,
                status=200,
            )
        return _Outcome(reason=f"transfer ended at {size} of {wanted} bytes")

    async def _refused(self, response: aiohttp.ClientResponse, offset: int) -> _Outcome:
        status = response.status
        if status == 416 and offset:
            logger.warning("server refused to resume %s; starting again", self.part)
            self.part.unlink()
            return _Outcome(reason="HTTP 416", restart=True)
        raw = await response.content.read(_MAX_ERROR_TEXT)
        said = " ".join(re.sub(r"<[^>]*>", " ", raw.decode("utf-8", "replace")).split())
        if status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return _Outcome(reason=f"HTTP {status}", status=status, retry_after=retry_after)
        raise GbifApiError(
            f"fetching {response.url} failed with HTTP {status}" + (f": {said}" if said else ""),
            url=str(response.url),
            status=status,
            body=said,
        )

    async def _stream(self, response: aiohttp.ClientResponse, offset: int) -> int | None:
        """Write the body to the part file (appending after a 206); the full size if known."""
        total: int | None = None
        length = response.content_length
        if response.status == 206 and offset:
            match = re.match(
                r"bytes\s+(\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "")
            )
            if match and int(match.group(1)) != offset:
                offset = 0  # an unexpected window: start over rather than corrupt the file
            if match and match.group(2) != "*":
                total = int(match.group(2))
            elif length is not None:
                total = offset + length
        else:
            if offset:
                logger.info("server ignored the Range request; fetching %s again", self.part.name)
            offset = 0
            total = length
        if self.max_bytes is not None and total is not None and total > self.max_bytes:
            raise FileTooLargeError(self.url, self.max_bytes, self.part)  # said before sent
        done = offset
        with self.part.open("ab" if offset else "wb") as out:
            if self.progress is not None:
                self.progress(done, total)
            async for chunk in response.content.iter_chunked(_CHUNK):
                done += len(chunk)
                self._check_bounds(out, chunk, done)
                out.write(chunk)
                if self.progress is not None:
                    self.progress(done, total)
        return total

    def _check_bounds(self, out: Any, chunk: bytes, done: int) -> None:
        """Refuse a body longer than announced (the part file is removed) or than the cap
        (the part file is filled up to the cap and kept)."""
        if self.expected_size is not None and done > self.expected_size:
            out.close()
            self.part.unlink()
            raise GbifApiError(
                f"{self.url}: got more than the bytes announced, expected {self.expected_size}; "
                "the body was refused as it arrived and the partial file removed, try again",
                url=self.url,
                status=200,
            )
        if self.max_bytes is not None and done > self.max_bytes:
            out.write(chunk[: len(chunk) - (done - self.max_bytes)])
            raise FileTooLargeError(self.url, self.max_bytes, self.part)


async def fetch_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    progress: Progress | None = None,
    retry: RetryPolicy = DEFAULT_FILE_RETRY,
    timeout_s: float = 60.0,
    user_agent: str = USER_AGENT,
    headers: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Fetch ``url`` to ``dest``, resuming a partial ``<dest>.part`` with ``Range``.

    Follows redirects, streams to ``<dest>.part`` (appending after a ``206``, starting over
    when the server ignores the range or answers ``416``), checks the size (``expected_size``,
    else the server's length) and renames atomically. Cut transfers, 429/5xx and connection
    errors are retried with ``retry`` (a ``Retry-After`` is a floor; any progress resets the
    budget); ``timeout_s`` bounds connecting and each read. ``progress(done, total_or_None)``
    is called as bytes arrive. Nothing is written before the server answers with success.
    A body longer than ``expected_size`` is refused as it arrives (the part file is removed);
    ``max_bytes`` caps the file whatever the server says (the part file stops at the cap and
    is kept, so a fetch with a larger cap resumes it).

    Raises:
        GbifApiError: an error status that is not retried (``status`` says which, e.g. 404 or
            410), a ``Retry-After`` above ``retry.max_retry_after_s``, an empty or oversized
            file, or a transfer that keeps failing (``status`` 0; the part file is kept and
            resumed next time).
        FileTooLargeError: the file is larger than ``max_bytes`` (announced or sent).

    Example:
        >>> async def get(url: str) -> Path:
        ...     return await fetch_file(url, Path("cache/archive.zip"), expected_size=1234)
    """
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"fetch_file needs an http(s) URL, got {url!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
    session_headers = {"User-Agent": user_agent, **(headers or {})}
    async with aiohttp.ClientSession(timeout=timeout, headers=session_headers) as session:
        transfer = _Transfer(session, url, part, expected_size, progress, max_bytes)
        failures = 0
        while True:
            offset = transfer.offset()
            if expected_size is not None and offset == expected_size and offset > 0:
                break
            if max_bytes is not None and offset > max_bytes:
                raise FileTooLargeError(url, max_bytes, part)
            outcome = await transfer.attempt(offset)
            if outcome.done:
                break
            if outcome.restart:
                continue
            now = part.stat().st_size if part.exists() else 0
            failures = 0 if now > offset else failures + 1  # progress resets the budget
            await _pause(url, part, now, outcome, retry, failures)
    os.replace(part, dest)
    logger.info("%s saved to %s", url, dest)
    return dest


async def _pause(
    url: str, part: Path, now: int, outcome: _Outcome, retry: RetryPolicy, failures: int
) -> None:
    """Wait before the next attempt, or raise when the retry budget is spent."""
    reason, retry_after = outcome.reason, outcome.retry_after
    if not retry.should_retry(failures):
        raise GbifApiError(
            f"fetching {url} keeps failing ({reason}); the partial file {part} is kept and will "
            "be resumed next time",
            url=url,
            status=0,
            body=reason,
        )
    if retry_after is not None and retry_after > retry.max_retry_after_s:
        raise GbifApiError(
            f"{url} asked to wait {retry_after:.0f} s (Retry-After), longer than the allowed "
            f"{retry.max_retry_after_s:.0f} s; try again later",
            url=url,
            status=outcome.status,
            body=reason,
        )
    delay = retry.delay(attempt=max(1, failures), retry_after=retry_after)
    logger.warning("fetching %s: %s; resuming at byte %d in %.1f s", url, reason, now, delay)
    await asyncio.sleep(delay)


# --- the download lifecycle ----------------------------------------------------------------------


def _not_ready(client: GbifClient, key: str, status: str, text: str) -> DownloadNotReadyError:
    url = f"{client.api_url}/occurrence/download/{key}"
    err = DownloadNotReadyError(text, url=url, status=200, body=text)
    err.status_name = status
    return err


async def download_metadata(client: GbifClient, key_or_doi: str) -> dict[str, Any]:
    """A download's metadata (``status``, ``key``, ``doi``, ``size``, ...), by key or DOI.

    The identifier is checked before it goes into the URL, and the answer before anyone uses
    it: its ``key`` must be a download key (it names files and URLs next), the one asked for
    when a key was given.

    Raises:
        ConfigError: ``key_or_doi`` is not a download key or a GBIF download DOI.
        GbifApiError: GBIF's answer is not metadata, or its key is missing or malformed.

    Example:
        >>> async def status(gbif: GbifClient) -> str:
        ...     meta = await download_metadata(gbif, "doi:10.15468/dl.hx3uzz")
        ...     return meta["status"]
    """
    kind, ident = parse_download_id(key_or_doi)
    url = f"{client.api_url}/occurrence/download/{ident}"
    data = await client.get_json(f"/occurrence/download/{ident}")  # a DOI keeps its slash
    if not isinstance(data, dict):
        raise GbifApiError(
            f"GBIF answered download {ident} with something that is not metadata",
            url=url,
            status=200,
        )
    key = data.get("key")
    if not isinstance(key, str) or not is_download_key(key) or (kind == "key" and key != ident):
        raise GbifApiError(
            f"GBIF answered download {ident} with the key {str(key)[:100]!r}, which is not "
            f"{'that' if kind == 'key' else 'a'} download key (like 0022697-200613084148143); "
            "refusing to use it for a file name or a URL. Check the API URL (api_url=) points "
            "at GBIF",
            url=url,
            status=200,
            body=str(key)[:_MAX_ERROR_TEXT],
        )
    return data


def _download_body(
    login: str, predicate: Mapping[str, Any], format: str, addresses: Sequence[str], notify: bool
) -> dict[str, Any]:
    fmt = str(format).upper()
    if fmt not in DOWNLOAD_FORMATS:
        raise ConfigError(
            f"unknown GBIF download format {format!r}; use one of "
            f"{', '.join(sorted(DOWNLOAD_FORMATS))} (only DWCA carries media URLs)"
        )
    if not isinstance(predicate, Mapping) or "type" not in predicate:
        raise ConfigError(
            "a download predicate is a mapping with a 'type', for example "
            "gbif_dl.gbif.params.to_predicate({'taxonKey': 212})"
        )
    return {
        "creator": login,
        "notificationAddresses": [addresses] if isinstance(addresses, str) else list(addresses),
        "sendNotification": bool(notify),
        "format": fmt,
        "predicate": dict(predicate),
    }


async def request_download(
    client: GbifClient,
    predicate: Mapping[str, Any],
    *,
    format: str = "DWCA",
    user: str | None = None,
    password: str | None = None,
    notification_addresses: Sequence[str] = (),
    send_notification: bool = False,
) -> str:
    """Ask GBIF to prepare an occurrence download; returns its key (preparation takes time).

    Credentials: ``user``/``password``, else the client's (``$GBIF_USER``/``$GBIF_PWD``). GBIF
    returns the key of an identical request made in the last 48 hours instead of a new one.

    Raises:
        ConfigError: no credentials, unknown format or malformed predicate.
        TooManyDownloadsError: GBIF refused (HTTP 420/429): too many running downloads.
        GbifApiError: other errors (401 names the credential variables).

    Example:
        >>> from gbif_dl.gbif.params import to_predicate
        >>> async def create(gbif: GbifClient) -> str:
        ...     return await request_download(gbif, to_predicate({"taxonKey": 212}))
    """
    login, auth_headers = client.credentials(user, password)
    body = _download_body(login, predicate, format, notification_addresses, send_notification)

    async def read(response: aiohttp.ClientResponse) -> str:
        # 201 with the bare key as text, although labelled application/json
        return (await response.text(encoding="utf-8", errors="replace")).strip().strip('"')

    url = f"{client.api_url}/occurrence/download/request"
    try:
        key = await client.request(
            "POST", url, read, json_body=body, headers=auth_headers, no_retry=frozenset({420, 429})
        )
    except GbifApiError as exc:
        if exc.status in (420, 429):
            raise TooManyDownloadsError(
                f"GBIF refused to create the download (HTTP {exc.status}): "
                f"{_TOO_MANY_DOWNLOADS}. GBIF said: {exc.message}",
                url=exc.url,
                status=exc.status,
                body=exc.message,
            ) from None
        raise
    if not is_download_key(key):
        raise GbifApiError(
            f"GBIF accepted the download request but answered {key[:200]!r}, not a key",
            url=url,
            status=201,
            body=key[:_MAX_ERROR_TEXT],
        )
    logger.info("GBIF download %s requested", key)
    return key


async def wait_for_download(
    client: GbifClient,
    key: str,
    *,
    poll_interval_s: float | None = None,
    max_interval_s: float | None = None,
    timeout_s: float | None = None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll a download until it SUCCEEDED and return its metadata (may take hours).

    The interval starts at ``poll_interval_s`` (default: the client's, 15 s) and grows by half
    each poll up to ``max_interval_s`` (default 300 s). ``on_status`` sees every answer.

    Raises:
        DownloadNotReadyError: the download was KILLED, CANCELLED, FAILED or FILE_ERASED, or
            ``timeout_s`` passed (``status_name`` tells which status it had).

    Example:
        >>> async def ready(gbif: GbifClient, key: str) -> int:
        ...     meta = await wait_for_download(gbif, key, timeout_s=6 * 3600)
        ...     return meta["size"]
    """
    interval = client.config.poll_interval_s if poll_interval_s is None else poll_interval_s
    ceiling = client.config.max_poll_interval_s if max_interval_s is None else max_interval_s
    if not interval > 0 or not ceiling > 0:
        raise ConfigError("poll intervals must be positive")
    started = time.monotonic()
    last = None
    while True:
        meta = await download_metadata(client, key)
        status = str(meta.get("status", "")).upper()
        if on_status is not None:
            on_status(meta)
        if status != last:
            logger.info("GBIF download %s is %s", key, status or "of unknown status")
            last = status
        if status == "SUCCEEDED":
            return meta
        if status in _FINISHED_BADLY:
            text = f"GBIF download {key} ended as {status}; request it again"
            raise _not_ready(client, key, status, text)
        waited = time.monotonic() - started
        if timeout_s is not None and waited + interval > timeout_s:
            text = (
                f"GBIF download {key} is still {status} after {waited:.0f} s; "
                "wait for it again later with its key"
            )
            raise _not_ready(client, key, status, text)
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, ceiling)


async def fetch_download(
    client: GbifClient,
    key: str,
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    progress: Progress | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Fetch a download's file to ``dest`` with :func:`fetch_file` and the client's settings.

    Follows GBIF's redirect to the file server and resumes a partial ``<dest>.part``; a body
    longer than ``expected_size`` or ``max_bytes`` is refused as it arrives.

    Raises:
        DownloadNotReadyError: the file was erased (HTTP 410).
        GbifApiError: unknown key (404), other errors, or repeated cut transfers.

    Example:
        >>> async def get(gbif: GbifClient, key: str) -> Path:
        ...     return await fetch_download(gbif, key, Path(f"{key}.zip"))
    """
    if not is_download_key(key):
        raise ConfigError(
            f"{key!r} is not a GBIF download key (like 0022697-200613084148143); "
            "resolve a DOI with download_metadata() first"
        )
    key = key.strip()
    config = client.config
    url = f"{client.api_url}/occurrence/download/request/{key}.zip"
    try:
        path = await fetch_file(
            url,
            dest,
            expected_size=expected_size,
            progress=progress,
            retry=config.retry,
            timeout_s=config.timeout_s,
            user_agent=config.user_agent,
            max_bytes=max_bytes,
        )
    except GbifApiError as exc:
        if exc.status == 410:
            text = f"the file of GBIF download {key} was erased: {exc}"
            raise _not_ready(client, key, "FILE_ERASED", text) from None
        if exc.status == 404:
            raise GbifApiError(
                f"GBIF has no download {key} ({exc}); check the key or identifier",
                url=exc.url,
                status=404,
                body=exc.message,
            ) from None
        raise
    logger.info("GBIF download %s saved to %s", key, path)
    return path

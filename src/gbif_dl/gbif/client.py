"""The asyncio GBIF REST client: the only code in gbif-dl that knows GBIF's URLs.

The base URL comes from the ``api_url=`` argument, else the ``GBIF_API_URL`` environment variable,
else ``https://api.gbif.org/v1``; so the same code runs against GBIF, GBIF's test environment or
the project's simulator (:mod:`gbif_dl.testing`).

Politeness: an identifying ``User-Agent``, a small bounded number of requests in flight, retries
of 429/5xx/connection errors with exponential backoff and jitter, and a ``Retry-After`` that is a
floor for *every* request of the client (GBIF throttles the client, not one URL). Other 4xx are
not retried. Every error becomes a :class:`~gbif_dl.errors.GbifApiError` with the URL, the status
and GBIF's own message.

Example:
    >>> import asyncio
    >>> async def main() -> int:
    ...     async with GbifClient() as gbif:
    ...         return await gbif.count({"taxonKey": 212, "mediaType": "StillImage"})
    >>> asyncio.run(main())  # doctest: +SKIP
    52816303
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from gbif_dl._version import USER_AGENT
from gbif_dl.errors import ConfigError, GbifApiError
from gbif_dl.fetch.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from gbif_dl.gbif import downloads
from gbif_dl.gbif.downloads import DOWNLOAD_FORMATS
from gbif_dl.gbif.params import canonical_name, facet_field, validate_query

__all__ = [
    "API_URL_ENV",
    "DEFAULT_API_CONCURRENCY",
    "DEFAULT_API_RETRY",
    "DEFAULT_API_URL",
    "DOWNLOAD_FORMATS",
    "MAX_API_CONCURRENCY",
    "USER_AGENT",
    "ClientConfig",
    "GbifClient",
    "resolve_api_url",
]

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.gbif.org/v1"
#: The path of GBIF's API below a server root.
API_VERSION_PATH = "/v1"
API_URL_ENV = "GBIF_API_URL"
USER_ENV = "GBIF_USER"
PASSWORD_ENV = "GBIF_PWD"

#: API requests in flight at once by default; GBIF asks for restraint.
DEFAULT_API_CONCURRENCY = 2
#: The most API requests in flight this client allows.
MAX_API_CONCURRENCY = 8
#: API calls are cheap to wait for: more retries and longer backoff than for images.
DEFAULT_API_RETRY = RetryPolicy(retries=5, backoff_s=1.0, max_backoff_s=60.0)

#: GBIF's maximum page size for occurrence search (larger values are clamped by GBIF).
MAX_PAGE_SIZE = 300
#: GBIF refuses ``offset + limit`` beyond this.
MAX_SEARCH_OFFSET = 100_000
#: GBIF refuses ``facetOffset + facetLimit`` beyond this.
MAX_FACET_ELEMENTS = 1_200_000

_MAX_ERROR_TEXT = 2000
# Paths (below the base URL) every GBIF API serves: a 404 there means it is not a GBIF API.
_ALWAYS_THERE = frozenset({"/occurrence/search", "/species/match", "/occurrence/download/request"})

T = TypeVar("T")


def resolve_api_url(api_url: str | None = None) -> str:
    """The GBIF API base URL: ``api_url``, else ``$GBIF_API_URL``, else the public API.

    Either the API base (``https://api.gbif.org/v1``) or a server root (``http://host:port``,
    to which ``/v1`` is added) is accepted.

    Raises:
        ConfigError: the URL is not an absolute http(s) URL.

    Example:
        >>> resolve_api_url("http://127.0.0.1:8080/v1/")
        'http://127.0.0.1:8080/v1'
        >>> resolve_api_url("http://127.0.0.1:8080/")
        'http://127.0.0.1:8080/v1'
    """
    url = api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        source = "api_url" if api_url else API_URL_ENV
        raise ConfigError(
            f"GBIF API URL {url!r} (from {source}) is not an http(s) URL; "
            f"use something like {DEFAULT_API_URL}"
        )
    if not parts.path and not parts.query:
        url += API_VERSION_PATH  # a server root: GBIF's API lives under /v1
    return url


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    """Settings of a :class:`GbifClient` (credentials are not settings: they are never stored here).

    Attributes:
        api_url: base URL; ``None`` means ``$GBIF_API_URL`` or the public API.
        concurrency: API requests in flight at once (1 to :data:`MAX_API_CONCURRENCY`).
        retry: how 429/5xx/connection errors are retried.
        timeout_s: timeout of one API request; for the download file, of each read.
        poll_interval_s: first interval between download status polls.
        max_poll_interval_s: the interval grows up to this.
        user_agent: the ``User-Agent`` header.

    Example:
        >>> ClientConfig(concurrency=1).concurrency
        1
    """

    api_url: str | None = None
    concurrency: int = DEFAULT_API_CONCURRENCY
    retry: RetryPolicy = DEFAULT_API_RETRY
    timeout_s: float = 60.0
    poll_interval_s: float = 15.0
    max_poll_interval_s: float = 300.0
    user_agent: str = USER_AGENT


async def _sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline``, never waking before it."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining + 0.001)  # the loop may fire up to a clock tick early


def _gbif_message(body: str, content_type: str) -> str:
    """GBIF's error text, readable: JSON arrays of strings joined, HTML reduced to its text."""
    text = body.strip()
    if not text:
        return ""
    if text[:1] in '[{"':
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            text = " ".join(data)
        elif isinstance(data, str):
            text = data
        elif isinstance(data, dict):
            parts = [str(data[k]) for k in ("error", "message") if data.get(k)]
            text = ": ".join(parts) or text
    elif "html" in content_type.lower() or text[:1] == "<":
        text = "HTML page: " + " ".join(re.sub(r"<[^>]*>", " ", text).split())
    text = text.strip()
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "…"


def _hint(status: int) -> str:
    if status == 400:
        return "check the parameter values in your query"
    if status in (401, 403):
        return (
            f"check your GBIF username and password (environment variables {USER_ENV} and "
            f"{PASSWORD_ENV}; the username, not the e-mail address)"
        )
    if status == 404:
        return "check the key or identifier"
    if status == 429:
        return "GBIF is throttling requests; lower the API concurrency or try again later"
    if status >= 500:
        return "GBIF is having trouble; try again later"
    return "see GBIF's message"


class GbifClient:
    """Asynchronous client of the GBIF REST API; an async context manager.

    Args:
        api_url: base URL; default ``$GBIF_API_URL`` or ``https://api.gbif.org/v1``.
        concurrency: API requests in flight at once (default 2, at most 8).
        retry: retry policy for 429/5xx/connection errors/timeouts.
        timeout_s: timeout of one API request.
        user, password: GBIF account for creating downloads; default ``$GBIF_USER``/``$GBIF_PWD``.
        config: a :class:`ClientConfig` used instead of the individual settings above.

    Example:
        >>> async def species_count(api_url: str) -> dict[str, int]:
        ...     async with GbifClient(api_url) as gbif:
        ...         return await gbif.facet({"taxonKey": 212}, "speciesKey")
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        concurrency: int = DEFAULT_API_CONCURRENCY,
        retry: RetryPolicy = DEFAULT_API_RETRY,
        timeout_s: float = 60.0,
        user: str | None = None,
        password: str | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        if config is None:
            config = ClientConfig(
                api_url=api_url, concurrency=concurrency, retry=retry, timeout_s=timeout_s
            )
        if not isinstance(config.concurrency, int) or not (
            1 <= config.concurrency <= MAX_API_CONCURRENCY
        ):
            raise ConfigError(
                f"GBIF API concurrency must be an integer from 1 to {MAX_API_CONCURRENCY}, got "
                f"{config.concurrency!r}; GBIF asks clients to keep few requests in flight"
            )
        if not config.timeout_s > 0:
            raise ConfigError(f"timeout_s must be positive, got {config.timeout_s!r}")
        self.config = config
        self.api_url: str = resolve_api_url(config.api_url)
        self._user = user if user is not None else os.environ.get(USER_ENV)
        self._password = password if password is not None else os.environ.get(PASSWORD_ENV)
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._not_before = 0.0  # monotonic time before which no request is sent (Retry-After)

    def __repr__(self) -> str:
        return f"GbifClient(api_url={self.api_url!r}, concurrency={self.config.concurrency})"

    async def __aenter__(self) -> GbifClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; the client can be used again afterwards (a new session)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.config.concurrency * 2)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.config.user_agent},
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            )
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
        return self._session

    def _url(self, path: str) -> str:
        return self.api_url + path

    # --- the one place requests are sent -------------------------------------------------------

    async def _wait_retry_after_gate(self) -> None:
        # a deadline that other requests may push back while we sleep, so check again after
        while self._not_before > time.monotonic():
            await _sleep_until(self._not_before)

    async def request(
        self,
        method: str,
        url: str,
        read: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        params: Sequence[tuple[str, str]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        no_retry: frozenset[int] = frozenset(),
    ) -> T:
        """Send one API request with the client's politeness; ``read`` turns a success into T.

        The one place requests to GBIF are sent: the concurrency bound, the ``Retry-After``
        floor shared by every request of the client, retries of 429/5xx/connection errors
        (except the statuses in ``no_retry``) and the translation of errors. A success (status
        below 400 after redirects) is handed to ``read``.

        Raises:
            GbifApiError: an error status, or a URL that does not answer like a GBIF API.

        Example:
            >>> async def text(gbif: GbifClient) -> str:
            ...     url = gbif.api_url + "/occurrence/search"
            ...     return await gbif.request("GET", url, lambda response: response.text())
        """
        session = self._ensure_session()
        assert self._semaphore is not None
        attempt = 0
        shown = url if not params else f"{url}?{'&'.join(f'{k}={v}' for k, v in params)}"
        while True:
            status = 0
            retry_after: float | None = None
            await self._wait_retry_after_gate()
            try:
                async with self._semaphore:
                    await self._wait_retry_after_gate()
                    async with session.request(
                        method,
                        url,
                        params=list(params) if params else None,
                        json=json_body,
                        headers=dict(headers) if headers else None,
                    ) as response:
                        if response.status < 400:
                            return await read(response)
                        status = response.status
                        shown = str(response.url)
                        raw = await response.content.read(64 * 1024)
                        message = _gbif_message(
                            raw.decode("utf-8", errors="replace"),
                            response.headers.get("Content-Type", ""),
                        )
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = 0
                message = f"{type(exc).__name__}: {exc}".rstrip(": ")
            retryable = (status == 0 or status in RETRYABLE_STATUSES) and status not in no_retry
            attempt += 1
            if not (retryable and self.config.retry.should_retry(attempt)):
                raise self._error(method, shown, status, message, attempt)
            await self._back_off(method, shown, status, message, attempt, retry_after)

    async def _back_off(
        self,
        method: str,
        shown: str,
        status: int,
        message: str,
        attempt: int,
        retry_after: float | None,
    ) -> None:
        """Wait before retry ``attempt``; a long ``Retry-After`` raises instead."""
        policy = self.config.retry
        if retry_after is not None and retry_after > policy.max_retry_after_s:
            raise GbifApiError(
                f"GBIF asked to wait {retry_after:.0f} s (Retry-After) before retrying "
                f"{method} {shown}, longer than the allowed {policy.max_retry_after_s:.0f}"
                f" s; try again later. GBIF said: {message}",
                url=shown,
                status=status,
                body=message,
            )
        delay = policy.delay(attempt=attempt, retry_after=retry_after)
        if retry_after is not None:
            # GBIF throttles the client: no request of this client goes out earlier
            self._not_before = max(self._not_before, time.monotonic() + retry_after)
        logger.warning(
            "GBIF %s for %s %s; retry %d/%d in %.1f s%s",
            f"HTTP {status}" if status else "connection error",
            method,
            shown,
            attempt,
            policy.retries,
            delay,
            f" (Retry-After {retry_after:g} s)" if retry_after is not None else "",
        )
        await _sleep_until(time.monotonic() + delay)

    def _not_gbif(self, detail: str, *, url: str = "", status: int = 0) -> GbifApiError:
        """The error for a base URL that answers like something other than GBIF's API.

        Example:
            >>> print(GbifClient("http://127.0.0.1:9/v1")._not_gbif("HTML at /occurrence/search"))
            ... # doctest: +NORMALIZE_WHITESPACE
            http://127.0.0.1:9/v1 does not look like a GBIF API (HTML at /occurrence/search).
            Set api_url= or GBIF_API_URL to the base URL of a GBIF API, such as
            https://api.gbif.org/v1 (a server root like http://host:port gets /v1 added)
        """
        text = (
            f"{self.api_url} does not look like a GBIF API ({detail}). Set api_url= or "
            f"{API_URL_ENV} to the base URL of a GBIF API, such as {DEFAULT_API_URL} (a server "
            "root like http://host:port gets /v1 added)"
        )
        return GbifApiError(text, url=url or self.api_url, status=status, body=detail)

    def _error(
        self, method: str, url: str, status: int, message: str, attempts: int
    ) -> GbifApiError:
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        if status == 0:
            text = (
                f"could not reach GBIF at {self.api_url} for {method} {url}{tries}: {message}. "
                f"Check the network, or the {API_URL_ENV} setting"
            )
            return GbifApiError(text, url=url, status=status, body=message or text)
        path = urlsplit(url).path[len(urlsplit(self.api_url).path) :]
        if status in (404, 405) and path in _ALWAYS_THERE:
            said = f": {message[:200]}" if message else ""
            return self._not_gbif(
                f"HTTP {status} for {method} {path}{said}", url=url, status=status
            )
        said = f": {message}" if message else ""
        text = f"GBIF answered HTTP {status} to {method} {url}{tries}{said}. {_hint(status)}"
        return GbifApiError(text, url=url, status=status, body=message or text)

    async def get_json(self, path: str, params: Sequence[tuple[str, str]] | None = None) -> Any:
        """GET ``path`` (below the base URL) and parse GBIF's JSON answer.

        Raises:
            GbifApiError: an error status, or an answer that is not JSON (then the base URL
                does not look like a GBIF API).

        Example:
            >>> async def one(gbif: GbifClient) -> dict:
            ...     return await gbif.get_json("/occurrence/5063546426")
        """

        async def read(response: aiohttp.ClientResponse) -> Any:
            text = await response.text(encoding="utf-8", errors="replace")
            try:
                return json.loads(text)
            except ValueError:
                kind = response.headers.get("Content-Type", "no content type")
                raise self._not_gbif(
                    f"{path} answered HTTP {response.status} with {kind}, not JSON: {text[:80]!r}",
                    url=str(response.url),
                    status=response.status,
                ) from None

        return await self.request("GET", self._url(path), read, params=params)

    async def _search_json(self, params: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """``/occurrence/search`` answered with GBIF's envelope (``count``, ``results``)."""
        data = await self.get_json("/occurrence/search", params)
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("results"), list)
            or not (isinstance(data.get("count"), int))
        ):
            raise self._not_gbif(
                "its /occurrence/search answered JSON without GBIF's count and results: "
                f"{str(data)[:80]}",
                url=self._url("/occurrence/search"),
                status=200,
            )
        return data

    # --- occurrence search ---------------------------------------------------------------------

    @staticmethod
    def _query_params(
        query: Mapping[str, Any], validate: bool, drop: Callable[[str], bool]
    ) -> list[tuple[str, str]]:
        if validate:
            checked = validate_query(query)
        else:
            checked = {
                str(k): [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
                for k, v in query.items()
            }
        return [
            (name, value) for name, values in checked.items() if not drop(name) for value in values
        ]

    async def search(
        self,
        query: Mapping[str, Any],
        *,
        limit: int = MAX_PAGE_SIZE,
        offset: int = 0,
        validate: bool = True,
    ) -> dict[str, Any]:
        """One page of occurrence search: GBIF's envelope (``count``, ``results``, ...).

        ``limit``/``offset`` given here win over any in ``query``.

        Raises:
            ConfigError: invalid query or paging beyond GBIF's 100,000 limit (before any request).
            GbifApiError: GBIF answered with an error.

        Example:
            >>> async def first_page(gbif: GbifClient) -> list[dict]:
            ...     page = await gbif.search({"speciesKey": 5352251}, limit=20)
            ...     return page["results"]
        """
        if not isinstance(limit, int) or limit < 0 or not isinstance(offset, int) or offset < 0:
            raise ConfigError(
                f"limit and offset must be non-negative integers, got {limit!r}, {offset!r}"
            )
        limit = min(limit, MAX_PAGE_SIZE)
        if offset + limit > MAX_SEARCH_OFFSET:
            raise ConfigError(
                f"GBIF's occurrence search stops at {MAX_SEARCH_OFFSET:,} records "
                f"(offset {offset} + limit {limit}); split the query (by year, dataset or "
                "species) or use an occurrence download"
            )
        params = self._query_params(query, validate, lambda name: name in ("limit", "offset"))
        params += [("limit", str(limit)), ("offset", str(offset))]
        return await self._search_json(params)

    async def count(self, query: Mapping[str, Any]) -> int:
        """The number of occurrences matching ``query`` (one request with ``limit=0``).

        Example:
            >>> async def bees(gbif: GbifClient) -> int:
            ...     return await gbif.count({"taxonKey": 4334, "mediaType": "StillImage"})
        """
        return int((await self.search(query, limit=0))["count"])

    @staticmethod
    def _facet_counts(data: Mapping[str, Any], field_name: str) -> dict[str, int]:
        for facet in data.get("facets") or []:
            if str(facet.get("field", "")).upper() == field_name:
                return {str(b["name"]): int(b["count"]) for b in facet.get("counts") or []}
        return {}

    def _facetless(self, query: Mapping[str, Any]) -> list[tuple[str, str]]:
        return self._query_params(
            query,
            True,
            lambda name: name in ("limit", "offset") or name.startswith("facet") or "." in name,
        )

    async def facet(
        self,
        query: Mapping[str, Any],
        field: str,
        *,
        limit: int = 1000,
        mincount: int | None = None,
    ) -> dict[str, int]:
        """Occurrence counts per value of ``field`` (for example per ``speciesKey``), all of them.

        Pages through ``facetOffset`` until GBIF returns fewer than ``limit`` buckets. Counts are
        of occurrence records, not images; the order is GBIF's (count, descending).

        Example:
            >>> async def per_species(gbif: GbifClient) -> dict[str, int]:
            ...     return await gbif.facet({"taxonKey": 212}, "speciesKey", mincount=10)
        """
        enum_name = facet_field(field)
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"facet limit must be a positive integer, got {limit!r}")
        base = self._facetless(query)
        counts: dict[str, int] = {}
        offset = 0
        while True:
            if offset + limit > MAX_FACET_ELEMENTS:
                logger.warning(
                    "facet %s stops at GBIF's limit of %d values", field, MAX_FACET_ELEMENTS
                )
                break
            params = [
                *base,
                ("facet", canonical_name(field)),
                ("facetLimit", str(limit)),
                ("facetOffset", str(offset)),
                ("limit", "0"),
            ]
            if mincount is not None:
                params.append(("facetMincount", str(int(mincount))))
            page = self._facet_counts(await self._search_json(params), enum_name)
            before = len(counts)
            counts.update(page)
            if len(page) < limit or len(counts) == before:
                break
            offset += limit
        return counts

    async def facets(
        self, query: Mapping[str, Any], fields: Sequence[str], *, limit: int = 1000
    ) -> dict[str, dict[str, int]]:
        """Counts for several fields in one request (no paging: at most ``limit`` values each).

        Example:
            >>> async def overview(gbif: GbifClient) -> dict[str, dict[str, int]]:
            ...     return await gbif.facets({"taxonKey": 212}, ["country", "year"], limit=50)
        """
        if isinstance(fields, str) or not fields:
            raise ConfigError(f"fields must be a non-empty list of field names, got {fields!r}")
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"facet limit must be a positive integer, got {limit!r}")
        enums = {name: facet_field(name) for name in fields}
        params = [
            *self._facetless(query),
            *(("facet", canonical_name(name)) for name in fields),
            ("facetLimit", str(limit)),
            ("limit", "0"),
        ]
        data = await self._search_json(params)
        return {name: self._facet_counts(data, enum_name) for name, enum_name in enums.items()}

    async def occurrence(self, key: int | str) -> dict[str, Any]:
        """One occurrence record by its key (``gbifID``).

        Example:
            >>> async def one(gbif: GbifClient) -> dict:
            ...     return await gbif.occurrence(5063546426)
        """
        text = str(key).strip()
        if isinstance(key, bool) or not text.isdigit():
            raise ConfigError(f"an occurrence key is a number such as 5063546426, got {key!r}")
        data = await self.get_json(f"/occurrence/{text}")
        if not isinstance(data, dict):
            raise GbifApiError(
                f"GBIF answered occurrence {text} with something that is not a record",
                url=self._url(f"/occurrence/{text}"),
                status=200,
            )
        return data

    # --- occurrence downloads (gbif_dl.gbif.downloads) ------------------------------------------

    def credentials(
        self, user: str | None = None, password: str | None = None
    ) -> tuple[str, dict[str, str]]:
        """The GBIF username and the ``Authorization`` header (HTTP Basic) to create downloads.

        ``user``/``password`` win over the client's (``$GBIF_USER``/``$GBIF_PWD``).

        Raises:
            ConfigError: no username or password anywhere.

        Example:
            >>> GbifClient(user="alice", password="secret").credentials()[0]
            'alice'
        """
        user = user if user is not None else self._user
        password = password if password is not None else self._password
        if not user or not password:
            raise ConfigError(
                "creating a GBIF download needs a GBIF account: set the environment variables "
                f"{USER_ENV} (your GBIF username) and {PASSWORD_ENV} (its password), or pass "
                "user= and password=. Register at https://www.gbif.org/user/profile"
            )
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return user, {"Authorization": f"Basic {token}"}

    async def download_metadata(self, key_or_doi: str) -> dict[str, Any]:
        """A download's metadata, by key or DOI: :func:`.downloads.download_metadata`.

        Example:
            >>> async def status(gbif: GbifClient) -> str:
            ...     return (await gbif.download_metadata("doi:10.15468/dl.hx3uzz"))["status"]
        """
        return await downloads.download_metadata(self, key_or_doi)

    async def request_download(
        self,
        predicate: Mapping[str, Any],
        *,
        format: str = "DWCA",
        user: str | None = None,
        password: str | None = None,
        notification_addresses: Sequence[str] = (),
        send_notification: bool = False,
    ) -> str:
        """Ask GBIF to prepare a download; its key: :func:`.downloads.request_download`.

        Example:
            >>> from gbif_dl.gbif.params import to_predicate
            >>> async def create(gbif: GbifClient) -> str:
            ...     return await gbif.request_download(to_predicate({"taxonKey": 212}))
        """
        return await downloads.request_download(
            self,
            predicate,
            format=format,
            user=user,
            password=password,
            notification_addresses=notification_addresses,
            send_notification=send_notification,
        )

    async def wait_for_download(
        self,
        key: str,
        *,
        poll_interval_s: float | None = None,
        max_interval_s: float | None = None,
        timeout_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a download until it SUCCEEDED: :func:`.downloads.wait_for_download`.

        Example:
            >>> async def ready(gbif: GbifClient, key: str) -> int:
            ...     return (await gbif.wait_for_download(key, timeout_s=6 * 3600))["size"]
        """
        return await downloads.wait_for_download(
            self,
            key,
            poll_interval_s=poll_interval_s,
            max_interval_s=max_interval_s,
            timeout_s=timeout_s,
            on_status=on_status,
        )

    async def fetch_download(
        self,
        key: str,
        dest: Path,
        *,
        expected_size: int | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Fetch a download's file, resuming ``<dest>.part``: :func:`.downloads.fetch_download`.

        Example:
            >>> async def get(gbif: GbifClient, key: str) -> Path:
            ...     return await gbif.fetch_download(key, Path(f"{key}.zip"))
        """
        return await downloads.fetch_download(
            self, key, dest, expected_size=expected_size, progress=progress
        )

    # --- species --------------------------------------------------------------------------------

    async def species_match(
        self,
        name: str,
        *,
        rank: str | None = None,
        kingdom: str | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Match a scientific name against the GBIF backbone (``/species/match``).

        Returns GBIF's answer as is: no match is ``matchType == "NONE"`` without ``usageKey``
        (GBIF still answers 200); ``HIGHERRANK`` means only a higher taxon matched.

        Example:
            >>> async def key_of(gbif: GbifClient) -> int | None:
            ...     match = await gbif.species_match("Helianthus annuus", kingdom="Plantae")
            ...     return match.get("usageKey")
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a scientific name must be a non-empty string, got {name!r}")
        params = [("name", name.strip()), ("strict", "true" if strict else "false")]
        if rank:
            params.append(("rank", rank))
        if kingdom:
            params.append(("kingdom", kingdom))
        data = await self.get_json("/species/match", params)
        if not isinstance(data, dict) or "matchType" not in data:
            raise self._not_gbif(
                f"its /species/match answered JSON without GBIF's matchType: {str(data)[:80]}",
                url=self._url("/species/match"),
                status=200,
            )
        return data

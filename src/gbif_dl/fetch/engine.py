"""The media fetch engine: one asyncio loop, polite per-host limits, retries, validation, resize.

How it schedules (the reason this module exists):

* Records are pulled lazily from the input, at most ``lookahead`` of them at a time are pending
  (queued, waiting for a retry, downloading or being reported), so memory is flat whatever the
  input length.
* Every host has its own queue. A scheduler hands free global slots (``concurrency``) to the
  hosts in turn (round-robin), each host staying under its own cap, so a slow host cannot stall
  the others while there is look-ahead left.
* A host's cap starts at ``per_host``, is halved (down to 1) when it answers 429 (once per
  "window": 429s of requests started before the last cut do not cut again) and grows back by one
  after every ``RECOVER_AFTER`` successes.
* A retry (connection errors, timeouts, 429, 5xx, truncated bodies) waits on a timer *without*
  holding a slot: exponential backoff with jitter, and never earlier than ``Retry-After``.
* A ``Retry-After`` above ``retry.max_retry_after_s`` (120 s by default) is not waited for: the
  item is deferred to the end of the run (it leaves the look-ahead, so it holds nothing) and,
  once every other record is reported, asked once more; a host that still asks for too long a
  wait then fails it with ``Reason.RETRY_AFTER``. A deferral uses one of the item's retries. At
  most ``lookahead`` items wait deferred (memory stays flat): more, and those are asked again.
* A host slot is held for the HTTP exchange only; a global slot is held until the record is
  reported (after decode check / resize and ``on_result``), so at most ``concurrency`` bodies are
  in memory and a slow CPU or disk slows the downloads instead of piling up bytes.
* Resizing runs in a process pool, one process per core (threads where processes cannot be
  used: :class:`~gbif_dl.fetch.workers.ResizePool`), decode checks in a thread, so downloads
  keep flowing.
* With ``max_size``, a known host's smaller rendition is fetched first
  (:mod:`gbif_dl.fetch.renditions`); a failed or too small one puts the record's own URL back
  at the head of its host's queue, so the item ends in the same run either way.

Defaults, measured with :class:`gbif_dl.testing.mediahost.MediaHosts` on a 2-core machine
(client and servers in one process, so absolute numbers are a floor; images/s)::

    2,000 images, 2 hosts, no latency     4/8: 1709   8/16: 2374  16/32: 2396
      (per_host/concurrency)            32/64: 2079  8/128: 2214  16/128: 2502
    2,000 images, 4 hosts, 100 ms        4/16: 154    8/32: 304   16/64: 576
                                        8/128: 301  16/128: 586   32/256: 944
    3,000 images, 16 hosts, 100 ms      16/64: 458  16/128: 1002  16/256: 864

Without latency the CPU is the limit from about 8 per host on; with latency a host delivers
``per_host / latency`` images/s, so ``per_host`` decides the speed on the few big hosts that
serve most GBIF media, and ``concurrency`` decides how many hosts run at full speed at once.
Above 128 in flight the event loop itself becomes the bottleneck (16 hosts: 1002 -> 864).
Hence ``DEFAULT_CONCURRENCY = 128`` and ``DEFAULT_PER_HOST = 16``; a host that answers 429
is slowed down automatically, so the per-host default can afford to be this high.

Example:
    >>> from gbif_dl.testing.mediahost import MediaHosts
    >>> from gbif_dl.records import make_record
    >>> from gbif_dl._aio import run_sync
    >>> results = []
    >>> with MediaHosts(n_hosts=2) as hosts:
    ...     urls = [f"{base}/media/{i}.jpg" for base in hosts.base_urls for i in range(5)]
    ...     engine = FetchEngine(FetchConfig(concurrency=8, per_host=2))
    ...     summary = run_sync(engine.run([make_record(u) for u in urls], results.append))
    >>> summary.ok, len(results), results[0].ext in (".jpg", ".png")
    (10, 10, True)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from gbif_dl._version import __version__
from gbif_dl.errors import ConfigError
from gbif_dl.fetch import images
from gbif_dl.fetch.guard import AddressGuard
from gbif_dl.fetch.http import READ_BUFSIZE, Attempt, fetch_once
from gbif_dl.fetch.renditions import rendition_for, unusable
from gbif_dl.fetch.result import FetchResult, FetchSummary, Reason
from gbif_dl.fetch.retry import DEFAULT_RETRY, RetryPolicy
from gbif_dl.fetch.workers import ResizePool
from gbif_dl.records import host_key, is_http_url

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_FETCH",
    "DEFAULT_PER_HOST",
    "RECOVER_AFTER",
    "FetchConfig",
    "FetchEngine",
]

logger = logging.getLogger(__name__)

#: Requests in flight at most, over all hosts (measured, see the module docstring).
DEFAULT_CONCURRENCY = 128
#: Requests in flight at most per host (measured and polite, see the module docstring).
DEFAULT_PER_HOST = 16
#: Successes after which a throttled host's cap grows by one.
RECOVER_AFTER = 20

OnResult = Callable[[FetchResult], "Awaitable[None] | None"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchConfig:
    """How the engine fetches: limits, timeouts, retries, validation and resizing.

    Attributes:
        concurrency: requests in flight at most, over all hosts.
        per_host: requests in flight at most per host (lowered temporarily after 429).
        connect_timeout_s, read_timeout_s, total_timeout_s: per request (socket connect, gap
            between two reads, whole request including the body).
        retry: retries of connection errors, timeouts, 429, 5xx and truncated bodies; its
            ``max_retry_after_s`` (120 s by default) is the longest ``Retry-After`` waited for
            (a longer one defers the item to the end of the run, see the module docstring).
        max_bytes: larger bodies fail with ``Reason.TOO_LARGE`` without being read to the end.
        max_redirects: redirects followed at most (each must go to an http(s) URL).
        decode_check: fully decode each image (in a thread); failures are ``DECODE_ERROR``.
        max_size: resize so that the longest side is at most this (EXIF orientation applied,
            RGB JPEG output; see :func:`gbif_dl.fetch.images.resize_image`), in a process pool
            (multiprocessing's default start method: where that is spawn/forkserver, i.e.
            macOS, Windows, Linux from Python 3.14, scripts need ``if __name__ == "__main__":``).
        jpeg_quality: JPEG quality of re-encoded images.
        resize_workers: processes of the resize pool (default: the CPUs this process may use;
            threads where processes cannot be used, see :mod:`gbif_dl.fetch.workers`).
        proxy: an http(s) proxy URL for every request.
        user_agent: the ``User-Agent`` header.
        is_valid_file: gbif-dl 0.1 compatible check, called with the body; False -> ``INVALID``.
        lookahead: records pending at most (default ``max(8 * concurrency, 1024)``).
        allow_private: let media URLs and redirects reach private, loopback and link-local
            addresses (local mirrors, simulators); off by default, also on with the environment
            variable ``GBIF_DL_ALLOW_PRIVATE=1``. Refused requests fail with
            ``Reason.BLOCKED_ADDRESS`` before any connection (see :mod:`gbif_dl.fetch.guard`).
        allowed_services: ``(address, port)`` pairs let through the guard besides those this
            process registered with :func:`gbif_dl.fetch.guard.allow_service` (the runners
            add those here, so worker processes know them).
        resolver: an aiohttp resolver for host names (tests map names to addresses with it);
            the guard wraps it. None: aiohttp's default.
        max_pixels: images whose header claims more pixels fail with
            ``Reason.TOO_MANY_PIXELS`` before any decode (decode check or resize).
        spill_bytes: a body growing past this streams into an anonymous temp file instead of
            memory while it downloads.
        memory_budget: bytes of spilled bodies loaded in memory at once (to validate, resize
            and hand to ``on_result``); default ``max(256 MiB, max_bytes)``, never below
            ``max_bytes``. In memory at most: this plus ``concurrency * spill_bytes``, plus
            up to ``2 * READ_BUFSIZE`` (2 MiB) a connection in the HTTP client's buffer.
        renditions: with ``max_size``, ask known image hosts (iNaturalist, Flickr) for their
            smallest rendition still ``max_size`` on its longest side, and fall back to the
            record's URL in the same run when it fails (see :mod:`gbif_dl.fetch.renditions`).

    Example:
        >>> FetchConfig(concurrency=32, per_host=4, max_size=512).per_host
        4
    """

    concurrency: int = DEFAULT_CONCURRENCY
    per_host: int = DEFAULT_PER_HOST
    connect_timeout_s: float = 10
    read_timeout_s: float = 30
    total_timeout_s: float = 120
    retry: RetryPolicy = DEFAULT_RETRY
    max_bytes: int = 50 * 2**20
    max_redirects: int = 5
    decode_check: bool = False
    max_size: int | None = None
    jpeg_quality: int = 90
    resize_workers: int | None = None
    proxy: str | None = None
    user_agent: str = f"gbif-dl/{__version__} (+https://github.com/gbif-dl/gbif-dl)"
    is_valid_file: Callable[[bytes], bool] | None = None
    lookahead: int | None = None
    allow_private: bool = False
    allowed_services: frozenset[tuple[str, int]] = frozenset()
    resolver: AbstractResolver | None = None
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    spill_bytes: int = 4 * 2**20
    memory_budget: int | None = None
    renditions: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.concurrency < 1:
            problems.append(f"concurrency must be >= 1 (got {self.concurrency})")
        if self.per_host < 1:
            problems.append(f"per_host must be >= 1 (got {self.per_host})")
        for name in ("connect_timeout_s", "read_timeout_s", "total_timeout_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.max_bytes < 1:
            problems.append(f"max_bytes must be >= 1 (got {self.max_bytes})")
        if self.max_redirects < 0:
            problems.append(f"max_redirects must be >= 0 (got {self.max_redirects})")
        if self.max_size is not None and self.max_size < 1:
            problems.append(f"max_size must be >= 1 or None (got {self.max_size})")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in 1..100 (got {self.jpeg_quality})")
        if self.resize_workers is not None and self.resize_workers < 1:
            problems.append(f"resize_workers must be >= 1 or None (got {self.resize_workers})")
        if self.proxy is not None and not is_http_url(self.proxy):
            problems.append(f"proxy must be an http(s) URL (got {self.proxy!r})")
        if self.lookahead is not None and self.lookahead < 1:
            problems.append(f"lookahead must be >= 1 or None (got {self.lookahead})")
        if self.spill_bytes < 1:
            problems.append(f"spill_bytes must be >= 1 (got {self.spill_bytes})")
        if self.max_pixels < 1:
            problems.append(f"max_pixels must be >= 1 (got {self.max_pixels})")
        if self.retry.retries < 0:
            problems.append(f"retry.retries must be >= 0 (got {self.retry.retries})")
        if not self.retry.max_retry_after_s >= 0:
            problems.append(
                f"retry.max_retry_after_s must be >= 0 (got {self.retry.max_retry_after_s})"
            )
        if problems:
            raise ConfigError("invalid FetchConfig: " + "; ".join(problems) + ".")

    @property
    def body_budget(self) -> int:
        """Bytes of spilled bodies loaded in memory at once (see ``memory_budget``)."""
        return max(self.memory_budget or 256 * 2**20, self.max_bytes)

    @property
    def pending_limit(self) -> int:
        """Records pending at most (the bounded look-ahead over the input)."""
        return self.lookahead or max(8 * self.concurrency, 1024)


DEFAULT_FETCH = FetchConfig()


@dataclass(slots=True, eq=False)
class _Host:
    key: str
    cap: int
    queue: deque[_Item] = field(default_factory=deque)
    active: int = 0
    in_ready: bool = False
    successes: int = 0  # since the last cap change
    cut_at: float = 0.0  # when the cap was last halved
    requests: int = 0
    ok: int = 0
    failed: int = 0
    throttled: int = 0
    latency_s: float = 0.0

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "mean_latency_s": self.latency_s / self.requests if self.requests else 0.0,
            "throttled": self.throttled,
            "cap": self.cap,
            "active": self.active,
            "queued": len(self.queue),
        }


@dataclass(slots=True, eq=False)
class _Item:
    record: dict[str, Any]
    url: str
    host: _Host
    attempts: int = 0
    started: float = 0.0
    timer: asyncio.TimerHandle | None = None
    deferred: bool = False  # was put back at the end of the run once (a too long Retry-After)
    original: str | None = None  # the record's URL while ``url`` is a rendition of it
    spent: int = 0  # attempts spent on a rendition that failed


class FetchEngine:
    """Fetch the media of many records concurrently and hand each outcome to a callback.

    One engine can serve several runs one after the other; per-host statistics and caps
    carry over (see :meth:`host_stats`).

    Example:
        >>> engine = FetchEngine(FetchConfig(concurrency=16, per_host=4))
        >>> engine.config.concurrency, engine.host_stats()
        (16, {})
    """

    def __init__(self, config: FetchConfig = DEFAULT_FETCH) -> None:
        self._config = config
        self._hosts: dict[str, _Host] = {}
        self._running = False

    @property
    def config(self) -> FetchConfig:
        """The configuration this engine runs with."""
        return self._config

    def host_stats(self) -> dict[str, dict[str, Any]]:
        """Per host (``"host:port"``): requests, ok, failed, mean_latency_s, throttled, cap.

        Example:
            >>> FetchEngine().host_stats()
            {}
        """
        return {key: host.stats() for key, host in self._hosts.items()}

    async def run(
        self,
        records: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]],
        on_result: OnResult,
    ) -> FetchSummary:
        """Fetch every record's ``url``; call ``on_result`` once per record; return the totals.

        ``records`` is consumed lazily (at most ``config.pending_limit`` records ahead of
        completion). ``on_result`` runs in the event loop, for successes and failures alike; it
        may be a coroutine function, and then several calls may be in progress at once. An
        exception from ``records`` or ``on_result`` stops the run and is re-raised. When the
        run is cancelled (``CancelledError``, ``KeyboardInterrupt``), in-flight work is cancelled
        and unfinished records get no ``on_result``.

        Example:
            >>> from gbif_dl._aio import run_sync
            >>> seen = []
            >>> summary = run_sync(FetchEngine().run([{"url": "file:///etc/passwd"}], seen.append))
            >>> seen[0].reason.value, summary.failed
            ('unsafe_url', 1)
        """
        if self._running:
            raise RuntimeError("FetchEngine.run is already running; use one engine per run.")
        self._running = True
        try:
            return await _Run(self._config, self._hosts, on_result).execute(records)
        finally:
            self._running = False


class _Run:
    """The state of one :meth:`FetchEngine.run`."""

    def __init__(self, config: FetchConfig, hosts: dict[str, _Host], on_result: OnResult) -> None:
        self.config = config
        self.hosts = hosts
        self.on_result = on_result
        self.limit = config.pending_limit
        self.pending = 0
        self.in_flight = 0
        self.ready: deque[_Host] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.timers: set[asyncio.TimerHandle] = set()
        self.deferred: list[_Item] = []  # asked once more when everything else is reported
        self.space = asyncio.Event()
        self.done = asyncio.Event()
        self.input_done = False
        self.failure: BaseException | None = None
        self.summary = FetchSummary()
        self.pool = ResizePool(config.resize_workers)  # started on first use
        self.timeout = aiohttp.ClientTimeout(
            total=config.total_timeout_s,
            sock_connect=config.connect_timeout_s,
            sock_read=config.read_timeout_s,
        )
        self.session: aiohttp.ClientSession
        self.budget = _ByteBudget(config.body_budget)
        self.guard = AddressGuard(
            True if config.allow_private else None, services=config.allowed_services
        )

    # the run ----------------------------------------------------------------------------------

    async def execute(
        self, records: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]]
    ) -> FetchSummary:
        started = time.monotonic()
        resolver = self.guard.resolver(self.config.resolver)
        connector = aiohttp.TCPConnector(
            limit=self.config.concurrency,
            limit_per_host=self.config.per_host,
            ttl_dns_cache=300,
            resolver=resolver,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.config.user_agent},
            cookie_jar=aiohttp.DummyCookieJar(),
            read_bufsize=READ_BUFSIZE,
        )
        feeder = asyncio.create_task(self._feed(records), name="gbif-dl-feed")
        try:
            await self.done.wait()
            if self.failure is not None:
                raise self.failure
        finally:
            pending = [feeder, *self.tasks]
            for task in pending:
                task.cancel()
            for timer in self.timers:
                timer.cancel()
            self.timers.clear()
            await asyncio.gather(*pending, return_exceptions=True)
            await self.session.close()
            if self.config.resolver is None:  # ours to close (the caller's is the caller's)
                await resolver.close()
            self.pool.close()
        self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.done.set()

    def _check_done(self) -> None:
        if self.input_done and self.pending == 0:
            if self.deferred:
                self._resume_deferred()
            else:
                self.done.set()

    # input ------------------------------------------------------------------------------------

    async def _feed(
        self, records: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]]
    ) -> None:
        try:
            if isinstance(records, AsyncIterable):
                async for record in records:
                    await self._admit(record)
            else:
                for count, record in enumerate(records, 1):
                    await self._admit(record)
                    if count % 256 == 0:
                        await asyncio.sleep(0)  # let the downloads run while a fast input is read
            self.input_done = True
            self._check_done()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # re-raised by execute()
            self._fail(exc)

    async def _admit(self, record: dict[str, Any]) -> None:
        while self.pending >= self.limit:
            self.space.clear()
            await self.space.wait()
        if not isinstance(record, dict):
            raise ConfigError(
                "records must be dicts with a 'url' key (MediaRecord), "
                f"got {type(record).__name__}; "
                "build them with gbif_dl.records.make_record(url)."
            )
        self.pending += 1
        url = record.get("url")
        if not isinstance(url, str) or not is_http_url(url):
            result = FetchResult.failed(
                record, Reason.UNSAFE_URL, detail=f"not an http(s) URL: {str(url)[:200]!r}"
            )
            await self._report(result)
            return
        host = self._host(url)
        max_size = self.config.max_size if self.config.renditions else None
        rendition = rendition_for(url, max_size) if max_size is not None else None
        first = rendition.url if rendition else url  # a rendition: the same host, another path
        host.queue.append(_Item(record, first, host, original=url if rendition else None))
        self._make_ready(host)
        self._dispatch()

    def _host(self, url: str) -> _Host:
        key = host_key(url) or ""  # an admitted URL has a host (is_http_url); "" otherwise
        host = self.hosts.get(key)
        if host is None:
            host = self.hosts[key] = _Host(key, cap=self.config.per_host)
        return host

    # scheduling -------------------------------------------------------------------------------

    def _make_ready(self, host: _Host) -> None:
        if not host.in_ready and host.queue and host.active < host.cap:
            host.in_ready = True
            self.ready.append(host)

    def _dispatch(self) -> None:
        """Hand free global slots to hosts with queued work, one per host in turn."""
        while self.in_flight < self.config.concurrency and self.ready:
            host = self.ready.popleft()
            host.in_ready = False
            if not host.queue or host.active >= host.cap:
                continue
            item = host.queue.popleft()
            host.active += 1
            self.in_flight += 1
            task = asyncio.create_task(self._process(item))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            self._make_ready(host)  # back of the ring

    def _requeue(self, item: _Item) -> None:
        if item.timer is not None:
            self.timers.discard(item.timer)
            item.timer = None
        item.host.queue.appendleft(item)
        self._make_ready(item.host)
        self._dispatch()

    def _release_global(self) -> None:
        self.in_flight -= 1
        self._dispatch()

    def _defer(self, item: _Item, attempt: Attempt) -> bool:
        """Put ``item`` aside until the end of the run when its host asked for a longer wait
        than ``max_retry_after_s`` (once per item, using one retry). True if it was."""
        policy = self.config.retry
        if (
            item.deferred
            or not attempt.retryable
            or not policy.too_long(attempt.retry_after)
            or not policy.should_retry(item.attempts)
        ):
            return False
        item.deferred = True
        self.deferred.append(item)
        self.pending -= 1  # out of the look-ahead while it waits: the input keeps flowing
        self.space.set()
        if len(self.deferred) >= self.limit:  # memory stays bounded: ask this lot again now
            self._resume_deferred()
            return True
        logger.debug(
            "%s asked to wait %.0f s (Retry-After): asking again at the end of the run",
            item.url,
            attempt.retry_after,
        )
        self._check_done()
        return True

    def _resume_deferred(self) -> None:
        """Everything else is reported: queue the deferred items again, in their order."""
        items, self.deferred = self.deferred, []
        logger.info(
            "asking %d deferred image(s) once more (their hosts asked to wait longer than %g s)",
            len(items),
            self.config.retry.max_retry_after_s,
        )
        self.pending += len(items)
        for item in items:
            item.host.queue.append(item)
            self._make_ready(item.host)
        self._dispatch()

    # one record -------------------------------------------------------------------------------

    async def _process(self, item: _Item) -> None:
        holding_global = True
        attempt: Attempt | None = None
        try:
            attempt = await self._attempt(item)
            if not attempt.ok and (
                self._schedule_retry(item, attempt) or self._defer(item, attempt)
            ):
                holding_global = False
                self._release_global()
                return
            if attempt.spool is None:  # in memory already: nothing to hold (most bodies)
                await self._settle(item, attempt)
            else:
                async with self.budget.hold(attempt.size):
                    await asyncio.to_thread(attempt.load)
                    await self._settle(item, attempt)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug or on_result raised: stop the run
            self._fail(exc)
        finally:
            if attempt is not None:
                attempt.discard()  # a spilled body never read (cancelled, failed): deleted
            if holding_global:
                self._release_global()

    async def _attempt(self, item: _Item) -> Attempt:
        host = item.host
        start = time.monotonic()
        if item.attempts == 0 and item.spent == 0:
            item.started = start
        item.attempts += 1
        try:
            attempt = await fetch_once(
                self.session,
                item.url,
                timeout=self.timeout,
                max_bytes=self.config.max_bytes,
                max_redirects=self.config.max_redirects,
                proxy=self.config.proxy,
                guard=self.guard,
                spill_bytes=self.config.spill_bytes,
            )
        finally:
            host.active -= 1
        host.requests += 1
        host.latency_s += time.monotonic() - start
        if attempt.ok:
            host.successes += 1
            if host.cap < self.config.per_host and host.successes >= RECOVER_AFTER:
                host.cap += 1
                host.successes = 0
        elif attempt.status == 429:
            host.throttled += 1
            if start >= host.cut_at:  # one cut per window of requests
                host.cap = max(1, host.cap // 2)
                host.cut_at = time.monotonic()
                host.successes = 0
                logger.debug("host %s throttled: cap now %d", host.key, host.cap)
        self._make_ready(host)
        self._dispatch()
        return attempt

    def _schedule_retry(self, item: _Item, attempt: Attempt) -> bool:
        policy = self.config.retry
        if not attempt.retryable or not policy.should_retry(item.attempts):
            return False
        if policy.too_long(attempt.retry_after):
            return False  # not waited for: deferred to the end of the run, or failed
        delay = policy.delay(attempt=item.attempts, retry_after=attempt.retry_after)
        loop = asyncio.get_running_loop()
        item.timer = loop.call_later(delay, self._requeue, item)
        self.timers.add(item.timer)
        return True

    async def _settle(self, item: _Item, attempt: Attempt) -> None:
        """Report a finished attempt, or fall back from a failed rendition to the original."""
        if item.original is not None and self._fall_back(item, attempt):
            return
        await self._report(await self._result(item, attempt))

    async def _result(self, item: _Item, attempt: Attempt) -> FetchResult:
        common: dict[str, Any] = {
            "http_status": attempt.status,
            "attempts": item.attempts + item.spent,
            "host": item.host.key,
            "final_url": attempt.final_url,
            "fetched_url": item.url,
        }
        if not attempt.ok and attempt.retryable and self.config.retry.too_long(attempt.retry_after):
            return self._failed(item, Reason.RETRY_AFTER, self._wait_detail(item, attempt), common)
        if not attempt.ok or attempt.body is None or attempt.image_type is None:
            return self._failed(item, attempt.reason or Reason.NETWORK, attempt.detail, common)
        body = attempt.body
        if self.config.is_valid_file is not None and not self._is_valid(body):
            return self._failed(item, Reason.INVALID, "is_valid_file returned False", common)
        ext, mime = attempt.image_type
        if self.config.max_size is not None or self.config.decode_check:
            too_many = images.pixel_problem(images.image_size(body), self.config.max_pixels)
            if too_many is not None:  # refused from the header: nothing decoded
                return self._failed(item, Reason.TOO_MANY_PIXELS, too_many, common)
        if self.config.max_size is not None:
            outcome = await self._off_loop_resize(body)
            if not isinstance(outcome, images.ResizedImage):
                return self._failed(item, outcome[0], outcome[1], common)
            body, width, height, ext, mime = outcome
            size: tuple[int, int] | None = (width, height)
        elif self.config.decode_check:
            problem = await asyncio.to_thread(_check_decodes, body, self.config.max_pixels)
            if problem is not None:
                return self._failed(item, Reason.DECODE_ERROR, problem, common)
            size = images.image_size(body)
        else:
            size = images.image_size(body)
        item.host.ok += 1
        return FetchResult(
            record=item.record,
            ok=True,
            body=body,
            ext=ext,
            mime=mime,
            width=size[0] if size else None,
            height=size[1] if size else None,
            elapsed_s=time.monotonic() - item.started,
            **common,
        )

    def _fall_back(self, item: _Item, attempt: Attempt) -> bool:
        """When the rendition ``item`` fetched failed or is too small, queue the record's own
        URL instead (with fresh retries; the rendition's failure is no result). True if so."""
        assert item.original is not None and self.config.max_size is not None
        problem = unusable(attempt.body, attempt.reason, attempt.detail, self.config.max_size)
        if problem is None:
            return False
        logger.debug("rendition %s unusable (%s): fetching %s", item.url, problem, item.original)
        item.url, item.original, item.spent = item.original, None, item.spent + item.attempts
        item.attempts, item.deferred = 0, False
        self._requeue(item)
        return True

    def _wait_detail(self, item: _Item, attempt: Attempt) -> str:
        """Why an item whose host asked for too long a wait failed (``Reason.RETRY_AFTER``)."""
        again = ", also when asked again at the end of the run" if item.deferred else ""
        return (
            f"HTTP {attempt.status}: the server asked to wait {attempt.retry_after:.0f} s "
            f"(Retry-After), longer than max_retry_after_s="
            f"{self.config.retry.max_retry_after_s:g}{again}"
        )

    def _failed(
        self, item: _Item, reason: Reason, detail: str, common: dict[str, Any]
    ) -> FetchResult:
        item.host.failed += 1
        return FetchResult.failed(
            item.record,
            reason,
            detail=detail,
            elapsed_s=time.monotonic() - item.started,
            **common,
        )

    def _is_valid(self, body: bytes) -> bool:
        check = self.config.is_valid_file
        assert check is not None
        try:
            return bool(check(body))
        except Exception as exc:  # a user callback: its failure marks the file invalid
            logger.warning(
                "is_valid_file raised %s: %s; treating the file as invalid", type(exc).__name__, exc
            )
            return False

    async def _off_loop_resize(self, body: bytes) -> images.ResizedImage | tuple[Reason, str]:
        assert self.config.max_size is not None
        outcome = await self.pool.prepare(
            body,
            self.config.max_size,
            self.config.jpeg_quality,
            self.config.decode_check,
            self.config.max_pixels,
        )
        if isinstance(outcome, images.ResizedImage):
            return outcome
        return Reason(outcome[0]), outcome[1]

    async def _report(self, result: FetchResult) -> None:
        summary = self.summary
        summary.total += 1
        if result.ok:
            summary.ok += 1
            summary.bytes += len(result.body or b"")
        else:
            summary.failed += 1
            key = result.reason.value if result.reason else "unknown"
            summary.by_reason[key] = summary.by_reason.get(key, 0) + 1
        try:
            outcome = self.on_result(result)
            if inspect.isawaitable(outcome):
                await outcome
        finally:
            self.pending -= 1
            if self.pending < self.limit:
                self.space.set()
            self._check_done()


def _check_decodes(body: bytes, max_pixels: int) -> str | None:
    try:
        return images.check_decodes(body, max_pixels)
    except images.TooManyPixels as exc:  # the header said less than the decoder saw
        return f"too many pixels: {exc}"


class _ByteBudget:
    """Bytes held in memory at once: :meth:`hold` waits until ``size`` fits under ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.limit)
        if size <= 0:
            yield
            return
        async with self.changed:
            await self.changed.wait_for(lambda: self.used + size <= self.limit)
            self.used += size
        try:
            yield
        finally:
            async with self.changed:
                self.used -= size
                self.changed.notify_all()

"""A GBIF API simulator on loopback: occurrence search, facets, downloads and species match.

``GbifSimulator`` serves a :class:`~gbif_dl.testing.population.Population` with the behaviour
GBIF's real API shows in recorded responses (``tests/data/gbif-fixtures``): lenient parameter
names, OR for repeated parameters, ranges, ``limit`` clamped to 300, the 100,000 offset cap,
facets, occurrence downloads that go PREPARING -> RUNNING -> SUCCEEDED over successive polls,
the archive behind a 302 with ``Range`` support, Basic auth on download creation, and v1
species match. The download endpoints live in :mod:`~gbif_dl.testing.sim_downloads` and the
predicate functions in :mod:`~gbif_dl.testing.predicates` (re-exported here). It runs an
``aiohttp.web`` server in a background thread, so synchronous and asynchronous code can use it
alike.

Endpoints (all under ``api_url`` = ``http://127.0.0.1:PORT/v1``):

==========================================================  ======================================
``GET /occurrence/search``                                  search + facets
``GET /occurrence/{key}``                                   one record
``GET /occurrence/download/{key}`` and ``/{prefix}/{sfx}``  download metadata (key or DOI)
``GET /occurrence/download/request/{key}[.zip]``            302 to ``/archive/{key}.zip``
``DELETE /occurrence/download/request/{key}``               cancel (Basic auth) -> 204
``POST /occurrence/download/request``                       create (Basic auth) -> 201 + key
``GET /species/match``, ``GET /species/suggest``            names of the population's species
==========================================================  ======================================

Test hooks: ``latency_s`` before every answer; :meth:`GbifSimulator.inject` queues error
answers (429 with GBIF's JSON-array body and ``Retry-After``, 503, ...); :meth:`stats` reports
requests per path, the maximum number of requests in flight, search pages asked for, and
``early_retries`` (requests repeated before the ``Retry-After`` they were given had expired).

Example:
    >>> import json, urllib.request
    >>> from gbif_dl.testing.population import Population
    >>> with GbifSimulator(Population(seed=0, size=100)) as sim:
    ...     url = sim.api_url + "/occurrence/search?limit=500"
    ...     page = json.load(urllib.request.urlopen(url))
    >>> page["limit"], len(page["results"])
    (300, 100)
"""

from __future__ import annotations

import asyncio
import collections
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from gbif_dl.errors import ConfigError
from gbif_dl.testing._server import BackgroundLoop, serve_on_loopback, stop_serving
from gbif_dl.testing.population import Population
from gbif_dl.testing.predicates import predicate_mask, query_to_predicate
from gbif_dl.testing.search_params import InvalidSearchError, facet_field_name, normalize_param
from gbif_dl.testing.sim_downloads import EXECUTING as EXECUTING
from gbif_dl.testing.sim_downloads import FORMATS as FORMATS
from gbif_dl.testing.sim_downloads import STATUSES as STATUSES
from gbif_dl.testing.sim_downloads import Download, DownloadsMixin
from gbif_dl.testing.sim_http import compact_json, int_param, json_response, text_response

__all__ = ["ApiStats", "GbifSimulator", "predicate_mask", "query_to_predicate"]

logger = logging.getLogger(__name__)

MAX_LIMIT = 300
MAX_OFFSET = 100_000
MAX_FACET_PAGING = 1_200_000
DEFAULT_LIMIT = 20
DEFAULT_FACET_LIMIT = 10

#: The body GBIF sends with a 429 (recorded, ``occurrence-search_429_too_many_requests.json``).
THROTTLE_BODY = [
    "To download GBIF occurrence data in bulk, please request a download through the website "
    "<https://www.gbif.org/occurrence/search>, the API "
    "<https://techdocs.gbif.org/en/data-use/api-downloads>, or use the free public cloud "
    "datasets <https://www.gbif.org/occurrence-snapshot>.",
    "We can also provide data about downloads, datasets, citations and so on in CSV or some "
    "other format, please contact helpdesk@gbif.org.",
]


@dataclass(frozen=True, slots=True)
class ApiStats:
    """A snapshot of what the simulator saw; also readable as a mapping (``stats["requests"]``).

    Attributes:
        requests: requests per path (``{"/v1/occurrence/search": 12, ...}``).
        total_requests: all requests.
        max_in_flight: the most requests being handled at the same time.
        early_retries: requests repeated (same method, path and query) before the
            ``Retry-After`` of the 429 they had been given expired.
        pages: ``(offset, limit)`` of each search request, after clamping.
        statuses: responses per HTTP status.
    """

    requests: dict[str, int]
    total_requests: int
    max_in_flight: int
    early_retries: int
    pages: list[tuple[int, int]]
    statuses: dict[int, int]

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


@dataclass(slots=True)
class _Fault:
    prefix: str
    status: int
    retry_after_s: float | None


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class GbifSimulator(DownloadsMixin):
    """The GBIF API on loopback, backed by a :class:`Population`; a context manager.

    Args:
        population: the records to serve.
        latency_s: delay added before every answer.
        users: ``{username: password}`` accepted by Basic auth on download creation.
        host, port: where to listen (port 0 = a free port).
        max_running_downloads: per user; one more gets HTTP 420.
        polls_per_state: metadata polls a created download spends in PREPARING and in RUNNING.
        cut_after_bytes: if set, the first transfer of every archive is cut after that many
            bytes (the connection closes mid-body), to test resuming with ``Range``.
        seed: used for download keys and DOIs.

    Example:
        >>> import urllib.request
        >>> from gbif_dl.testing.population import Population
        >>> with GbifSimulator(Population(seed=0, size=50)) as sim:
        ...     key = sim.add_download({"mediaType": "StillImage"})
        ...     meta = json.load(urllib.request.urlopen(f"{sim.api_url}/occurrence/download/{key}"))
        >>> meta["status"], meta["size"] > 0
        ('SUCCEEDED', True)
    """

    def __init__(
        self,
        population: Population,
        *,
        latency_s: float = 0.0,
        users: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_running_downloads: int = 3,
        polls_per_state: int = 1,
        cut_after_bytes: int | None = None,
        seed: int = 0,
    ) -> None:
        if latency_s < 0:
            raise ConfigError(f"latency_s must be >= 0, got {latency_s}")
        self.population = population
        self.latency_s = float(latency_s)
        self.users = dict(users or {})
        self.host = host
        self.port = int(port)
        self.max_running_downloads = int(max_running_downloads)
        self.polls_per_state = max(1, int(polls_per_state))
        self.cut_after_bytes = cut_after_bytes
        self.seed = int(seed)
        self._lock = threading.Lock()
        self._downloads: dict[str, Download] = {}
        self._dois: dict[str, str] = {}
        self._download_counter = 0
        self._faults: list[_Fault] = []
        self._retry_deadlines: dict[str, float] = {}
        self._workdir: Path | None = None
        self._server = BackgroundLoop("gbif-dl-simulator")
        self._runner: web.AppRunner | None = None
        self.reset_stats()

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (after start)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what a client uses as its GBIF API base URL."""
        return f"{self.base_url}/v1"

    def start(self) -> GbifSimulator:
        """Start serving in a background thread (idempotent); returns ``self``."""
        if self._server.running:
            return self
        self._workdir = Path(tempfile.mkdtemp(prefix="gbif-dl-sim-"))
        self._server.start(self._start_server, self._stop_server)
        logger.info("GBIF simulator listening on %s", self.api_url)
        return self

    def close(self) -> None:
        """Stop serving and remove the built archives."""
        self._server.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> GbifSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _start_server(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 20)
        routes = app.router
        routes.add_get("/v1/occurrence/search", self._search)
        routes.add_post("/v1/occurrence/download/request", self._create_download)
        routes.add_get(r"/v1/occurrence/download/request/{key}", self._download_file)
        routes.add_delete(r"/v1/occurrence/download/request/{key}", self._cancel_download)
        routes.add_get("/v1/occurrence/download/{key}", self._download_meta)
        routes.add_get("/v1/occurrence/download/{prefix}/{suffix}", self._download_meta_doi)
        routes.add_get(r"/v1/occurrence/{key:\d+}", self._occurrence)
        routes.add_get("/v1/species/match", self._species_match)
        routes.add_get("/v1/species/suggest", self._species_suggest)
        routes.add_get(r"/archive/{name}", self._archive)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self.port = await serve_on_loopback(self._runner, self.host, self.port)

    async def _stop_server(self) -> None:
        if self._runner is not None:
            await stop_serving(self._runner)

    # --- observability and test hooks --------------------------------------------------------

    @property
    def requests(self) -> list[tuple[float, str, str]]:
        """Every request so far: ``(time.monotonic(), method, path_qs)``."""
        with self._lock:
            return list(self._request_log)

    def stats(self) -> ApiStats:
        """A snapshot of the counters (see :class:`ApiStats`)."""
        with self._lock:
            return ApiStats(
                requests=dict(self._per_path),
                total_requests=len(self._request_log),
                max_in_flight=self._max_in_flight,
                early_retries=self._early_retries,
                pages=list(self._pages),
                statuses=dict(self._statuses),
            )

    def reset_stats(self) -> None:
        """Forget the request log and zero the counters."""
        with getattr(self, "_lock", threading.Lock()):
            self._request_log: list[tuple[float, str, str]] = []
            self._per_path: collections.Counter[str] = collections.Counter()
            self._statuses: collections.Counter[int] = collections.Counter()
            self._pages: list[tuple[int, int]] = []
            self._in_flight = 0
            self._max_in_flight = 0
            self._early_retries = 0

    def inject(
        self,
        path_prefix: str,
        statuses: Sequence[int] = (429, 503),
        retry_after_s: float | None = 1.0,
    ) -> None:
        """Answer the next requests whose path starts with ``path_prefix`` with ``statuses``.

        One queued status per matching request, in order. ``path_prefix`` may omit the
        ``/v1`` (``"/occurrence/search"``). 429 carries GBIF's JSON-array body and
        ``Retry-After: retry_after_s``; 503 carries GBIF's maintenance text (and ``Retry-After``
        too when ``retry_after_s`` is set); other statuses a short text body.

        Example:
            >>> sim = GbifSimulator(Population(seed=0, size=10))
            >>> sim.inject("/occurrence/search", statuses=[429], retry_after_s=0.2)
        """
        if not path_prefix.startswith("/"):
            path_prefix = "/" + path_prefix
        with self._lock:
            for status in statuses:
                self._faults.append(_Fault(path_prefix, int(status), retry_after_s))

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for position, fault in enumerate(self._faults):
                if path.startswith(fault.prefix) or path.startswith("/v1" + fault.prefix):
                    return self._faults.pop(position)
        return None

    # --- middleware ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        arrived = time.monotonic()
        retry_key = f"{request.method} {request.path_qs}"
        with self._lock:
            self._request_log.append((arrived, request.method, request.path_qs))
            self._per_path[request.path] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            deadline = self._retry_deadlines.pop(retry_key, None)
            if deadline is not None and arrived < deadline:
                self._early_retries += 1
        status = 500
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            fault = self._take_fault(request.path)
            if fault is not None:
                response: web.StreamResponse = self._fault_response(fault, retry_key)
            else:
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    status = exc.status
                    raise
            status = response.status
            return response
        finally:
            with self._lock:
                self._in_flight -= 1
                self._statuses[status] += 1

    def _fault_response(self, fault: _Fault, retry_key: str) -> web.Response:
        headers = {}
        if fault.retry_after_s is not None and fault.status in (429, 503):
            headers["Retry-After"] = _seconds(fault.retry_after_s)
            with self._lock:
                self._retry_deadlines[retry_key] = time.monotonic() + fault.retry_after_s
        if fault.status == 429:
            response = json_response(THROTTLE_BODY, status=429)
        elif fault.status == 503:
            response = text_response(503, "Service disabled for maintenance reasons")
        else:
            response = text_response(fault.status, f"Simulated error {fault.status}")
        response.headers.update(headers)
        return response

    # --- occurrence search --------------------------------------------------------------------

    async def _search(self, request: web.Request) -> web.Response:
        try:
            return self._search_sync(request)
        except InvalidSearchError as exc:
            return text_response(400, exc.gbif_message)

    def _search_sync(self, request: web.Request) -> web.Response:
        filters: dict[str, list[str]] = {}
        limit_text = offset_text = None
        facets: list[str] = []
        facet_limit = facet_offset = facet_mincount = None
        per_facet: dict[str, dict[str, str]] = {}
        for name, value in request.query.items():
            if value == "":
                continue  # GBIF drops empty parameters
            norm = normalize_param(name)
            if norm == "LIMIT":
                limit_text = value
            elif norm == "OFFSET":
                offset_text = value
            elif norm == "FACET":
                facets.append(value)
            elif norm == "FACETLIMIT":
                facet_limit = value
            elif norm == "FACETOFFSET":
                facet_offset = value
            elif norm == "FACETMINCOUNT":
                facet_mincount = value
            elif norm.endswith(("FACETLIMIT", "FACETOFFSET")) and "." in name:
                prefix, _, option = name.rpartition(".")
                per_facet.setdefault(normalize_param(prefix), {})[normalize_param(option)] = value
            else:
                filters.setdefault(name, []).append(value)
        limit = min(int_param(limit_text, DEFAULT_LIMIT, "limit"), MAX_LIMIT)
        offset = int_param(offset_text, 0, "offset")
        if limit < 0 or offset < 0:
            raise InvalidSearchError(
                "Limit and offset must be greater than or equal to 0", param="limit"
            )
        if offset + limit > MAX_OFFSET:
            raise InvalidSearchError(
                f"Max offset of {MAX_OFFSET} exceeded: {offset} + {limit}", param="offset"
            )
        with self._lock:
            self._pages.append((offset, limit))
        pop = self.population
        indices = pop.select(filters)
        count = int(indices.size)
        # the page's records are serialised straight to JSON text (same bytes as json_response of
        # the record dicts, several times faster): the simulator's CPU must not be the bottleneck
        results = pop.records_json(indices[offset : offset + limit]) if limit else "[]"
        facet_results = []
        seen: set[str] = set()
        for name in facets:
            param = pop.facet_param(name)
            if param is None or param in seen:
                continue  # GBIF ignores unknown facets
            seen.add(param)
            options = per_facet.get(normalize_param(name), {})
            f_limit = int_param(
                options.get("FACETLIMIT", facet_limit), DEFAULT_FACET_LIMIT, "facetLimit"
            )
            f_offset = int_param(options.get("FACETOFFSET", facet_offset), 0, "facetOffset")
            mincount = int_param(facet_mincount, 0, "facetMincount")
            if f_offset + f_limit > MAX_FACET_PAGING:
                raise InvalidSearchError(
                    f"Facets paging is only supported up to {MAX_FACET_PAGING} elements",
                    param="facetLimit",
                )
            buckets = [
                {"name": bucket, "count": n}
                for bucket, n in pop.facet(indices, param).items()
                if n >= mincount
            ][f_offset : f_offset + max(0, f_limit)]
            facet_results.append({"field": facet_field_name(param), "counts": buckets})
        head = compact_json(
            {
                "offset": offset,
                "limit": limit,
                "endOfRecords": count <= offset + limit,
                "count": count,
            }
        )
        body = f'{head[:-1]},"results":{results},"facets":{compact_json(facet_results)}}}'
        return web.Response(body=body.encode("utf-8"), content_type="application/json")

    async def _occurrence(self, request: web.Request) -> web.Response:
        index = self.population.index_of(request.match_info["key"])
        if index is None:
            return text_response(404, f"Entity not found for uri: {request.path[3:]}")
        return json_response(self.population.record(index))

    # --- species ------------------------------------------------------------------------------

    async def _species_match(self, request: web.Request) -> web.Response:
        name = request.query.get("name") or request.query.get("scientificName") or ""
        strict = request.query.get("strict", "false").lower() == "true"
        return json_response(self.population.match_name(name, strict=strict))

    async def _species_suggest(self, request: web.Request) -> web.Response:
        limit = int_param(request.query.get("limit"), 20, "limit")
        return json_response(self.population.suggest(request.query.get("q", ""), limit=limit))

"""A GBIF API simulator on loopback: occurrence search, facets, downloads and species match.

``GbifSimulator`` serves a :class:`~gbif_dl.testing.population.Population` with the behaviour
GBIF's real API shows in recorded responses (``tests/data/gbif-fixtures``): lenient parameter
names, OR for repeated parameters, ranges, ``limit`` clamped to 300, the 100,000 offset cap,
facets, occurrence downloads that go PREPARING -> RUNNING -> SUCCEEDED over successive polls,
the archive behind a 302 with ``Range`` support, Basic auth on download creation, and v1
species match. It runs an ``aiohttp.web`` server in a background thread, so synchronous and
asynchronous code can use it alike.

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
import base64
import binascii
import collections
import copy
import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import web

from gbif_dl.errors import ConfigError
from gbif_dl.gbif.downloads import DOWNLOAD_FORMATS
from gbif_dl.testing._server import BackgroundLoop, serve_on_loopback, stop_serving
from gbif_dl.testing.archive import write_dwca
from gbif_dl.testing.population import (
    InvalidSearchError,
    Population,
    canonical_param,
    facet_field_name,
    normalize_param,
)

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

EXECUTING = ("PREPARING", "RUNNING", "SUSPENDED")
STATUSES = (
    "PREPARING",
    "RUNNING",
    "SUCCEEDED",
    "CANCELLED",
    "KILLED",
    "FAILED",
    "SUSPENDED",
    "FILE_ERASED",
)
#: The download formats GBIF produces (the client's list: one definition).
FORMATS = tuple(sorted(DOWNLOAD_FORMATS))


# --- predicates -------------------------------------------------------------------------------


def query_to_predicate(query: Mapping[str, Any]) -> dict[str, Any]:
    """Turn search parameters into a download predicate, the way GBIF's website does.

    Example:
        >>> query_to_predicate({"taxonKey": 5, "country": ["US", "CA"]})["predicates"][1]
        {'type': 'in', 'key': 'COUNTRY', 'values': ['US', 'CA'], 'matchCase': False}
    """
    predicates: list[dict[str, Any]] = []
    for name, value in query.items():
        param = canonical_param(str(name))
        if param is None:
            raise ConfigError(
                f"unknown search parameter {name!r} for a download predicate; "
                "use GBIF names such as taxonKey, mediaType, country, year"
            )
        values = [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        key = facet_field_name(param)
        if len(values) == 1 and "," in values[0]:
            low, _, high = values[0].partition(",")
            bounds = {}
            if low.strip() not in ("", "*"):
                bounds["gte"] = low.strip()
            if high.strip() not in ("", "*"):
                bounds["lte"] = high.strip()
            predicates.append({"type": "range", "key": key, "value": bounds})
        elif len(values) == 1:
            predicates.append(
                {"type": "equals", "key": key, "value": values[0], "matchCase": False}
            )
        else:
            predicates.append({"type": "in", "key": key, "values": values, "matchCase": False})
    if len(predicates) == 1:
        return predicates[0]
    return {"type": "and", "predicates": predicates}


def _predicate_param(predicate: Mapping[str, Any]) -> str:
    key = str(predicate.get("key", ""))
    param = canonical_param(key)
    if param is None:
        raise ConfigError(f"Invalid predicate: unsupported key {key!r}")
    return param


def predicate_mask(pop: Population, predicate: Mapping[str, Any] | None) -> npt.NDArray[np.bool_]:
    """Boolean mask of the records matching a GBIF download predicate (None = everything).

    Supports ``and``, ``or``, ``not``, ``equals``, ``in``, ``range``, ``greaterThan``,
    ``greaterThanOrEquals``, ``lessThan``, ``lessThanOrEquals``, ``isNull``, ``isNotNull``;
    others raise :class:`~gbif_dl.errors.ConfigError`.

    Example:
        >>> pop = Population(seed=0, size=100)
        >>> pred = {"type": "greaterThanOrEquals", "key": "YEAR", "value": "2020"}
        >>> bool((predicate_mask(pop, pred) == pop.mask({"year": "2020,*"})).all())
        True
    """
    if predicate is None:
        return np.ones(pop.size, dtype=bool)
    kind = str(predicate.get("type", "")).lower()
    try:
        if kind in ("and", "or"):
            children = predicate.get("predicates") or []
            masks = [predicate_mask(pop, child) for child in children]
            if not masks:
                return np.ones(pop.size, dtype=bool)
            combine = np.logical_and if kind == "and" else np.logical_or
            return combine.reduce(masks)
        if kind == "not":
            return ~predicate_mask(pop, predicate.get("predicate"))
        if kind in ("isnull", "isnotnull"):
            param = _predicate_param(predicate)
            present = pop.mask({param: "*"})
            return present if kind == "isnotnull" else ~present
        param = _predicate_param(predicate)
        if kind == "equals":
            return pop.mask({param: str(predicate.get("value", ""))})
        if kind == "in":
            return pop.mask({param: [str(v) for v in predicate.get("values") or []]})
        if kind == "range":
            value = predicate.get("value")
            if isinstance(value, Mapping):
                low = value.get("gte", "*")
                high = value.get("lte", "*")
                text = f"{'*' if low is None else low},{'*' if high is None else high}"
            else:
                text = str(value)
            return pop.mask({param: text})
        value = str(predicate.get("value", ""))
        if kind == "greaterthanorequals":
            return pop.mask({param: f"{value},*"})
        if kind == "lessthanorequals":
            return pop.mask({param: f"*,{value}"})
        if kind == "greaterthan":
            return pop.mask({param: f"{value},*"}) & ~pop.mask({param: value})
        if kind == "lessthan":
            return pop.mask({param: f"*,{value}"}) & ~pop.mask({param: value})
    except InvalidSearchError as exc:
        raise ConfigError(f"Invalid predicate: {exc.gbif_message}") from exc
    raise ConfigError(
        f"Invalid predicate: type {predicate.get('type')!r} is not supported by the simulator"
    )


def _stamp_match_case(predicate: Any) -> Any:
    """Echo ``"matchCase": false`` into leaf predicates, as GBIF stores them."""
    if isinstance(predicate, dict):
        out = {k: _stamp_match_case(v) for k, v in predicate.items()}
        if "key" in out and "matchCase" not in out and out.get("type") not in ("range",):
            out["matchCase"] = False
        return out
    if isinstance(predicate, list):
        return [_stamp_match_case(v) for v in predicate]
    return predicate


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


# --- state ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Download:
    key: str
    doi: str
    predicate: dict[str, Any] | None
    format: str
    creator: str
    status: str
    advancing: bool
    total: int
    created: datetime
    modified: datetime
    cut_after_bytes: int | None = None
    polls: int = 0
    archive: Path | None = None
    size: int = 0
    n_datasets: int = 0
    license_url: str = "unspecified"
    cut_done: bool = False
    build_lock: threading.Lock = field(default_factory=threading.Lock)


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


def _text(status: int, text: str, content_type: str | None = "text/plain") -> web.Response:
    body = text.encode("utf-8")
    if content_type is None:
        return web.Response(status=status, body=body)
    return web.Response(status=status, body=body, content_type=content_type)


def _compact(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _json(payload: Any, status: int = 200) -> web.Response:
    body = _compact(payload).encode("utf-8")
    return web.Response(status=status, body=body, content_type="application/json")


def _int_param(value: str | None, default: int, name: str) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidSearchError(f"Invalid integer value {value} for {name}", param=name) from None


class GbifSimulator:
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
        self._downloads: dict[str, _Download] = {}
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

    # --- downloads API for tests --------------------------------------------------------------

    def _new_key(self) -> str:
        with self._lock:
            self._download_counter += 1
            number = self._download_counter
        return f"{number:07d}-250101120000{self.seed % 1000:03d}"

    @staticmethod
    def _doi_for(key: str) -> str:
        digest = int(hashlib.sha1(key.encode()).hexdigest(), 16)
        alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
        suffix = "".join(alphabet[(digest >> (6 * k)) % 36] for k in range(6))
        return f"10.15468/dl.{suffix}"

    def add_download(
        self,
        query_or_predicate: Mapping[str, Any] | None = None,
        status: str = "SUCCEEDED",
        doi: str | None = None,
        format: str = "DWCA",
        *,
        creator: str = "simulator",
        cut_after_bytes: int | None = None,
    ) -> str:
        """Register an occurrence download and return its key.

        ``query_or_predicate`` is search parameters (``{"taxonKey": 5, "year": "2000,2010"}``),
        a predicate (``{"type": "equals", "key": "TAXON_KEY", "value": "5"}``), a full download
        request (``{"predicate": ..., "format": ...}``) or None (everything). ``status``
        ``PREPARING`` or ``RUNNING`` advances over metadata polls; any other status stays put
        (``FILE_ERASED`` makes the zip answer 410). ``cut_after_bytes`` cuts the archive's
        first transfer mid-body.

        Example:
            >>> sim = GbifSimulator(Population(seed=0, size=10))
            >>> key = sim.add_download({"taxonKey": 1}, status="PREPARING")
            >>> len(key)
            23
        """
        status = status.upper()
        if status not in STATUSES:
            raise ConfigError(f"unknown download status {status!r}; use one of {STATUSES}")
        format = format.upper()
        if format not in FORMATS:
            raise ConfigError(f"unknown download format {format!r}; use one of {FORMATS}")
        predicate: dict[str, Any] | None
        if query_or_predicate is None:
            predicate = None
        elif "predicate" in query_or_predicate:
            predicate = query_or_predicate["predicate"]
            format = str(query_or_predicate.get("format", format)).upper()
        elif "type" in query_or_predicate:
            predicate = dict(query_or_predicate)
        else:
            predicate = query_to_predicate(query_or_predicate)
        return self._register(predicate, format, creator, status, doi, cut_after_bytes)

    def _register(
        self,
        predicate: dict[str, Any] | None,
        fmt: str,
        creator: str,
        status: str,
        doi: str | None,
        cut_after_bytes: int | None,
    ) -> str:
        total = int(np.count_nonzero(predicate_mask(self.population, predicate)))
        key = self._new_key()
        now = datetime.now(timezone.utc)
        download = _Download(
            key=key,
            doi=doi or self._doi_for(key),
            predicate=_stamp_match_case(copy.deepcopy(predicate)),
            format=fmt,
            creator=creator,
            status=status,
            advancing=status in ("PREPARING", "RUNNING"),
            total=total,
            created=now,
            modified=now,
            cut_after_bytes=cut_after_bytes,
        )
        with self._lock:
            self._downloads[key] = download
            self._dois[download.doi.lower()] = key
        return key

    def download_status(self, key: str) -> str:
        """The current status of download ``key`` (no poll counted)."""
        with self._lock:
            return self._downloads[key].status

    def archive_path(self, key: str) -> Path:
        """Build (if needed) and return the archive file of download ``key``."""
        return self._build_archive(self._downloads[key])

    def _build_archive(self, download: _Download) -> Path:
        with download.build_lock:
            if download.archive is not None and download.archive.exists():
                return download.archive
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix="gbif-dl-sim-"))
            path = self._workdir / f"{download.key}.zip"
            indices = np.flatnonzero(predicate_mask(self.population, download.predicate))
            if download.format == "DWCA":
                summary = write_dwca(
                    self.population,
                    indices,
                    path,
                    key=download.key,
                    doi=download.doi,
                    download_link=self._download_link(download.key),
                )
                n_datasets = len(summary.datasets)
            else:
                n_datasets = self._write_simple(download, indices, path)
            download.n_datasets = n_datasets
            download.size = path.stat().st_size
            download.license_url = self._license_for(indices)
            download.archive = path
            return path

    def _write_simple(self, download: _Download, indices: npt.NDArray[np.int64], path: Path) -> int:
        """A small SIMPLE_CSV-like zip (``<key>.csv``, TAB separated); no media URLs."""
        pop = self.population
        with (
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
            zf.open(f"{download.key}.csv", "w", force_zip64=True) as fh,
        ):
            fh.write(b"gbifID\tdatasetKey\ttaxonKey\tspeciesKey\tyear\tmediaType\n")
            for i in indices.tolist():
                rec = pop.record(i)
                types = sorted({m["type"] for m in rec["media"] if "type" in m})
                row = [
                    rec["gbifID"],
                    rec["datasetKey"],
                    str(rec["taxonKey"]),
                    str(rec.get("speciesKey", "")),
                    str(rec.get("year", "")),
                    ";".join(types),
                ]
                fh.write(("\t".join(row) + "\n").encode())
        return len(np.unique(pop.ds[indices]))

    def _license_for(self, indices: npt.NDArray[np.int64]) -> str:
        pop = self.population
        present = set(np.unique(pop.ds[indices]).tolist())
        codes = {pop._datasets[j]["license"] for j in present}
        for code, url in (
            ("CC_BY_NC_4_0", "http://creativecommons.org/licenses/by-nc/4.0/legalcode"),
            ("CC_BY_4_0", "http://creativecommons.org/licenses/by/4.0/legalcode"),
            ("CC0_1_0", "http://creativecommons.org/publicdomain/zero/1.0/legalcode"),
        ):
            if code in codes:
                return url
        return "unspecified"

    def _download_link(self, key: str) -> str:
        return f"{self.api_url}/occurrence/download/request/{key}.zip"

    def _metadata(self, download: _Download) -> dict[str, Any]:
        done = download.status in ("SUCCEEDED", "FILE_ERASED")
        body: dict[str, Any] = {"key": download.key}
        if done:
            body["doi"] = download.doi
        body["license"] = download.license_url if done else "unspecified"
        body["request"] = {
            "predicate": download.predicate,
            "sendNotification": False,
            "format": download.format,
            "type": "OCCURRENCE",
            "verbatimExtensions": [],
        }
        body["created"] = _iso(download.created)
        body["modified"] = _iso(download.modified)
        body["eraseAfter"] = _iso(download.created + timedelta(days=181))
        body["status"] = download.status
        body["downloadLink"] = self._download_link(download.key)
        body["size"] = download.size if done else 0
        body["totalRecords"] = download.total
        body["numberDatasets"] = download.n_datasets if done else 0
        return body

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
            response = _json(THROTTLE_BODY, status=429)
        elif fault.status == 503:
            response = _text(503, "Service disabled for maintenance reasons")
        else:
            response = _text(fault.status, f"Simulated error {fault.status}")
        response.headers.update(headers)
        return response

    # --- occurrence search --------------------------------------------------------------------

    async def _search(self, request: web.Request) -> web.Response:
        try:
            return self._search_sync(request)
        except InvalidSearchError as exc:
            return _text(400, exc.gbif_message)

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
        limit = min(_int_param(limit_text, DEFAULT_LIMIT, "limit"), MAX_LIMIT)
        offset = _int_param(offset_text, 0, "offset")
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
        # the page's records are serialised straight to JSON text (same bytes as _json of the
        # record dicts, several times faster): the simulator's CPU must not be the bottleneck
        results = pop.records_json(indices[offset : offset + limit]) if limit else "[]"
        facet_results = []
        seen: set[str] = set()
        for name in facets:
            param = pop.facet_param(name)
            if param is None or param in seen:
                continue  # GBIF ignores unknown facets
            seen.add(param)
            options = per_facet.get(normalize_param(name), {})
            f_limit = _int_param(
                options.get("FACETLIMIT", facet_limit), DEFAULT_FACET_LIMIT, "facetLimit"
            )
            f_offset = _int_param(options.get("FACETOFFSET", facet_offset), 0, "facetOffset")
            mincount = _int_param(facet_mincount, 0, "facetMincount")
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
        head = _compact(
            {
                "offset": offset,
                "limit": limit,
                "endOfRecords": count <= offset + limit,
                "count": count,
            }
        )
        body = f'{head[:-1]},"results":{results},"facets":{_compact(facet_results)}}}'
        return web.Response(body=body.encode("utf-8"), content_type="application/json")

    async def _occurrence(self, request: web.Request) -> web.Response:
        index = self.population.index_of(request.match_info["key"])
        if index is None:
            return _text(404, f"Entity not found for uri: {request.path[3:]}")
        return _json(self.population.record(index))

    # --- species ------------------------------------------------------------------------------

    async def _species_match(self, request: web.Request) -> web.Response:
        name = request.query.get("name") or request.query.get("scientificName") or ""
        strict = request.query.get("strict", "false").lower() == "true"
        return _json(self.population.match_name(name, strict=strict))

    async def _species_suggest(self, request: web.Request) -> web.Response:
        limit = _int_param(request.query.get("limit"), 20, "limit")
        return _json(self.population.suggest(request.query.get("q", ""), limit=limit))

    # --- downloads ----------------------------------------------------------------------------

    def _find(self, key: str) -> _Download | None:
        with self._lock:
            return self._downloads.get(key)

    async def _download_meta(self, request: web.Request) -> web.Response:
        return await self._meta_response(self._find(request.match_info["key"]))

    async def _download_meta_doi(self, request: web.Request) -> web.Response:
        prefix, suffix = request.match_info["prefix"], request.match_info["suffix"]
        download = self._find(prefix)
        if download is not None and suffix == "citation":
            return _text(
                200,
                f"GBIF.org ({download.created:%d %B %Y}) GBIF Occurrence Download "
                f"https://doi.org/{download.doi}",
                "application/json",
            )
        with self._lock:
            key = self._dois.get(f"{prefix}/{suffix}".lower())
        return await self._meta_response(self._find(key) if key else None)

    async def _meta_response(self, download: _Download | None) -> web.Response:
        if download is None:
            return _text(404, "Download was not found")
        status = download.status
        if download.advancing and status in ("PREPARING", "RUNNING"):
            download.polls += 1
            if download.polls > self.polls_per_state:
                download.polls = 1
                status = "RUNNING" if status == "PREPARING" else "SUCCEEDED"
        if status in ("SUCCEEDED", "FILE_ERASED") and download.archive is None:
            await asyncio.to_thread(self._build_archive, download)
        if status != download.status:
            download.status = status
            download.modified = datetime.now(timezone.utc)
        return _json(self._metadata(download))

    def _authenticate(self, request: web.Request) -> str | web.Response:
        header = request.headers.get("Authorization", "")
        user = ""
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            if user and self.users.get(user) == password:
                return user
        response = _text(401, f"Failed to authenticate user {user}\r\n", None)
        response.headers["WWW-Authenticate"] = 'Basic realm="GBIF"'
        return response

    async def _create_download(self, request: web.Request) -> web.Response:
        user = self._authenticate(request)
        if isinstance(user, web.Response):
            return user
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return _text(400, "Invalid JSON in the download request body")
        if not isinstance(body, dict):
            return _text(400, "The download request body must be a JSON object")
        creator = str(body.get("creator") or user)
        if creator != user:
            return _text(401, f"Unauthorized: user {user} cannot create downloads for {creator}")
        fmt = str(body.get("format") or "SIMPLE_CSV").upper()
        if fmt not in FORMATS:
            return _text(400, f"Cannot parse {fmt} into a known DownloadFormat")
        predicate = body.get("predicate")
        try:
            mask = predicate_mask(self.population, predicate)
        except ConfigError as exc:
            return _text(400, str(exc))
        del mask
        stamped = _stamp_match_case(copy.deepcopy(predicate))
        fingerprint = json.dumps(stamped, sort_keys=True)
        with self._lock:
            mine = [d for d in self._downloads.values() if d.creator == user]
        for download in mine:
            same = json.dumps(download.predicate, sort_keys=True) == fingerprint
            if same and download.format == fmt and download.status in (*EXECUTING, "SUCCEEDED"):
                return _text(201, download.key, "application/json")
        running = sum(1 for d in mine if d.status in EXECUTING)
        if running >= self.max_running_downloads:
            return _text(
                420,
                f"User {user} has too many simultaneous downloads; "
                f"the limit is {self.max_running_downloads}",
            )
        key = self._register(predicate, fmt, user, "PREPARING", None, None)
        return _text(201, key, "application/json")

    async def _cancel_download(self, request: web.Request) -> web.Response:
        user = self._authenticate(request)
        if isinstance(user, web.Response):
            return user
        download = self._find(request.match_info["key"].removesuffix(".zip"))
        if download is None:
            return _text(404, "Download was not found")
        if download.status in EXECUTING:
            download.status = "CANCELLED"
            download.modified = datetime.now(timezone.utc)
        return web.Response(status=204)

    async def _download_file(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        for ext in (".zip", ".avro"):
            key = key.removesuffix(ext)
        download = self._find(key)
        if download is None:
            return _text(404, '"Download with this key not found."\n', "application/json")
        if download.status == "FILE_ERASED":
            return _text(
                410,
                '"This download was erased, but the metadata is retained."\n',
                "application/json",
            )
        location = f"{self.base_url}/archive/{key}.zip"
        response = _text(302, location)
        response.headers["Location"] = location
        response.headers["Last-Modified"] = download.modified.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return response

    async def _archive(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        download = self._find(name.removesuffix(".zip"))
        if download is None or download.status != "SUCCEEDED":
            return _text(404, "Not Found")
        path = await asyncio.to_thread(self._build_archive, download)
        cut = download.cut_after_bytes if download.cut_after_bytes is not None else None
        if cut is None:
            cut = self.cut_after_bytes
        if cut is not None and not download.cut_done and request.method == "GET":
            download.cut_done = True
            return await self._send_cut(request, path, cut)
        return web.FileResponse(path, headers={"Content-Type": "application/zip"})

    @staticmethod
    async def _send_cut(request: web.Request, path: Path, cut: int) -> web.StreamResponse:
        """Send the requested bytes with full headers, but close the connection after ``cut``."""
        size = (await asyncio.to_thread(path.stat)).st_size
        start, end = 0, size - 1
        status = 200
        range_header = request.headers.get("Range", "")
        if range_header.startswith("bytes="):
            first, _, last = range_header[6:].partition("-")
            if first.strip().isdigit():
                start = int(first)
                if last.strip().isdigit():
                    end = min(int(last), size - 1)
                status = 206
        response = web.StreamResponse(status=status)
        response.content_type = "application/zip"
        response.content_length = end - start + 1
        response.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        await response.prepare(request)
        with path.open("rb") as fh:
            fh.seek(start)
            await response.write(fh.read(max(0, min(cut, end - start + 1))))
        transport = request.transport
        if transport is not None:
            transport.close()  # the client sees the body end before Content-Length
        return response

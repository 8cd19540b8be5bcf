"""The occurrence-download side of the GBIF simulator: state, archives and endpoints.

:class:`DownloadsMixin` gives :class:`~gbif_dl.testing.simulator.GbifSimulator` its downloads:
registering them for tests (``add_download``), the status machine PREPARING -> RUNNING ->
SUCCEEDED over metadata polls, building DwC-A or SIMPLE_CSV archives on demand, Basic auth on
creation and cancellation, the 302 to the archive and archive transfers that can be cut
mid-body to test resuming.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import json
import tempfile
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from aiohttp import web

from gbif_dl.errors import ConfigError
from gbif_dl.gbif.downloads import DOWNLOAD_FORMATS
from gbif_dl.testing.archive import write_dwca
from gbif_dl.testing.population import Population
from gbif_dl.testing.predicates import predicate_mask, query_to_predicate, stamp_match_case
from gbif_dl.testing.sim_http import json_response, text_response

__all__ = ["EXECUTING", "FORMATS", "STATUSES", "Download", "DownloadsMixin"]

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


def _iso(moment: datetime) -> str:
    """GBIF's timestamp format: milliseconds and ``+00:00``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


@dataclass(slots=True)
class Download:
    """One occurrence download the simulator knows: its request, status and built archive."""

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


class DownloadsMixin:
    """:class:`~gbif_dl.testing.simulator.GbifSimulator` methods for occurrence downloads."""

    population: Population
    users: dict[str, str]
    seed: int
    max_running_downloads: int
    polls_per_state: int
    cut_after_bytes: int | None
    _lock: threading.Lock
    _downloads: dict[str, Download]
    _dois: dict[str, str]
    _download_counter: int
    _workdir: Path | None

    if TYPE_CHECKING:  # provided by GbifSimulator

        @property
        def base_url(self) -> str: ...

        @property
        def api_url(self) -> str: ...

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
        download = Download(
            key=key,
            doi=doi or self._doi_for(key),
            predicate=stamp_match_case(copy.deepcopy(predicate)),
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

    def _build_archive(self, download: Download) -> Path:
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

    def _write_simple(self, download: Download, indices: npt.NDArray[np.int64], path: Path) -> int:
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

    def _metadata(self, download: Download) -> dict[str, Any]:
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

    # --- downloads ----------------------------------------------------------------------------

    def _find(self, key: str) -> Download | None:
        with self._lock:
            return self._downloads.get(key)

    async def _download_meta(self, request: web.Request) -> web.Response:
        return await self._meta_response(self._find(request.match_info["key"]))

    async def _download_meta_doi(self, request: web.Request) -> web.Response:
        prefix, suffix = request.match_info["prefix"], request.match_info["suffix"]
        download = self._find(prefix)
        if download is not None and suffix == "citation":
            return text_response(
                200,
                f"GBIF.org ({download.created:%d %B %Y}) GBIF Occurrence Download "
                f"https://doi.org/{download.doi}",
                "application/json",
            )
        with self._lock:
            key = self._dois.get(f"{prefix}/{suffix}".lower())
        return await self._meta_response(self._find(key) if key else None)

    async def _meta_response(self, download: Download | None) -> web.Response:
        if download is None:
            return text_response(404, "Download was not found")
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
        return json_response(self._metadata(download))

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
        response = text_response(401, f"Failed to authenticate user {user}\r\n", None)
        response.headers["WWW-Authenticate"] = 'Basic realm="GBIF"'
        return response

    async def _create_download(self, request: web.Request) -> web.Response:
        user = self._authenticate(request)
        if isinstance(user, web.Response):
            return user
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return text_response(400, "Invalid JSON in the download request body")
        if not isinstance(body, dict):
            return text_response(400, "The download request body must be a JSON object")
        creator = str(body.get("creator") or user)
        if creator != user:
            return text_response(
                401, f"Unauthorized: user {user} cannot create downloads for {creator}"
            )
        fmt = str(body.get("format") or "SIMPLE_CSV").upper()
        if fmt not in FORMATS:
            return text_response(400, f"Cannot parse {fmt} into a known DownloadFormat")
        predicate = body.get("predicate")
        try:
            mask = predicate_mask(self.population, predicate)
        except ConfigError as exc:
            return text_response(400, str(exc))
        del mask
        stamped = stamp_match_case(copy.deepcopy(predicate))
        fingerprint = json.dumps(stamped, sort_keys=True)
        with self._lock:
            mine = [d for d in self._downloads.values() if d.creator == user]
        for download in mine:
            same = json.dumps(download.predicate, sort_keys=True) == fingerprint
            if same and download.format == fmt and download.status in (*EXECUTING, "SUCCEEDED"):
                return text_response(201, download.key, "application/json")
        running = sum(1 for d in mine if d.status in EXECUTING)
        if running >= self.max_running_downloads:
            return text_response(
                420,
                f"User {user} has too many simultaneous downloads; "
                f"the limit is {self.max_running_downloads}",
            )
        key = self._register(predicate, fmt, user, "PREPARING", None, None)
        return text_response(201, key, "application/json")

    async def _cancel_download(self, request: web.Request) -> web.Response:
        user = self._authenticate(request)
        if isinstance(user, web.Response):
            return user
        download = self._find(request.match_info["key"].removesuffix(".zip"))
        if download is None:
            return text_response(404, "Download was not found")
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
            return text_response(404, '"Download with this key not found."\n', "application/json")
        if download.status == "FILE_ERASED":
            return text_response(
                410,
                '"This download was erased, but the metadata is retained."\n',
                "application/json",
            )
        location = f"{self.base_url}/archive/{key}.zip"
        response = text_response(302, location)
        response.headers["Location"] = location
        response.headers["Last-Modified"] = download.modified.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return response

    async def _archive(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        download = self._find(name.removesuffix(".zip"))
        if download is None or download.status != "SUCCEEDED":
            return text_response(404, "Not Found")
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

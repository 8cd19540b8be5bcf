"""Hostile identifiers and archive servers (issue 21): keys, DOIs and archive sizes.

A server that answers a download's metadata with ``key: "../../victim_dir/victim"``, a DOI URL
with ``..`` segments, an archive URL whose body never ends. Each is served by a small loopback
HTTP server of the test (real HTTP; it records every request it gets): nothing outside the
cache folder is written or deleted, a malformed identifier never reaches the server, and an
archive download stops at its cap with an error that names the cap and how to raise it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gbif_dl import dwca
from gbif_dl._aio import run_sync
from gbif_dl.errors import ArchiveError, ConfigError, GbifApiError
from gbif_dl.gbif.client import GbifClient
from gbif_dl.gbif.downloads import FileTooLargeError, fetch_file
from gbif_dl.sources.archive import resolve_archive
from gbif_dl.sources.archive.resolve import MAX_ARCHIVE_BYTES_ENV, doi_to_gbif_key

KEY = "0022697-200613084148143"
HOSTILE_KEY = "../../victim_dir/victim"
#: The most the endless body sends before giving up (a guard of the test, far above any cap).
ENDLESS_GUARD = 64 << 20


class _Handler(BaseHTTPRequestHandler):
    """Answers from the server's ``routes``: path -> (status, headers, body or "endless")."""

    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, headers, body = route
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if body == "endless":  # HTTP/1.0: the body ends when the connection closes
            self.end_headers()
            chunk = b"PK" * (32 << 10)
            try:
                for _ in range(ENDLESS_GUARD // len(chunk)):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []
        self.routes: dict[str, tuple[int, dict[str, str], Any]] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def json(self, path: str, data: Any) -> None:
        self.routes[path] = (200, {"Content-Type": "application/json"}, json.dumps(data).encode())


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def _metadata(key: str, size: int | None = 1000) -> dict[str, Any]:
    return {
        "key": key,
        "doi": "10.15468/dl.abc123",
        "status": "SUCCEEDED",
        "size": size,
        "request": {"format": "DWCA"},
    }


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- hostile download metadata ------------------------------------------------------------------


@pytest.mark.parametrize("identifier", [KEY, "10.15468/dl.abc123"])
def test_hostile_key_in_download_metadata_touches_nothing(
    tmp_path: Path, server: _Server, identifier: str
) -> None:
    """The API answers ``key: "../../victim_dir/victim"``: GbifApiError naming the key, before
    any path is built; ``victim_dir/victim.zip`` (outside the cache) is untouched, nothing is
    written outside the cache, and no archive is asked for."""
    victim = tmp_path / "victim_dir" / "victim.zip"
    victim.parent.mkdir()
    victim.write_bytes(b"precious")
    cache = tmp_path / "cache" / "dwca"
    server.json(f"/v1/occurrence/download/{KEY}", _metadata(HOSTILE_KEY))
    server.json("/v1/occurrence/download/10.15468/dl.abc123", _metadata(HOSTILE_KEY))
    before = _tree(tmp_path)
    api = f"{server.base_url}/v1"
    with pytest.raises(GbifApiError, match=r"not .*download key") as info:
        resolve_archive(identifier, cache, api_url=api)
    assert HOSTILE_KEY in str(info.value)
    with pytest.raises(GbifApiError, match="refusing"):
        list(dwca.generate_urls(identifier, cache, api_url=api))
    assert victim.read_bytes() == b"precious"
    assert _tree(tmp_path) == before  # nothing written or deleted anywhere (the cache is empty)
    assert all("/request/" not in path for path in server.requests)


def test_metadata_answering_another_key_is_refused(tmp_path: Path, server: _Server) -> None:
    """Asked for one key, the server answers another (well-formed) one: refused, not cached
    under the other key's name."""
    other = "0000001-200613084148143"
    server.json(f"/v1/occurrence/download/{KEY}", _metadata(other))
    with pytest.raises(GbifApiError, match="not that download key"):
        resolve_archive(KEY, tmp_path / "cache", api_url=f"{server.base_url}/v1")
    assert not any((tmp_path / "cache").iterdir())


def test_doi_lookup_refuses_a_hostile_key(server: _Server) -> None:
    """``doi_to_gbif_key`` hands back only a well-formed key."""
    server.json("/v1/occurrence/download/10.15468/dl.abc123", _metadata(HOSTILE_KEY))
    with pytest.raises(GbifApiError, match="download key"):
        doi_to_gbif_key("10.15468/dl.abc123", api_url=f"{server.base_url}/v1")


# --- DOIs and keys with path segments -----------------------------------------------------------

TRAVERSING = [
    "https://doi.org/10.15468/dl.x/../../../../../admin/secret",
    "doi:10.15468/dl.x/../../../../../admin/secret",
    "10.15468/dl.x/../../../../../admin/secret",
    "https://doi.org/10.15468%2Fdl.x%2F..%2F..%2Fadmin",
    "10.15468/dl.x?admin=1",
    "10.15468/dl.x#frag",
    "10.1234/not-a-gbif-download",
    "../../admin/secret",
    "0022697-200613084148143/../../admin",
    "\u0660\u0660\u0662\u0662\u0666\u0669\u0667-200613084148143",  # Arabic-Indic digits
]


@pytest.mark.parametrize("identifier", TRAVERSING)
def test_malformed_dois_and_keys_never_reach_the_server(
    tmp_path: Path, server: _Server, identifier: str
) -> None:
    """A DOI with ``..`` segments (the issue's input first) or any identifier that is not a
    download key or a GBIF download DOI: ConfigError naming the expected forms, and not one
    request reaches the API host (counted on the loopback server)."""
    api = f"{server.base_url}/v1"
    server.json("/admin/secret", {"secret": True})
    with pytest.raises(ConfigError, match=r"10\.15468/dl\.") as info:
        resolve_archive(identifier, tmp_path / "cache", api_url=api)
    assert "0022697-200613084148143" in str(info.value)

    async def metadata() -> Any:
        async with GbifClient(api) as gbif:
            return await gbif.download_metadata(identifier)

    with pytest.raises(ConfigError, match=r"10\.15468/dl\."):
        run_sync(metadata())
    with pytest.raises(ConfigError):
        list(dwca.generate_urls(identifier, tmp_path / "cache", api_url=api))
    assert server.requests == []


# --- archive size caps --------------------------------------------------------------------------


def test_endless_archive_url_stops_at_the_cap(tmp_path: Path, server: _Server) -> None:
    """``--dwca http://host/endless.zip`` whose body never ends: the partial file stops at
    ``max_archive_bytes`` exactly, and the ArchiveError names the cap and how to raise it."""
    server.routes["/endless.zip"] = (200, {"Content-Type": "application/zip"}, "endless")
    cache = tmp_path / "cache"
    cap = 1 << 20
    with pytest.raises(ArchiveError) as info:
        resolve_archive(f"{server.base_url}/endless.zip", cache, max_archive_bytes=cap)
    message = str(info.value)
    assert f"max_archive_bytes={cap}" in message and MAX_ARCHIVE_BYTES_ENV in message
    parts = list(cache.iterdir())
    assert [p.name.endswith(".zip.part") for p in parts] == [True]
    assert parts[0].stat().st_size == cap
    assert set(_tree(tmp_path)) == {str(parts[0].relative_to(tmp_path))}


def test_endless_archive_through_the_public_api_and_the_environment(
    tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dwca.generate_urls`` (and the CLI) take the cap from ``GBIF_DL_MAX_ARCHIVE_BYTES``;
    a malformed value is a ConfigError naming the variable."""
    server.routes["/endless.zip"] = (200, {}, "endless")
    monkeypatch.setenv(MAX_ARCHIVE_BYTES_ENV, "300000")
    with pytest.raises(ArchiveError, match="max_archive_bytes=300000"):
        list(dwca.generate_urls(f"{server.base_url}/endless.zip", tmp_path / "cache"))
    (part,) = (tmp_path / "cache").iterdir()
    assert part.stat().st_size == 300_000
    monkeypatch.setenv(MAX_ARCHIVE_BYTES_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_ARCHIVE_BYTES_ENV):
        resolve_archive(f"{server.base_url}/endless.zip", tmp_path / "cache")


def test_fetch_file_max_bytes(tmp_path: Path, server: _Server) -> None:
    """``fetch_file(max_bytes=...)``: an endless body stops at the cap (FileTooLargeError
    naming it, the part file kept at the cap); a Content-Length above the cap is refused
    before anything is written; a body within the cap is fetched."""
    server.routes["/endless.zip"] = (200, {}, "endless")
    server.routes["/big.zip"] = (200, {}, b"x" * 5000)
    server.routes["/small.zip"] = (200, {}, b"y" * 100)
    with pytest.raises(FileTooLargeError, match="max_bytes") as info:
        run_sync(fetch_file(f"{server.base_url}/endless.zip", tmp_path / "e.zip", max_bytes=4096))
    assert info.value.max_bytes == 4096 and "4096" in str(info.value)
    assert (tmp_path / "e.zip.part").stat().st_size == 4096
    with pytest.raises(FileTooLargeError):
        run_sync(fetch_file(f"{server.base_url}/big.zip", tmp_path / "b.zip", max_bytes=4096))
    assert not (tmp_path / "b.zip.part").exists() and not (tmp_path / "b.zip").exists()
    path = run_sync(fetch_file(f"{server.base_url}/small.zip", tmp_path / "s.zip", max_bytes=4096))
    assert path.read_bytes() == b"y" * 100


def test_archive_longer_than_its_metadata_size_is_refused(tmp_path: Path, server: _Server) -> None:
    """The metadata announces 1000 bytes and the archive never ends: refused as it arrives,
    the partial file removed, nothing left in the cache."""
    server.json(f"/v1/occurrence/download/{KEY}", _metadata(KEY, size=1000))
    server.routes[f"/v1/occurrence/download/request/{KEY}.zip"] = (200, {}, "endless")
    cache = tmp_path / "cache"
    with pytest.raises(GbifApiError, match="expected 1000"):
        resolve_archive(KEY, cache, api_url=f"{server.base_url}/v1")
    assert list(cache.iterdir()) == []


def test_archive_of_unknown_size_from_metadata_is_held_to_the_cap(
    tmp_path: Path, server: _Server
) -> None:
    """Metadata without a size: the download is held to ``max_archive_bytes``."""
    server.json(f"/v1/occurrence/download/{KEY}", _metadata(KEY, size=None))
    server.routes[f"/v1/occurrence/download/request/{KEY}.zip"] = (200, {}, "endless")
    cache = tmp_path / "cache"
    with pytest.raises(ArchiveError, match="max_archive_bytes=65536"):
        resolve_archive(KEY, cache, api_url=f"{server.base_url}/v1", max_archive_bytes=65536)
    assert (cache / f"{KEY}.zip.part").stat().st_size == 65536

"""Where an archive is: a download key, a DOI, a zip URL or a path, resolved to a local zip.

Keys and DOIs go through GBIF's download metadata; files are streamed into a cache folder,
resumed after a cut, checked, and not fetched again once complete. :func:`create_download`
asks GBIF for a new download and waits for it.

Example:
    >>> resolve_archive("tests/data/dwca-0022697-200613084148143.zip").fetched
    False
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbif_dl.errors import ArchiveError, ConfigError, GbifApiError, TooManyDownloadsError
from gbif_dl.records import safe_component

__all__ = [
    "DEFAULT_MAX_ARCHIVE_BYTES",
    "MAX_ARCHIVE_BYTES_ENV",
    "MEDIALESS_FORMATS",
    "TOO_MANY_DOWNLOADS_WAIT_S",
    "ResolvedArchive",
    "create_download",
    "default_cache_dir",
    "doi_to_gbif_key",
    "is_doi",
    "max_archive_bytes",
    "resolve_archive",
]

logger = logging.getLogger(__name__)

#: First wait after GBIF refused a new download because too many are running (HTTP 420/429).
TOO_MANY_DOWNLOADS_WAIT_S = 60.0
#: The most an archive of unknown size (a plain URL, or metadata without a size) may take on
#: disk: 64 GiB, well above any DWCA of media records. A download whose metadata gives its size
#: is held to that size instead.
DEFAULT_MAX_ARCHIVE_BYTES = 64 << 30
#: The environment variable that sets the cap in bytes (``GBIF_DL_MAX_ARCHIVE_BYTES=200e9``).
MAX_ARCHIVE_BYTES_ENV = "GBIF_DL_MAX_ARCHIVE_BYTES"


def max_archive_bytes(value: int | None = None) -> int:
    """The size cap of archive downloads: ``value``, else ``$GBIF_DL_MAX_ARCHIVE_BYTES``, else
    :data:`DEFAULT_MAX_ARCHIVE_BYTES`.

    Raises:
        ConfigError: the cap is not a positive number of bytes.

    Example:
        >>> max_archive_bytes(10**9), max_archive_bytes() > 0
        (1000000000, True)
    """
    raw: object = value if value is not None else os.environ.get(MAX_ARCHIVE_BYTES_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_ARCHIVE_BYTES
    try:
        cap = int(float(raw)) if isinstance(raw, str) else int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        cap = 0
    if cap <= 0:
        raise ConfigError(
            f"max_archive_bytes must be a positive number of bytes, got {raw!r} "
            f"(argument max_archive_bytes= or ${MAX_ARCHIVE_BYTES_ENV})"
        )
    return cap


def _too_large(url: str, cap: int, exc: Exception) -> ArchiveError:
    from gbif_dl.progress import format_bytes

    return ArchiveError(
        f"the archive at {url} is larger than max_archive_bytes={cap} ({format_bytes(cap)}); "
        "the transfer stopped at the cap. If it is a genuine archive, raise the cap "
        f"(resolve_archive(..., max_archive_bytes=...) or {MAX_ARCHIVE_BYTES_ENV}=<bytes>) and "
        f"run again: the partial file is resumed ({exc})",
        path=url,
    )


def is_doi(identifier: str) -> bool:
    """True when ``identifier`` is a DOI (``10.x/y``, ``doi:10.x/y``, ``https://doi.org/...``).

    Example:
        >>> is_doi("10.15468/dl.vnm42s"), is_doi("xyz")
        (True, False)
    """
    from gbif_dl.gbif.params import normalize_doi

    return normalize_doi(identifier) is not None


def doi_to_gbif_key(doi: str, *, api_url: str | None = None) -> str:
    """The GBIF download key of a download DOI, from GBIF's download metadata.

    Example:
        >>> doi_to_gbif_key("10.15468/dl.vnm42s")  # doctest: +SKIP
        '0117522-200613084148143'
    """
    from gbif_dl._aio import run_sync
    from gbif_dl.gbif.client import GbifClient

    async def lookup() -> str:
        async with GbifClient(api_url) as gbif:
            return str((await gbif.download_metadata(doi))["key"])

    return run_sync(lookup())


def default_cache_dir() -> Path:
    """The user's cache directory for downloaded archives (kept between runs).

    ``$GBIF_DL_CACHE`` wins; otherwise ``%LOCALAPPDATA%\\gbif-dl\\dwca`` on Windows,
    ``~/Library/Caches/gbif-dl/dwca`` on macOS and ``$XDG_CACHE_HOME/gbif-dl/dwca`` (default
    ``~/.cache``) elsewhere.

    Example:
        >>> default_cache_dir().name
        'dwca'
    """
    env = os.environ.get("GBIF_DL_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gbif-dl" / "dwca"


#: Download formats whose zip has no multimedia extension, hence no media URLs.
MEDIALESS_FORMATS = frozenset({"SIMPLE_CSV", "SIMPLE_PARQUET", "SIMPLE_AVRO", "SPECIES_LIST"})


@dataclass(frozen=True, slots=True)
class ResolvedArchive:
    """Where an identifier's archive is on disk.

    Attributes:
        path: the zip file.
        key: the GBIF download key (``None`` for a local file or a plain URL).
        fetched: True when gbif-dl stored the file in its cache (so ``delete=`` may remove it).
        metadata: GBIF's download metadata, when the identifier was a key or DOI.

    Example:
        >>> ResolvedArchive(Path("a.zip"), None, False).fetched
        False
    """

    path: Path
    key: str | None
    fetched: bool
    metadata: dict[str, Any] | None = None


_cap = max_archive_bytes  # resolve_archive's keyword of the same name hides the function


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _names_a_doi(url: str) -> bool:
    """A doi.org URL that is not a GBIF download DOI: refused, never fetched as a zip URL."""
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "").lower() in ("doi.org", "dx.doi.org")


def _not_ready(key: str, status: str, meta: Mapping[str, Any], api_url: str) -> Exception:
    from gbif_dl.errors import DownloadNotReadyError

    if status == "FILE_ERASED":
        text = (
            f"GBIF download {key} is FILE_ERASED: its file was deleted (GBIF keeps files about "
            "six months). Request it again: gbif_dl.dwca.request(<the same query>), or "
            f"'Rerun query' on https://www.gbif.org/occurrence/download/{key}"
        )
    elif status in ("PREPARING", "RUNNING", "SUSPENDED"):
        text = (
            f"GBIF download {key} is {status}, not SUCCEEDED yet; wait for it "
            "(GbifClient.wait_for_download) and try again"
        )
    else:
        text = (
            f"GBIF download {key} is {status or 'of unknown status'}, not SUCCEEDED, so it has "
            "no file; request it again"
        )
    err = DownloadNotReadyError(text, url=f"{api_url}/occurrence/download/{key}", status=200)
    err.status_name = status
    return err


def _check_metadata(meta: Mapping[str, Any], api_url: str) -> tuple[str, int | None]:
    """The key and size of a SUCCEEDED DWCA download, or the error that explains why not.

    The key names the cached file next: anything but a download key is refused first.
    """
    from gbif_dl.gbif.params import is_download_key

    key = str(meta.get("key") or "")
    if not is_download_key(key):
        raise GbifApiError(
            f"GBIF's download metadata names the key {key[:100]!r}, which is not a download "
            "key (like 0022697-200613084148143); refusing to use it for a file name",
            url=f"{api_url}/occurrence/download",
            status=200,
        )
    status = str(meta.get("status") or "").upper()
    request = meta.get("request") if isinstance(meta.get("request"), Mapping) else {}
    fmt = str((request or {}).get("format") or "DWCA").upper()
    if fmt in MEDIALESS_FORMATS:
        raise ArchiveError(
            f"GBIF download {key} has format {fmt}, which carries no media URLs (no multimedia "
            "extension); request a DWCA download instead, e.g. gbif_dl.dwca.request(query)",
            path=key,
        )
    if status != "SUCCEEDED":
        raise _not_ready(key, status, meta, api_url)
    size = meta.get("size")
    return key, int(size) if isinstance(size, int) and size > 0 else None


def _is_complete(path: Path, size: int | None) -> bool:
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "meta.xml" in {n.lower() for n in archive.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


async def _fetch_key(
    ident: str, root: Path, api_url: str | None, cap: int
) -> tuple[Path, str, dict[str, Any]]:
    from gbif_dl.gbif.client import GbifClient
    from gbif_dl.gbif.downloads import FileTooLargeError, fetch_download

    async with GbifClient(api_url) as gbif:
        meta = await gbif.download_metadata(ident)
        key, size = _check_metadata(meta, gbif.api_url)
        dest = root / f"{key}.zip"
        if _is_complete(dest, size):
            logger.info("using the cached archive %s", dest)
            return dest, key, meta
        if dest.exists():
            logger.warning("cached archive %s is incomplete or corrupt; fetching it again", dest)
            dest.unlink()
        logger.info("fetching GBIF download %s (%s bytes) to %s", key, size or "?", dest)
        try:  # held to the announced size, else to the cap
            await fetch_download(
                gbif,
                key,
                dest,
                expected_size=size,
                progress=_progress_logger(key),
                max_bytes=cap if size is None else None,
            )
        except FileTooLargeError as exc:
            raise _too_large(exc.url, cap, exc) from None
        if not _is_complete(dest, size):
            raise ArchiveError(
                f"GBIF download {key} arrived corrupt ({dest}); it was removed, try again",
                path=str(dest),
            )
        return dest, key, meta


def _progress_logger(name: str) -> Callable[[int, int | None], None]:
    """A progress callback that logs every 10 % (the CLI draws bars from the logs it owns)."""
    state = {"next": 0.1}

    def report(done: int, total: int | None) -> None:
        if total and done / total >= state["next"]:
            logger.info("%s: %d of %d bytes (%.0f %%)", name, done, total, 100 * done / total)
            state["next"] = math.floor(done / total * 10 + 1) / 10

    return report


def _url_file_name(url: str) -> str:
    from urllib.parse import urlsplit

    tail = urlsplit(url).path.rsplit("/", 1)[-1]
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:12]
    if tail.lower().endswith(".zip") and tail == safe_component(tail):
        return f"{tail[:-4]}-{digest}.zip"
    return f"archive-{digest}.zip"


async def _fetch_url(url: str, root: Path, cap: int) -> Path:
    """Fetch a zip at ``url`` into the cache with the client's one resumable file fetch."""
    from gbif_dl.gbif.downloads import FileTooLargeError, fetch_file

    dest = root / _url_file_name(url)
    if _is_complete(dest, None):
        logger.info("using the cached archive %s", dest)
        return dest
    try:
        await fetch_file(url, dest, progress=_progress_logger(dest.name), max_bytes=cap)
    except FileTooLargeError as exc:
        raise _too_large(url, cap, exc) from None
    except GbifApiError as exc:
        if exc.status and exc.status >= 400:  # the server said no: the URL itself is wrong
            raise GbifApiError(
                f"fetching the archive {url} failed with HTTP {exc.status}; check the URL",
                url=url,
                status=exc.status,
            ) from exc
        raise ArchiveError(
            f"fetching {url} keeps failing ({exc}); the partial file is kept and resumed next time",
            path=str(dest) + ".part",
        ) from exc
    if not _is_complete(dest, None):
        dest.unlink()
        raise ArchiveError(
            f"{url} is not a valid Darwin Core Archive zip (corrupt, or not an archive); "
            "it was removed",
            path=url,
        )
    return dest


def resolve_archive(
    identifier: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    api_url: str | None = None,
    max_archive_bytes: int | None = None,
) -> ResolvedArchive:
    """Find or fetch the archive of ``identifier``: a download key, a DOI, a zip URL or a path.

    Keys and DOIs are resolved through GBIF's download metadata (a download that is not
    SUCCEEDED raises :class:`~gbif_dl.errors.DownloadNotReadyError` with its status). Files are
    streamed to ``root`` (default :func:`default_cache_dir`), resumed with ``Range`` after a
    cut, checked (size and zip directory) and not fetched again once complete. A download is
    held to the size its metadata announces; a plain URL (or metadata without a size) to
    ``max_archive_bytes`` (default ``$GBIF_DL_MAX_ARCHIVE_BYTES``, else 64 GiB).

    Raises:
        ConfigError: ``identifier`` is none of the accepted forms.
        DownloadNotReadyError: the download is not SUCCEEDED (``.status_name``).
        ArchiveError: a media-less format (SIMPLE_CSV, ...), a corrupt file, or an archive
            larger than ``max_archive_bytes`` (the message says how to raise the cap).
        GbifApiError: GBIF answered with an error (unknown key: 404).

    Example:
        >>> resolve_archive("tests/data/dwca-0022697-200613084148143.zip").fetched
        False
    """
    if isinstance(identifier, os.PathLike) or (
        isinstance(identifier, str) and not _is_url(identifier) and Path(identifier).is_file()
    ):
        path = Path(identifier)
        if not path.is_file():
            raise ConfigError(f"archive file {path} does not exist; check the path")
        return ResolvedArchive(path, None, False)
    if not isinstance(identifier, str):
        raise ConfigError(
            f"identifier must be a download key, DOI, URL or path, not {type(identifier).__name__}"
        )
    from gbif_dl._aio import run_sync
    from gbif_dl.gbif.params import parse_download_id

    cap = _cap(max_archive_bytes)
    folder = Path(root).expanduser() if root is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    text = identifier.strip()
    try:
        _, ident = parse_download_id(text)
    except ConfigError:
        if not _is_url(text) or _names_a_doi(text):
            raise ConfigError(
                f"{identifier!r} is not an existing file, a URL, a GBIF download key "
                "(0022697-200613084148143) or a GBIF download DOI (10.15468/dl. followed by "
                "letters and digits, e.g. 10.15468/dl.abc123 or https://doi.org/10.15468/dl.abc123)"
                "; check it"
            ) from None
        return ResolvedArchive(run_sync(_fetch_url(text, folder, cap)), None, True)
    path, key, meta = run_sync(_fetch_key(ident, folder, api_url, cap))
    return ResolvedArchive(path, key, True, meta)


def create_download(
    predicate: Mapping[str, Any],
    *,
    user: str | None = None,
    password: str | None = None,
    api_url: str | None = None,
    poll_interval_s: float = 15.0,
    max_interval_s: float = 300.0,
    timeout_s: float | None = None,
    too_many_wait_s: float = TOO_MANY_DOWNLOADS_WAIT_S,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    log: logging.Logger = logger,
) -> str:
    """Ask GBIF for a DWCA download of ``predicate``, wait until it succeeded; its key.

    A "too many downloads" refusal (HTTP 420/429) waits ``too_many_wait_s`` (doubling up to
    ``max_interval_s``) and asks again; polling starts at ``poll_interval_s``. ``log`` is
    where the waits are told (the caller's logger: ``gbif_dl.dwca`` for ``dwca.request``).

    Raises:
        DownloadNotReadyError: the download failed, was cancelled, or ``timeout_s`` passed.

    Example:
        >>> create_download({"type": "equals", "key": "TAXON_KEY", "value": "212"},
        ...                 user="me", password="secret")  # doctest: +SKIP
        '0000001-260101000000000'
    """
    import asyncio  # here: the archive reader (and its worker process) never fetches

    from gbif_dl._aio import run_sync
    from gbif_dl.gbif.client import GbifClient

    async def create_and_wait() -> str:
        async with GbifClient(api_url, user=user, password=password) as gbif:
            started = time.monotonic()
            wait = too_many_wait_s
            while True:
                try:
                    key = await gbif.request_download(predicate, format="DWCA")
                    break
                except TooManyDownloadsError as exc:
                    waited = time.monotonic() - started
                    if timeout_s is not None and waited + wait > timeout_s:
                        raise
                    log.warning("%s; trying again in %.0f s", exc, wait)
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, max_interval_s)
            log.info("GBIF download %s requested; waiting for it", key)
            remaining = (
                None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started))
            )
            await gbif.wait_for_download(
                key,
                poll_interval_s=poll_interval_s,
                max_interval_s=max_interval_s,
                timeout_s=remaining,
                on_status=on_status,
            )
            return key

    return run_sync(create_and_wait())

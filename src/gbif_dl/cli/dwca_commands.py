"""``gbif-dl dwca request|status|fetch``: GBIF occurrence downloads (Darwin Core Archives).

Example:
    >>> print_meta({"key": "0001-1", "status": "SUCCEEDED", "size": 2048})
    key     0001-1
    status  SUCCEEDED
    size    2.0 KiB
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gbif_dl.cli.exits import EXIT_OK
from gbif_dl.cli.logs import logger
from gbif_dl.cli.settings import run_config
from gbif_dl.errors import ConfigError
from gbif_dl.progress import Meter, format_bytes

__all__ = ["cmd_dwca_fetch", "cmd_dwca_request", "cmd_dwca_status", "print_meta"]

_GONE = ("KILLED", "CANCELLED", "FAILED", "FILE_ERASED")


def _client(api_url: str | None) -> Any:
    from gbif_dl.gbif.client import GbifClient

    return GbifClient(api_url)


def print_meta(meta: Mapping[str, Any]) -> None:
    """Print a download's metadata as aligned ``name  value`` lines (empty ones left out).

    Example:
        >>> print_meta({"key": "1-2", "doi": None})
        key  1-2
    """
    fields = [
        ("key", meta.get("key")),
        ("status", meta.get("status")),
        ("doi", meta.get("doi")),
        ("records", meta.get("totalRecords")),
        ("datasets", meta.get("numberDatasets")),
        ("size", format_bytes(int(meta["size"])) if meta.get("size") else None),
        ("format", (meta.get("request") or {}).get("format")),
        ("created", meta.get("created")),
        ("erase after", meta.get("eraseAfter")),
    ]
    shown = [(k, v) for k, v in fields if v not in (None, "")]
    width = max(len(k) for k, _ in shown) if shown else 0
    from gbif_dl.report.text import printable  # values come from the server: no raw escapes

    for name, value in shown:
        print(f"{name.ljust(width)}  {printable(value)}")


def cmd_dwca_request(args: argparse.Namespace) -> int:
    """``gbif-dl dwca request``: ask GBIF to prepare a download of a query; print its key.

    Example:
        >>> cmd_dwca_request(args)  # doctest: +SKIP
        0
    """
    from gbif_dl._aio import run_sync
    from gbif_dl.gbif.client import PASSWORD_ENV, USER_ENV
    from gbif_dl.gbif.params import to_predicate

    config = run_config(args)
    if config.queries is None:
        raise ConfigError(
            "a download request needs a query: a query file with 'queries', or --query NAME=VALUE"
        )
    if not os.environ.get(USER_ENV) or not os.environ.get(PASSWORD_ENV):
        raise ConfigError(
            f"GBIF downloads need an account: set the environment variables {USER_ENV} and "
            f"{PASSWORD_ENV} (never pass passwords as flags); register at https://www.gbif.org"
        )
    query = dict(config.queries)
    if config.mediatype:
        query.setdefault("mediaType", config.mediatype)
    predicate = to_predicate(query)

    async def run() -> tuple[str, dict[str, Any] | None]:
        async with _client(config.api_url) as client:
            key = await client.request_download(predicate, format=args.format)
            print(key, flush=True)
            if not args.wait:
                return key, None
            meta = await client.wait_for_download(
                key, poll_interval_s=args.poll_interval, timeout_s=args.timeout
            )
            return key, meta

    key, meta = run_sync(run())
    if meta is None:
        logger.info(
            "GBIF is preparing download %s; check with `gbif-dl dwca status %s`, then "
            "`gbif-dl dwca fetch %s`",
            key,
            key,
            key,
        )
    else:
        print_meta(meta)
    return EXIT_OK


def cmd_dwca_status(args: argparse.Namespace) -> int:
    """``gbif-dl dwca status KEY|DOI``: a download's status, size and DOI.

    Example:
        >>> cmd_dwca_status(args)  # doctest: +SKIP
        0
    """
    from gbif_dl._aio import run_sync

    async def run() -> dict[str, Any]:
        async with _client(args.api_url) as client:
            meta: dict[str, Any] = await client.download_metadata(args.identifier)
            return meta

    print_meta(run_sync(run()))
    return EXIT_OK


def _not_ready(key: str, status: str, wait: bool) -> Exception | None:
    """The error for a download that is not SUCCEEDED (None: wait for it)."""
    from gbif_dl.errors import DownloadNotReadyError

    if wait and status not in _GONE:
        return None
    if status == "FILE_ERASED":
        hint = "its file was deleted; request it again with `gbif-dl dwca request` and the query"
    elif status in _GONE:
        hint = "request it again with `gbif-dl dwca request`"
    else:
        hint = "wait for it with --wait, or run this command again later"
    err = DownloadNotReadyError(
        f"download {key} is {status or 'of unknown status'}, not SUCCEEDED; {hint}"
    )
    err.status_name = status
    return err


def cmd_dwca_fetch(args: argparse.Namespace) -> int:
    """``gbif-dl dwca fetch KEY|DOI``: fetch a prepared download's zip (resumes a partial file).

    Example:
        >>> cmd_dwca_fetch(args)  # doctest: +SKIP
        0
    """
    from gbif_dl._aio import run_sync

    async def run() -> Path:
        async with _client(args.api_url) as client:
            meta = await client.download_metadata(args.identifier)
            key = str(meta.get("key") or args.identifier)
            status = str(meta.get("status", "")).upper()
            if status != "SUCCEEDED":
                error = _not_ready(key, status, args.wait)
                if error is not None:
                    raise error
                logger.info("download %s is %s; waiting", key, status)
                meta = await client.wait_for_download(
                    key, poll_interval_s=args.poll_interval, timeout_s=args.timeout
                )
            out = Path(args.output)
            dest = out if out.suffix.lower() == ".zip" else out / f"{key}.zip"
            size = int(meta["size"]) if meta.get("size") else None
            with Meter(f"archive {key}", total=size, unit="B", scale_bytes=True) as meter:
                return await client.fetch_download(
                    key, dest, expected_size=size, progress=meter.set_done
                )

    path = run_sync(run())
    print(path)
    logger.info("next: gbif-dl download --dwca %s --label speciesKey -o data", path)
    return EXIT_OK

"""gbif-dl 0.1.1's ``gbif_dl.stores.dl_async`` (also ``gbif_dl.dl_async``): its ``download``.

A thin alias over :func:`gbif_dl.io.download` with 0.1.1's signature: ``tcp_connections`` is
the number of requests in flight (``concurrency``), ``retries`` counts attempts (1 = one try),
``loglevel`` sets the ``gbif_dl`` loggers' level for the call (``"ERROR"`` or above: no progress
bar) and ``error_log_path`` receives the failed URLs. ``nb_workers`` and ``batch_size`` sized
0.1.1's worker queue; today's engine sizes its own work, so they are accepted and not used.

Example:
    >>> import gbif_dl
    >>> stats = gbif_dl.dl_async.download(urls, root="data", loglevel="ERROR")  # doctest: +SKIP
    >>> stats["success"], stats["failed"], stats["skipped"]  # doctest: +SKIP
    (120, 2, 0)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError

__all__ = ["download"]


def _level(loglevel: str | int) -> int:
    if isinstance(loglevel, int):
        return loglevel
    level = logging.getLevelName(str(loglevel).upper())
    if not isinstance(level, int):
        raise ConfigError(
            f"loglevel must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {loglevel!r}"
        )
    return level


@contextmanager
def _package_level(level: int) -> Iterator[None]:
    package = logging.getLogger("gbif_dl")
    saved = package.level
    package.setLevel(level)
    try:
        yield
    finally:
        package.setLevel(saved)


def _write_errors(stats: Any, path: str | os.PathLike[str]) -> None:
    """One ``url<TAB>reason`` line per failed item of the dataset's manifest."""
    import pyarrow.parquet as pq

    lines: list[str] = []
    manifest = Path(str(stats["manifest"])) if stats.get("manifest") else None
    if manifest is not None and manifest.is_file():
        table = pq.read_table(manifest, columns=["url", "status", "reason"]).to_pylist()
        lines = [f"{r['url']}\t{r['reason'] or ''}" for r in table if r["status"] == "failed"]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def download(
    items: Any,
    root: str | os.PathLike[str] = "data",
    tcp_connections: int = 128,
    nb_workers: int = 128,
    batch_size: int = 16,
    retries: int = 1,
    loglevel: str | int = "INFO",
    error_log_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    is_valid_file: Callable[[bytes], bool] | None = None,
    proxy: str | None = None,
    random_subsets: Mapping[str, float] | None = None,
) -> Any:
    """Download ``items`` into ``root/[subset/]label/<basename>.<ext>``; gbif-dl 0.1.1's call.

    Args:
        items: records or URLs: a list, a generator, an async generator, or a text file path.
        root: the output folder.
        tcp_connections: requests in flight at once (today's ``concurrency``).
        nb_workers, batch_size: accepted for 0.1.1 code; the engine sizes its own work.
        retries: attempts per item (1: one try, no retry).
        loglevel: level of the ``gbif_dl`` loggers during the call; ``"ERROR"`` and above
            hide the progress bar, ``"CRITICAL"`` hides everything.
        error_log_path: a file that receives ``url<TAB>reason`` for every failed item.
        overwrite, is_valid_file, proxy, random_subsets: as in :func:`gbif_dl.io.download`.

    Returns:
        The download statistics (``stats["success"]``, ``["failed"]``, ``["skipped"]``...), a
        :class:`gbif_dl.io.DownloadStats`.

    Example:
        >>> download(["http://127.0.0.1:9/a.jpg"], root="x", retries=0)  # doctest: +SKIP
    """
    from gbif_dl import io

    del nb_workers, batch_size  # 0.1.1's queue sizes: nothing to map them onto
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries counts attempts (1 = one try), got {retries!r}")
    level = _level(loglevel)
    with _package_level(level):
        stats = io.download(
            items,
            root,
            random_subsets=random_subsets,
            retries=max(retries - 1, 0),
            overwrite=overwrite,
            is_valid_file=is_valid_file,
            proxy=proxy,
            concurrency=tcp_connections,
            progress=None if level <= logging.INFO else False,
            verbose=level <= logging.INFO,
        )
    if error_log_path is not None:
        _write_errors(stats, error_log_path)
    return stats

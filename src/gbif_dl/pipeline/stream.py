"""The streaming download: every record through one :class:`~gbif_dl.pipeline.run.Run`.

The path of ``download(...)`` without ``runner=``: one process, the input read as it comes,
no shard files.

Example:
    >>> import tempfile
    >>> from gbif_dl._aio import run_sync
    >>> from gbif_dl.options import DownloadOptions
    >>> from gbif_dl.testing.mediahost import MediaHosts
    >>> with MediaHosts(n_hosts=1) as hosts:
    ...     urls = [f"{hosts.base_urls[0]}/media/1/{i}.jpg" for i in range(2)]
    ...     options = DownloadOptions(root=tempfile.mkdtemp(), progress=False)
    ...     stats = run_sync(download_stream(urls, options))
    >>> stats.success, stats.failed
    (2, 0)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gbif_dl.errors import OutputError
from gbif_dl.manifest import MANIFEST_NAME
from gbif_dl.options import DownloadOptions
from gbif_dl.pipeline.inputs import as_async_items
from gbif_dl.pipeline.quotas import QuotaGate
from gbif_dl.pipeline.root import locked, prepare_root
from gbif_dl.pipeline.run import Run
from gbif_dl.pipeline.stats import DownloadStats
from gbif_dl.progress import Progress
from gbif_dl.storage.location import is_store_root
from gbif_dl.storage.run import download_to_store
from gbif_dl.writers.registry import make_writer

__all__ = ["download_stream", "log_stats"]

logger = logging.getLogger(__name__)


def log_stats(stats: DownloadStats, what: str = "") -> None:
    """One INFO line about a finished download.

    Example:
        >>> log_stats(DownloadStats(success=1, root="data"))
    """
    logger.info(
        "%sdownloaded %d, failed %d%s, skipped %d in %.1f s into %s%s",
        what,
        stats.success,
        stats.failed,
        f" ({stats.not_retried} from before, not requested again)" if stats.not_retried else "",
        stats.skipped,
        stats.elapsed_s,
        stats.root,
        f"; failures: {stats.reasons}" if stats.reasons else "",
    )


async def download_stream(items: Any, options: DownloadOptions) -> DownloadStats:
    """Download ``items`` (any accepted input) into ``options.root`` in one streaming run.

    Raises:
        ConfigError: bad input, before any I/O.
        OutputError: the root cannot be used, or the disk filled up (after the manifest is
            written, so a rerun continues).

    Example:
        >>> stats = run_sync(download_stream(urls, DownloadOptions(root="data")))  # doctest: +SKIP
    """
    if is_store_root(options.root):  # s3://... : the same run over a local work folder
        return await download_to_store(items, options)
    started = time.monotonic()
    source, total = as_async_items(items)
    root = prepare_root(options.root)
    with locked(root):
        run = Run(
            root,
            writer=make_writer(options.output, root, options.writer_options()),
            assign=options.assigner(),
            overwrite=options.overwrite,
            retry_failed=options.retry_failed,
            fail_threshold=options.fail_threshold,
            verbose=options.verbose,
            progress=Progress(total=total, mode=options.progress),
            quotas=QuotaGate(short_streams=options.short_streams),
            content=options.content_policy(),
        )
        counters = await run.execute(source, options.fetch)
    stats = counters.stats(
        elapsed_s=time.monotonic() - started,
        manifest=str(root / MANIFEST_NAME),
        root=str(root),
        streams=run.streams,
    )
    log_stats(stats)
    if run.fatal is not None:
        raise OutputError(
            f"the disk under {str(root)!r} is full ({run.fatal.strerror or run.fatal}); "
            f"{stats.success} files were stored and the manifest records every finished item. "
            "Free some space and rerun the same command to continue"
        ) from run.fatal
    return stats

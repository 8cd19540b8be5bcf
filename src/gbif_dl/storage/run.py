"""The streaming download into a store root: the one core over a local work folder, mirrored.

``download(items, root="s3://bucket/ds", output="webdataset", storage_options=...)`` comes
here (from :func:`gbif_dl.pipeline.stream.download_stream`). The run is the usual
:class:`~gbif_dl.pipeline.run.Run` over a local work folder (the journal, the manifest being
merged, the shard being filled), with a store writer (:mod:`gbif_dl.storage.writers`) that
uploads each finished object whole:

1. connect and list the root (a missing bucket or credentials fail here, before any request);
2. pull the store's state into the work folder (:func:`~gbif_dl.storage.state.pull_state`);
3. run, uploading the journal as part objects every few seconds;
4. push ``manifest.parquet``, ``ATTRIBUTION.csv``, ``CITATION.txt`` and ``classes.json``.

Killed at any moment, the store holds whole objects only, and a rerun (from any machine) skips
every image the store holds and fetches the rest.

Example:
    >>> import tempfile
    >>> from gbif_dl._aio import run_sync
    >>> from gbif_dl.options import DownloadOptions
    >>> from gbif_dl.testing.mediahost import MediaHosts
    >>> with MediaHosts(n_hosts=1) as hosts:
    ...     urls = [f"{hosts.base_urls[0]}/media/1/{i}.jpg" for i in range(3)]
    ...     options = DownloadOptions(root="memory://doc-run/ds", output="webdataset",
    ...                               work_dir=tempfile.mkdtemp(), progress=False)
    ...     stats = run_sync(download_to_store(urls, options))
    >>> stats.success, stats.manifest
    (3, 'memory://doc-run/ds/manifest.parquet')
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gbif_dl.errors import OutputError
from gbif_dl.manifest import MANIFEST_NAME
from gbif_dl.pipeline.inputs import as_async_items
from gbif_dl.pipeline.root import locked, prepare_root
from gbif_dl.pipeline.run import ROOT_FILES, Run
from gbif_dl.pipeline.stats import DownloadStats
from gbif_dl.progress import Progress
from gbif_dl.storage.location import default_work_dir, open_store
from gbif_dl.storage.mirror import StoreMirror
from gbif_dl.storage.state import JournalUploader, pull_state, push_state
from gbif_dl.storage.writers import make_store_writer

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.options import DownloadOptions

__all__ = ["download_to_store", "work_folder"]

logger = logging.getLogger(__name__)


def work_folder(url: str, work_dir: str | os.PathLike[str] | None) -> Path:
    """The local work folder of store root ``url``: ``work_dir`` or the default cache folder.

    Example:
        >>> work_folder("s3://b/ds", "/tmp/work")
        PosixPath('/tmp/work')
    """
    return Path(os.fspath(work_dir)).expanduser() if work_dir else default_work_dir(url)


async def download_to_store(items: Any, options: DownloadOptions) -> DownloadStats:
    """Download ``items`` into the store root ``options.root`` (see the module docstring).

    Raises:
        OutputError: the store cannot be used (missing bucket, credentials, access), or the
            local work folder cannot.

    Example:
        >>> options = DownloadOptions(root="s3://bucket/ds", output="webdataset")  # doctest: +SKIP
        >>> stats = run_sync(download_to_store(urls, options))  # doctest: +SKIP
    """
    started = time.monotonic()
    source, total = as_async_items(items)
    store = open_store(str(options.root), options.storage_options)
    mirror = StoreMirror(store)
    await asyncio.to_thread(mirror.names)  # a missing bucket or credentials: fail here
    work = prepare_root(work_folder(store.url, options.work_dir))
    with locked(work):
        await asyncio.to_thread(pull_state, mirror, work)
        writer = await asyncio.to_thread(
            make_store_writer, options.output, work, mirror, options.writer_options()
        )
        run = Run(
            work,
            writer=writer,
            assign=options.assigner(),
            overwrite=options.overwrite,
            retry_failed=options.retry_failed,
            fail_threshold=options.fail_threshold,
            verbose=options.verbose,
            progress=Progress(total=total, mode=options.progress),
        )
        uploader = JournalUploader(mirror, work)
        keeper = asyncio.ensure_future(uploader.keep_uploading())
        try:
            counters = await run.execute(source, options.fetch)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            uploader.close()
        try:
            await asyncio.to_thread(push_state, mirror, work, ROOT_FILES)
        except OSError as exc:
            raise OutputError(
                f"cannot write the manifest to {store.url}: {exc}; the images are stored and "
                "the journal parts keep the progress: rerun to finish"
            ) from exc
    stats = counters.stats(
        elapsed_s=time.monotonic() - started,
        manifest=mirror.url_of(MANIFEST_NAME),
        root=store.url,
    )
    logger.info(
        "downloaded %d, failed %d, skipped %d in %.1f s into %s",
        stats.success,
        stats.failed,
        stats.skipped,
        stats.elapsed_s,
        store.url,
    )
    if run.fatal is not None:
        raise OutputError(
            f"the local work folder {str(work)!r} of {store.url} is full "
            f"({run.fatal.strerror or run.fatal}); free some space (or pass work_dir= a "
            "folder with room for a shard) and rerun the same command to continue"
        ) from run.fatal
    return stats

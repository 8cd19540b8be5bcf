"""Run one shard: ``run_shard(shard_id, root, config)``, the entry point of every runner; merge.

``run_shard`` is synchronous and picklable (a module-level function over plain values), so the
same call runs in this process, in a :class:`concurrent.futures.ProcessPoolExecutor` worker or on
a Dask worker on another machine (the root must then be on a shared filesystem).

It fetches the shard's records with the streaming download's own core
(:class:`gbif_dl.pipeline.run.Run`), journaling to the shard's own journal and manifest part
instead of the root's. It is idempotent:

- a shard whose done marker exists returns at once;
- a half-done shard (its process was killed) resumes from its journal and manifest part, and
  adopts the files stored after the last journal line, so nothing is fetched or listed twice;
- the marker is written last, atomically, after the manifest part is complete;
- a per-shard lock (``fcntl.lockf``, released by the OS when the process dies, not inherited by
  child processes) keeps two processes from running one shard at the same time.

:func:`merge_shards` folds every manifest part into ``manifest.parquet`` (one row per url, the
latest wins) and rewrites ``ATTRIBUTION.csv``, ``CITATION.txt`` and the writer's files
(``classes.json``, plus ``metadata.jsonl`` for the Hugging Face layout).

Example:
    >>> import tempfile
    >>> from gbif_dl.shards.plan import plan_shards
    >>> from gbif_dl.testing.mediahost import MediaHosts
    >>> root = tempfile.mkdtemp()
    >>> with MediaHosts(n_hosts=1) as hosts:
    ...     plan = plan_shards([f"{hosts.base_urls[0]}/media/1/{i}.jpg" for i in range(3)], root)
    ...     result = run_shard(0, root)
    ...     again = run_shard(0, root)
    >>> result.success, again.already_done
    (3, True)
    >>> merge_shards(root).num_rows
    3
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal, overload

import pyarrow as pa

from gbif_dl._aio import run_sync
from gbif_dl.dedupe.policy import ContentPolicy
from gbif_dl.dedupe.settle import settle_content
from gbif_dl.errors import OutputError
from gbif_dl.fetch.engine import DEFAULT_FETCH, FetchConfig
from gbif_dl.manifest import (
    MANIFEST_NAME,
    merge_journal_file,
    merge_manifest_files,
    read_manifest,
)
from gbif_dl.pipeline.run import Run, RunFiles
from gbif_dl.pipeline.stats import DownloadStats, check_fail_threshold
from gbif_dl.progress import Progress
from gbif_dl.shards.files import (
    read_marker,
    read_shard_records,
    shard_files,
    shard_ids_on_disk,
    write_marker,
)
from gbif_dl.writers._atomic import remove_temp_files
from gbif_dl.writers.attribution import write_attribution
from gbif_dl.writers.paths import open_state_file, subfolders
from gbif_dl.writers.registry import check_shardable, make_writer

__all__ = [
    "DEFAULT_SHARD_CONFIG",
    "ShardConfig",
    "ShardResult",
    "merge_shards",
    "remove_leftover_temp_files",
    "run_shard",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardConfig:
    """How a shard is fetched and written; picklable (it travels to every worker).

    Attributes:
        fetch: the fetch engine settings *of one worker* (runners divide the per-host and
            total caps among workers, see :func:`gbif_dl.runners.share_fetch`).
        output: the layout (a shardable name of :data:`gbif_dl.writers.registry.OUTPUTS`).
        overwrite: fetch and rewrite items that are already stored.
        retry_failed: request again the items that failed for good in an earlier run.
        fail_threshold: stop the shard (without a done marker) when more than this share of
            its items fails.
        verbose: log every failed item at INFO level.
        lock_timeout_s: how long to wait for another process that holds the shard's lock.
        folders_before: the output folders that existed before the job
            (:func:`gbif_dl.writers.imagefolder.existing_folders`): a shard's first attempt
            probes only them for images an earlier run stored (a resumed shard, and None,
            probe every folder that exists when the shard starts).

    Raises:
        ConfigError: an output a runner cannot write in shards, or a bad ``fail_threshold``.

    Example:
        >>> ShardConfig(fetch=FetchConfig(per_host=4)).fetch.per_host
        4
    """

    fetch: FetchConfig = DEFAULT_FETCH
    output: str = "imagefolder"
    overwrite: bool = False
    retry_failed: bool = False
    fail_threshold: float | None = None
    verbose: bool = False
    lock_timeout_s: float = 600.0
    content: ContentPolicy = dataclasses.field(default_factory=ContentPolicy.off)
    folders_before: frozenset[str] | None = None

    def __post_init__(self) -> None:
        check_shardable(self.output)  # ConfigError, naming the layouts a runner can write
        check_fail_threshold(self.fail_threshold)


DEFAULT_SHARD_CONFIG = ShardConfig()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardResult(DownloadStats):
    """What one :func:`run_shard` call did: its :class:`~gbif_dl.pipeline.stats.DownloadStats`
    (``success``, ``failed``, ``skipped``, ``reasons``, ``bytes``, ``elapsed_s``, ``aborted``:
    the shard stopped early and has no marker), plus which shard, whether it was already done
    (its marker existed; ``skipped`` = the shard's items) and the process that ran it.

    Example:
        >>> ShardResult(shard_id=0, success=3).success
        3
    """

    shard_id: int
    already_done: bool = False
    pid: int = 0


@contextlib.contextmanager
def _shard_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive POSIX record lock on ``path``, waiting up to ``timeout_s``.

    ``lockf`` locks belong to the process: the OS drops them when it dies, and the children of a
    resize pool do not inherit them (unlike ``flock``), so a killed worker never blocks a rerun.
    """
    try:
        handle = open_state_file(path, "a+b")  # never through a link
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(
            f"cannot create the shard lock {str(path)!r}: {exc.strerror or exc}; "
            "the output root must be writable from every worker"
        ) from exc
    try:
        if sys.platform != "win32":  # Windows: no advisory lock
            import fcntl

            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        raise OutputError(
                            f"another process has been running this shard ({path.name}) for "
                            f"more than {timeout_s:.0f} s; wait for it or stop it, then rerun"
                        ) from exc
                    time.sleep(0.2)
        yield
    finally:
        handle.close()


async def _records_of(records: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for record in records:
        yield record


def _done_result(shard_id: int, marker: dict[str, Any], started: float) -> ShardResult:
    total = marker.get("success", 0) + marker.get("failed", 0) + marker.get("skipped", 0)
    return ShardResult(
        shard_id=shard_id,
        skipped=int(marker.get("records", total)),
        elapsed_s=time.monotonic() - started,
        already_done=True,
        pid=os.getpid(),
    )


def _run_records(
    root: Path,
    shard_id: int,
    config: ShardConfig,
    records: list[dict[str, Any]],
    progress: Progress | None = None,
) -> Run:
    """Fetch ``records`` (the shard's, splits assigned by the plan) with the one core."""
    files = shard_files(shard_id)
    if progress is None:
        progress = Progress(total=len(records), mode=False, desc=f"shard {shard_id}")
    # an earlier attempt of this shard (a killed worker) may have stored files in folders this
    # job created without recording them yet: a resumed shard probes every folder
    resumed = (root / files.journal).exists() or (root / files.manifest).exists()
    folders_before = None if resumed else config.folders_before
    run = Run(
        root,
        writer=make_writer(config.output, root, shard=True, folders_before=folders_before),
        overwrite=config.overwrite,
        retry_failed=config.retry_failed,
        fail_threshold=config.fail_threshold,
        verbose=config.verbose,
        progress=progress,
        files=RunFiles(manifest=files.manifest, journal=files.journal, attribution=False),
        content=config.content,
    )
    run_sync(run.execute(_records_of(records), config.fetch))
    if run.fatal is not None:
        raise OutputError(
            f"the disk under {str(root)!r} is full ({run.fatal.strerror or run.fatal}) "
            f"while running shard {shard_id}; free some space and rerun to continue"
        ) from run.fatal
    return run


def run_shard(
    shard_id: int,
    root: str | os.PathLike[str],
    config: ShardConfig = DEFAULT_SHARD_CONFIG,
    progress: Progress | None = None,
) -> ShardResult:
    """Fetch and store shard ``shard_id`` of the job planned in ``root``; idempotent.

    Args:
        shard_id: a shard of :func:`gbif_dl.shards.plan.plan_shards`.
        root: the output root (on a filesystem every worker sees at the same path).
        config: :class:`ShardConfig`.
        progress: counts every finished item (the runners' reporting to the client); default
            a silent :class:`~gbif_dl.progress.Progress`.

    Returns:
        :class:`ShardResult`.

    Raises:
        OutputError: the shard was never planned, its lock is held too long, or the disk filled
            up (the shard then has no marker; a rerun continues it).

    Example:
        >>> run_shard(0, "data")  # doctest: +SKIP
        ShardResult(shard_id=0, success=9980, failed=20, ...)
    """
    started = time.monotonic()
    root_path = Path(os.fspath(root))
    marker = read_marker(root_path, shard_id)
    if marker is not None:
        return _done_result(shard_id, marker, started)
    with _shard_lock(root_path / shard_files(shard_id).lock, config.lock_timeout_s):
        marker = read_marker(root_path, shard_id)  # finished while we waited for the lock
        if marker is not None:
            return _done_result(shard_id, marker, started)
        records = read_shard_records(root_path, shard_id)
        counters = _run_records(root_path, shard_id, config, records, progress).counters
        result = ShardResult(
            shard_id=shard_id,
            pid=os.getpid(),
            **counters.stats(elapsed_s=time.monotonic() - started, root=str(root_path)),
        )
        if not result.aborted:
            summary = {
                "records": len(records),
                "success": result.success,
                "failed": result.failed,
                "skipped": result.skipped,
            }
            write_marker(root_path, shard_id, summary)  # last: the shard is done
    logger.info(
        "shard %d: %d stored, %d failed, %d already done in %.1f s",
        shard_id,
        result.success,
        result.failed,
        result.skipped,
        result.elapsed_s,
    )
    return result


@overload
def merge_shards(
    root: str | os.PathLike[str],
    output: str | None = ...,
    *,
    load: Literal[True] = ...,
    content: ContentPolicy | None = ...,
) -> pa.Table: ...


@overload
def merge_shards(
    root: str | os.PathLike[str],
    output: str | None = ...,
    *,
    load: Literal[False],
    content: ContentPolicy | None = ...,
) -> None: ...


def merge_shards(
    root: str | os.PathLike[str],
    output: str | None = "imagefolder",
    *,
    load: bool = True,
    content: ContentPolicy | None = None,
) -> pa.Table | None:
    """Merge every shard's manifest part into ``root/manifest.parquet``; rewrite attribution.

    Rows of an earlier ``manifest.parquet`` are kept unless a part has a newer row for the same
    url. Idempotent: the parts stay, so the next rerun skips done shards at once. Then the
    ``finalize(manifest)`` hook of the ``output`` layout's writer runs on the merged manifest,
    as after a streaming download: ``classes.json``, and for ``output="hf"`` every
    ``metadata.jsonl``. ``output=None`` skips it.

    The merge streams (a batch of rows at a time, about 24 bytes per row besides), as do the
    attribution files and ``finalize`` (they read the merged file); only the returned table is
    whole: ``load=False`` returns None instead, for jobs of millions of rows.

    Example:
        >>> import tempfile
        >>> merge_shards(tempfile.mkdtemp()).num_rows
        0
    """
    root_path = Path(os.fspath(root))
    target = root_path / MANIFEST_NAME
    parts: list[Path] = []
    base = merge_journal_file(root_path)  # a streaming download's journal, if any
    if base is not None:
        parts.append(base)
    for shard_id in shard_ids_on_disk(root_path):
        files = shard_files(shard_id)
        part = merge_journal_file(  # folds in the journal of a shard killed and not rerun
            root_path, manifest_name=files.manifest, journal_name=files.journal
        )
        if part is not None:
            parts.append(part)
    rows = merge_manifest_files(parts, target)  # latest ``updated`` wins; streamed
    if output is not None and content is not None and content.enabled:
        # copies stored by different shards, splits that share a photo, placeholders
        writer = make_writer(output, root_path, shard=True)
        settle_content(root_path, target, writer, content, parts=parts)
    write_attribution(root_path, target)
    if output is not None:  # files derived from the whole manifest (classes.json, metadata)
        make_writer(output, root_path, shard=True).finalize(target)
    logger.debug("merged %d manifest parts into %d rows", len(parts), rows)
    return read_manifest(root_path) if load else None


def remove_leftover_temp_files(root: str | os.PathLike[str], depth: int = 2) -> int:
    """Remove temp files killed shards left at the root and in its folders (``depth`` levels).

    Call it only while no shard runs. Returns how many files were removed.

    Example:
        >>> import tempfile
        >>> remove_leftover_temp_files(tempfile.mkdtemp())
        0
    """
    removed = 0
    for _rel, folder in subfolders(os.fspath(root), depth):  # never through a link
        removed += remove_temp_files(folder)
    return removed

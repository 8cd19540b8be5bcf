"""A ``runner=`` job: plan the shards, run them with a runner, merge.

::

    records ─► plan_shards ─► runner.run_shards(run_shard over every shard) ─► merge_shards
               (files at root)  LocalRunner: this process, or N processes
                                DaskRunner:  a Dask cluster (LocalCluster, SLURM, Kubernetes...)

The input is normalised and its splits assigned by the same code as the streaming download
(:mod:`gbif_dl.pipeline.inputs`), and each shard runs the same core
(:class:`gbif_dl.pipeline.run.Run`).

Example:
    >>> import tempfile
    >>> from gbif_dl.testing.mediahost import MediaHosts
    >>> with MediaHosts(n_hosts=2) as hosts:
    ...     urls = [f"{b}/media/{i}/0.jpg" for b in hosts.base_urls for i in range(4)]
    ...     stats = run(urls, tempfile.mkdtemp(), runner="local", shard_size=3)
    >>> stats["success"], stats["failed"]
    (8, 0)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gbif_dl.dedupe.policy import ContentPolicy
from gbif_dl.errors import ConfigError
from gbif_dl.fetch.engine import DEFAULT_FETCH, FetchConfig
from gbif_dl.manifest import MANIFEST_NAME
from gbif_dl.options import RUNNER_NAMES, DownloadOptions
from gbif_dl.pipeline.inputs import Assign, as_sync_items
from gbif_dl.pipeline.root import locked, prepare_root
from gbif_dl.pipeline.stats import DownloadStats
from gbif_dl.pipeline.stream import log_stats
from gbif_dl.runners.base import PlannedRunner, Runner, run_plan
from gbif_dl.runners.report import ClusterProgress
from gbif_dl.sampling.spares import with_spares
from gbif_dl.shards.files import read_marker
from gbif_dl.shards.plan import DEFAULT_SHARD_SIZE, ShardPlan, plan_shards
from gbif_dl.shards.run import ShardConfig, merge_shards, remove_leftover_temp_files
from gbif_dl.shards.spares import SpareRounds
from gbif_dl.writers.imagefolder import existing_folders

__all__ = ["RUNNERS", "make_runner", "run", "run_download"]

logger = logging.getLogger(__name__)

#: The names ``run(runner=...)`` accepts.
RUNNERS = RUNNER_NAMES


def make_runner(
    runner: str | Runner = "local",
    *,
    workers: int | None = None,
    dask_address: str | None = None,
    dask_client: Any = None,
) -> Runner:
    """The runner called ``runner`` (``"local"`` or ``"dask"``), or ``runner`` itself.

    Raises:
        ConfigError: an unknown runner name, or Dask options for the local runner.
        MissingExtraError: ``"dask"`` without the ``dask`` extra installed.

    Example:
        >>> type(make_runner("local", workers=2)).__name__
        'LocalRunner'
    """
    if isinstance(runner, Runner) and not isinstance(runner, str):
        return runner
    if runner == "local":
        if dask_address is not None or dask_client is not None:
            raise ConfigError(
                "dask_address and dask_client need runner='dask'; pass runner='dask' or drop them"
            )
        from gbif_dl.runners.local import LocalRunner

        return LocalRunner(workers=workers)
    if runner == "dask":
        from gbif_dl.runners.dask import DaskRunner

        return DaskRunner(address=dask_address, client=dask_client, workers=workers)
    raise ConfigError(f"unknown runner {runner!r}; use one of {', '.join(map(repr, RUNNERS))}")


def _run_planned(
    plan: ShardPlan,
    root: Path,
    runner: Runner,
    config: ShardConfig,
    progress: ClusterProgress | None = None,
) -> list[DownloadStats]:
    """Run the shards of ``plan`` that are not done; merge. Returns every shard's stats."""
    done = set(plan.done)
    todo = [sid for sid in plan.shard_ids if sid not in done]
    done_before = sum((read_marker(root, sid) or {}).get("records", 0) for sid in plan.done)
    if progress is not None:
        progress.total = plan.records + plan.duplicates
        progress.add_skipped(done_before + plan.duplicates)
    results: list[DownloadStats] = list(
        run_plan(runner, todo, root, config, hosts=plan.hosts, progress=progress) if todo else []
    )
    merge_shards(root, config.output, load=False, content=config.content)
    remove_leftover_temp_files(root)
    results.append(DownloadStats(skipped=done_before + plan.duplicates))
    return results


def _run_rounds(
    source: Iterable[Any],
    root_path: Path,
    chosen: Runner,
    config: ShardConfig,
    report: ClusterProgress,
    *,
    assign: Assign | None,
    shard_size: int,
    by_host: bool,
    short_streams: str | None,
) -> tuple[ShardPlan, list[DownloadStats], dict[str, dict[str, Any]]]:
    """Plan and run the job's shards, then its spare rounds (quota'd items); trim if asked."""
    # folders this job creates cannot hold an earlier run's files: shards skip probing them
    config = dataclasses.replace(config, folders_before=existing_folders(root_path))
    rounds = SpareRounds(root_path, short_streams=short_streams, output=config.output)
    items = rounds.divert(source, assign)
    plan = plan_shards(
        items,
        root_path,
        size=shard_size,
        assign=assign,
        overwrite=config.overwrite,
        by_host=by_host,
    )
    try:
        results = _run_planned(plan, root_path, chosen, config, report)
        spare_results, streams = rounds.run(
            lambda spares: _run_planned(spares, root_path, chosen, config, report),
            len(plan.shard_ids),
            shard_size,
            by_host=by_host,
        )
    finally:
        report.close()
    results += spare_results
    if any(stream["trimmed"] for stream in streams.values()):
        merge_shards(root_path, config.output, load=False)  # the trimmed rows
    return plan, results, streams


def run(
    records: Iterable[Any],
    root: str | os.PathLike[str],
    *,
    runner: str | Runner = "local",
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    dask_address: str | None = None,
    dask_client: Any = None,
    fetch: FetchConfig = DEFAULT_FETCH,
    assign: Assign | None = None,
    overwrite: bool = False,
    fail_threshold: float | None = None,
    verbose: bool = False,
    output: str = "imagefolder",
    retry_failed: bool = False,
    progress: bool | ClusterProgress | None = False,
    short_streams: str | None = None,
    content: ContentPolicy | None = None,
) -> DownloadStats:
    """Download ``records`` into ``root`` in shards run by ``runner``; resumable.

    Args:
        records: records (dicts with ``url``) or URL strings, any iterable or async iterable,
            or the path of a text file of URLs (as :func:`gbif_dl.io.download`).
        root: the output root; with Dask, a folder every worker sees at the same path.
        runner: ``"local"`` (this machine), ``"dask"`` or a :class:`Runner`.
        shard_size: records per shard (the unit of work and of resume).
        workers: local: processes (default 1, or one per CPU when ``fetch.max_size`` makes the
            job CPU-bound); dask: workers of the LocalCluster started when no address or
            client is given (default one per CPU).
        dask_address: ``"tcp://scheduler:8786"`` of a running Dask scheduler.
        dask_client: an existing ``distributed.Client``.
        fetch: fetch settings of the whole job; the runner divides the caps among workers.
        assign: ``f(record) -> subset`` for records without one (the split assignment).
        overwrite: fetch everything again.
        retry_failed: request again the items that failed for good in an earlier run.
        fail_threshold: a shard stops (and the job fails) above this share of failed items.
        verbose: log every failed item at INFO level.
        output: the layout, ``"imagefolder"`` or ``"hf"`` (a shardable writer).
        progress: the job's progress seen from here (images/s, failures, shards per host):
            ``None`` = a line every few seconds in the log, ``False`` = none, or a
            :class:`~gbif_dl.runners.report.ClusterProgress` to fill.
        short_streams: for quota'd items, what a stream that ran dry does to the others
            (:class:`~gbif_dl.options.DownloadOptions`; spares run as extra shards,
            :mod:`gbif_dl.shards.spares`).
        content: duplicates, near duplicates, placeholders (default: ``ContentPolicy()``).

    Returns:
        :class:`~gbif_dl.pipeline.stats.DownloadStats` over all shards; repeated URLs count
        as skipped.

    Example:
        >>> stats = run(records, "data", runner="dask", dask_address="tcp://10.0.0.5:8786")
        ... # doctest: +SKIP
    """
    started = time.monotonic()
    chosen = make_runner(
        runner, workers=workers, dask_address=dask_address, dask_client=dask_client
    )
    config = ShardConfig(  # checks the output and the threshold
        fetch=fetch,
        output=output,
        overwrite=overwrite,
        retry_failed=retry_failed,
        fail_threshold=fail_threshold,
        verbose=verbose,
        content=content if content is not None else ContentPolicy.off(),
    )
    source = as_sync_items(with_spares(records))
    root_path = prepare_root(root)
    report = progress if isinstance(progress, ClusterProgress) else ClusterProgress(mode=progress)
    by_host = isinstance(chosen, PlannedRunner) and chosen.plans_by_host(config)
    with locked(root_path):
        remove_leftover_temp_files(root_path)
        plan, results, streams = _run_rounds(
            source,
            root_path,
            chosen,
            config,
            report,
            assign=assign,
            shard_size=shard_size,
            by_host=by_host,
            short_streams=short_streams,
        )
    return _job_stats(plan, results, streams, root_path, started)


def _job_stats(
    plan: ShardPlan,
    results: list[DownloadStats],
    streams: dict[str, dict[str, Any]],
    root: Path,
    started: float,
) -> DownloadStats:
    """The whole job's stats from its shards' (logged)."""
    stats = DownloadStats.combine(
        results,
        streams=streams,
        elapsed_s=time.monotonic() - started,
        manifest=str(root / MANIFEST_NAME),
        root=str(root),
    )
    log_stats(stats, f"{len(plan.shard_ids)} shards: ")
    return stats


def run_download(items: Any, options: DownloadOptions) -> DownloadStats:
    """``download(..., runner=...)``: :func:`run` with the job's :class:`DownloadOptions`.

    Example:
        >>> run_download(urls, DownloadOptions(runner="local"))  # doctest: +SKIP
    """
    assert options.runner is not None
    return run(
        items,
        options.root,
        runner=options.runner,
        shard_size=DEFAULT_SHARD_SIZE if options.shard_size is None else options.shard_size,
        workers=options.workers,
        dask_address=options.dask_address,
        dask_client=options.dask_client,
        fetch=options.fetch,
        assign=options.assigner(),
        overwrite=options.overwrite,
        fail_threshold=options.fail_threshold,
        verbose=options.verbose,
        output=options.output,
        retry_failed=options.retry_failed,
        progress=options.progress,
        short_streams=options.short_streams,
        content=options.content_policy(),
    )

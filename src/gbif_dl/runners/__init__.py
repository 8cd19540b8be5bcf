"""Runners: where shards run. ``run`` plans the shards, runs them with a runner, merges.

::

    records ─► plan_shards ─► runner.run_shards(run_shard over every shard) ─► merge_shards
               (files at root)  LocalRunner: this process, or N processes
                                DaskRunner:  a Dask cluster (LocalCluster, SLURM, Kubernetes...)

Every runner calls the same picklable :func:`gbif_dl.shard.run_shard`; a runner only decides
where. Politeness is shared: a runner with ``W`` shards in flight gives each one
``per_host // W`` requests per host and ``concurrency // W`` in total (at least 1 each, see
:func:`share_fetch`), so the whole job stays within the caps of one machine.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gbif_dl.errors import ConfigError
from gbif_dl.fetch.engine import DEFAULT_FETCH, FetchConfig
from gbif_dl.plan import DEFAULT_SHARD_SIZE, plan_shards, read_marker
from gbif_dl.shard import ShardConfig, ShardResult, imagefolder_writer

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.io import DownloadStats
    from gbif_dl.writers import Writer

__all__ = ["RUNNERS", "Runner", "make_runner", "run", "share_fetch"]

logger = logging.getLogger(__name__)

#: The names ``run(runner=...)`` accepts.
RUNNERS = ("local", "dask")


@runtime_checkable
class Runner(Protocol):
    """Runs :func:`gbif_dl.shard.run_shard` over shards; where is the runner's business.

    ``run_shards`` returns one :class:`~gbif_dl.shard.ShardResult` per shard and raises the
    first error of a shard that failed for good. Implementations divide politeness with
    :func:`share_fetch` among the shards they run at the same time.
    """

    def run_shards(
        self, shard_ids: Sequence[int], root: Path, config: ShardConfig
    ) -> list[ShardResult]:
        """Run every shard; return their results."""
        ...


def share_fetch(fetch: FetchConfig, parties: int) -> FetchConfig:
    """``fetch`` for one of ``parties`` shards running at once: the caps divided among them.

    Each gets ``max(1, per_host // parties)`` and ``max(1, concurrency // parties)``, so the
    cluster never has more than ``per_host`` requests on one host as long as
    ``parties <= per_host`` (beyond that, one each: ``parties`` at most).

    Example:
        >>> shared = share_fetch(FetchConfig(concurrency=128, per_host=16), 4)
        >>> shared.concurrency, shared.per_host
        (32, 4)
    """
    parties = max(1, int(parties))
    return dataclasses.replace(
        fetch,
        per_host=max(1, fetch.per_host // parties),
        concurrency=max(1, fetch.concurrency // parties),
    )


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
    assign: Callable[[Mapping[str, Any]], str] | None = None,
    overwrite: bool = False,
    fail_threshold: float | None = None,
    verbose: bool = False,
    writer: Callable[[Path, int], Writer] = imagefolder_writer,
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
        fail_threshold: a shard stops (and the job fails) above this share of failed items.
        verbose: log every failed item at INFO level.
        writer: ``f(root, shard_id) -> Writer``; a module-level function.

    Returns:
        :class:`gbif_dl.io.DownloadStats` over all shards; repeated URLs count as skipped.

    Example:
        >>> stats = run(records, "data", runner="dask", dask_address="tcp://10.0.0.5:8786")
        ... # doctest: +SKIP
    """
    from gbif_dl._aio import iterate_sync
    from gbif_dl.io import DownloadStats, _as_async_items, _locked, _prepare_root
    from gbif_dl.shard import merge_shards, remove_leftover_temp_files
    from gbif_dl.writers.manifest import MANIFEST_NAME

    started = time.monotonic()
    chosen = make_runner(
        runner, workers=workers, dask_address=dask_address, dask_client=dask_client
    )
    if fail_threshold is not None and not 0.0 <= float(fail_threshold) <= 1.0:
        raise ConfigError(
            f"fail_threshold is the largest tolerated share of failures, between 0 and 1; "
            f"got {fail_threshold!r}"
        )
    source, _ = _as_async_items(records)
    root_path = _prepare_root(root)
    with _locked(root_path):
        remove_leftover_temp_files(root_path)
        plan = plan_shards(
            iterate_sync(aiter(source)),
            root_path,
            size=shard_size,
            assign=assign,
            overwrite=overwrite,
        )
        config = ShardConfig(
            fetch=fetch,
            overwrite=overwrite,
            fail_threshold=fail_threshold,
            verbose=verbose,
            writer=writer,
        )
        todo = [sid for sid in plan.shard_ids if sid not in set(plan.done)]
        results = chosen.run_shards(todo, root_path, config) if todo else []
        merge_shards(root_path, writer, load=False)
        remove_leftover_temp_files(root_path)
    reasons: dict[str, int] = {}
    for result in results:
        for reason, count in result.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    done_before = sum((read_marker(root_path, sid) or {}).get("records", 0) for sid in plan.done)
    stats = DownloadStats(
        success=sum(r.success for r in results),
        failed=sum(r.failed for r in results),
        skipped=sum(r.skipped for r in results) + done_before + plan.duplicates,
        reasons=reasons,
        bytes=sum(r.bytes for r in results),
        elapsed_s=time.monotonic() - started,
        manifest=str(root_path / MANIFEST_NAME),
        root=str(root_path),
        aborted=any(r.aborted for r in results),
    )
    logger.info(
        "%d shards: downloaded %d, failed %d, skipped %d in %.1f s into %s",
        len(plan.shard_ids),
        stats.success,
        stats.failed,
        stats.skipped,
        stats.elapsed_s,
        root_path,
    )
    return stats

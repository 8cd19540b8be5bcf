"""The Dask runner: one task per shard on a Dask cluster (``pip install 'gbif-dl[dask]'``).

Which cluster: an existing ``distributed.Client`` (``client=``), the scheduler at ``address=``
(``"tcp://host:8786"``: a SLURM/PBS cluster from dask-jobqueue, a Kubernetes cluster from
dask-kubernetes or the Dask Helm chart), or else a ``LocalCluster`` of ``workers`` processes
with one thread each, started and closed by the runner.

Each shard is a task ``run_shard(shard_id, root, config)`` submitted with ``retries=2`` and
``pure=False``. A worker that dies takes its task with it; the scheduler runs it again on
another worker, where ``run_shard`` resumes from the shard's journal and manifest part: no item
is fetched twice or lost. The output root must be a folder every worker sees at the same path
(a shared filesystem); the runner checks that before submitting anything.

Politeness: the per-host and total caps are divided by the number of worker threads (the
shards that can run at once), see :func:`gbif_dl.runners.share_fetch`.

Example:
    >>> runner = DaskRunner(workers=2)  # doctest: +SKIP
    >>> runner.run_shards([0, 1, 2, 3], root, config)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError, GbifDlError, OutputError, require
from gbif_dl.runners.base import share_fetch
from gbif_dl.shards.run import ShardConfig, ShardResult, run_shard

__all__ = ["TASK_RETRIES", "DaskRunner"]

logger = logging.getLogger(__name__)

#: Retries of a shard task that raised (a worker that died is rescheduled by Dask on its own).
TASK_RETRIES = 2


def _worker_facts(root: str) -> dict[str, Any]:
    """Runs on each worker: can it see the root, and may it start processes (resize pool)?"""
    return {
        "root": os.path.isdir(root) and os.access(root, os.W_OK | os.X_OK),
        "daemon": bool(multiprocessing.current_process().daemon),
    }


class DaskRunner:
    """Run shards as Dask tasks.

    Args:
        address: scheduler address, e.g. ``"tcp://10.0.0.5:8786"``.
        client: an existing ``distributed.Client`` (wins over ``address``).
        workers: processes of the LocalCluster started when neither is given (default: one
            per CPU).

    Raises:
        MissingExtraError: dask.distributed is not installed (at construction, before any work).

    Example:
        >>> DaskRunner(workers=2).workers  # doctest: +SKIP
        2
    """

    def __init__(
        self, address: str | None = None, client: Any = None, workers: int | None = None
    ) -> None:
        require("distributed", extra="dask", package="dask[distributed]")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"workers must be a positive integer or None; got {workers!r}")
        if address is not None and not isinstance(address, str):
            raise ConfigError(
                f"dask_address must be a string like 'tcp://host:8786'; got {address!r}"
            )
        self.address = address
        self.client = client
        self.workers = workers

    def _connect(self) -> tuple[Any, list[Any]]:
        """The client to use and what to close afterwards (what this runner started)."""
        import dask
        import distributed

        if self.client is not None:
            return self.client, []
        if self.address is not None:
            client = distributed.Client(self.address)
            return client, [client]
        n_workers = self.workers or os.cpu_count() or 1
        # worker processes must not be daemonic: the fetch engine resizes in a process pool
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = distributed.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
        client = distributed.Client(cluster)
        return client, [client, cluster]

    def _check_workers(self, client: Any, root: Path, config: ShardConfig) -> dict[str, int]:
        """Fail before any work when a worker cannot do its job; return threads per worker."""
        nthreads: dict[str, int] = client.nthreads()
        if not nthreads:
            client.wait_for_workers(1, timeout=60)
            nthreads = client.nthreads()
        facts: dict[str, dict[str, Any]] = client.run(_worker_facts, str(root))
        blind = sorted(w for w, f in facts.items() if not f["root"])
        if blind:
            raise OutputError(
                f"the output root {str(root)!r} is not a writable folder on Dask worker(s) "
                f"{', '.join(blind)}; put it on a filesystem every worker mounts at the same path"
            )
        if config.fetch.max_size is not None and any(f["daemon"] for f in facts.values()):
            raise ConfigError(
                "resizing (max_size) runs in a process pool, which daemonic Dask workers cannot "
                "start; start the workers with the Dask setting distributed.worker.daemon=False "
                "(environment: DASK_DISTRIBUTED__WORKER__DAEMON=False)"
            )
        return nthreads

    def run_shards(
        self, shard_ids: Sequence[int], root: Path, config: ShardConfig
    ) -> list[ShardResult]:
        """Submit one task per shard, wait for all; return their results in shard order."""
        from distributed import as_completed

        if not shard_ids:
            return []
        client, owned = self._connect()
        try:
            nthreads = self._check_workers(client, root, config)
            slots = max(1, min(sum(nthreads.values()), len(shard_ids)))
            fetch = share_fetch(config.fetch, slots)
            if fetch.resize_workers is None and fetch.max_size is not None:
                fetch = dataclasses.replace(fetch, resize_workers=max(1, min(nthreads.values())))
            shared = dataclasses.replace(config, fetch=fetch)
            logger.info(
                "running %d shards on %d Dask workers (%d threads): per_host=%d, concurrency=%d "
                "per shard",
                len(shard_ids),
                len(nthreads),
                slots,
                fetch.per_host,
                fetch.concurrency,
            )
            token = uuid.uuid4().hex[:8]
            futures = [
                client.submit(
                    run_shard,
                    sid,
                    str(root),
                    shared,
                    key=f"gbif-dl-shard-{sid:06d}-{token}",
                    retries=TASK_RETRIES,
                    pure=False,
                )
                for sid in shard_ids
            ]
            results: dict[int, ShardResult] = {}
            try:
                for future in as_completed(futures):
                    result: ShardResult = future.result()
                    results[result.shard_id] = result
                    logger.info(
                        "shard %d done (%d/%d)", result.shard_id, len(results), len(shard_ids)
                    )
            except GbifDlError:
                client.cancel(futures)
                raise
            except Exception as exc:
                client.cancel(futures)
                raise GbifDlError(
                    f"a shard failed on the Dask cluster ({type(exc).__name__}: {exc}); "
                    "rerun the same command: done shards are skipped and the others resume"
                ) from exc
            return [results[sid] for sid in shard_ids]
        finally:
            for resource in owned:
                resource.close()

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

Politeness: the total cap is divided by the number of worker threads (the shards that can run
at once). The per-host cap holds however many workers there are: a host gets
``min(per_host, threads)`` lanes, each shard fetches with ``per_host // lanes`` per host, and the
runner submits a shard only while every host it touches has a free lane (see
:mod:`gbif_dl.runners.gate`; the plan cuts shards by host when the threads outnumber
``per_host``). A cluster that grows while the job runs gets more shards of other hosts, never
more requests on one host.

Progress: every shard sends its running totals to the client through Dask's event log (a topic
per job); the client logs images/s, failures and the shards running and queued per host (see
:mod:`gbif_dl.runners.report`).

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
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError, GbifDlError, OutputError, require
from gbif_dl.runners.base import share_fetch
from gbif_dl.runners.gate import HostGate, run_gated, share_hosts
from gbif_dl.runners.report import Channel, ClusterProgress, report_shard
from gbif_dl.shards.run import ShardConfig, ShardResult

__all__ = ["TASK_RETRIES", "DaskRunner"]

logger = logging.getLogger(__name__)

#: Retries of a shard task that raised (a worker that died is rescheduled by Dask on its own).
TASK_RETRIES = 2

#: Seconds the runner waits for a shard before it looks at the progress ticks again.
POLL_S = 0.5


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

    def plans_by_host(self, config: ShardConfig) -> bool:
        """True when the shards should be cut by host: the cluster can run more shards at once
        than ``per_host`` (a scheduler at ``address``, which may grow, always counts as such).

        Example:
            >>> from gbif_dl.fetch import FetchConfig
            >>> DaskRunner(workers=8).plans_by_host(ShardConfig(fetch=FetchConfig(per_host=2)))
            ... # doctest: +SKIP
            True
        """
        if self.client is not None:
            threads = sum(self.client.nthreads().values())
        elif self.address is not None:
            return True
        else:
            threads = self.workers or os.cpu_count() or 1
        return bool(threads > config.fetch.per_host)

    def run_shards(
        self, shard_ids: Sequence[int], root: Path, config: ShardConfig
    ) -> list[ShardResult]:
        """Submit one task per shard, wait for all; return their results in shard order."""
        return self.run_planned(shard_ids, root, config)

    def run_planned(
        self,
        shard_ids: Sequence[int],
        root: Path,
        config: ShardConfig,
        *,
        hosts: Mapping[int, Collection[str]] | None = None,
        progress: ClusterProgress | None = None,
    ) -> list[ShardResult]:
        """Run one task per shard, at most ``per_host`` at once on one of ``hosts`` (None:
        the caps divided among the threads); report to ``progress``. Results in shard order.

        Example:
            >>> DaskRunner(workers=2).run_planned([], Path("."), ShardConfig())  # doctest: +SKIP
            []
        """
        if not shard_ids:
            return []
        progress = progress if progress is not None else ClusterProgress(mode=False)
        client, owned = self._connect()
        try:
            nthreads = self._check_workers(client, root, config)
            slots = max(1, min(sum(nthreads.values()), len(shard_ids)))
            fetch, lanes = share_hosts(config.fetch, slots)
            if hosts is None:  # hosts unknown: every shard may touch every host
                fetch, lanes = share_fetch(config.fetch, slots), slots
            if fetch.resize_workers is None and fetch.max_size is not None:
                fetch = dataclasses.replace(fetch, resize_workers=max(1, min(nthreads.values())))
            logger.info(
                "running %d shards on %d Dask workers (%d threads): per_host=%d, concurrency=%d "
                "per shard, at most %d shards per host",
                len(shard_ids),
                len(nthreads),
                slots,
                fetch.per_host,
                fetch.concurrency,
                lanes,
            )
            gate = HostGate(hosts or {}, lanes)
            progress.begin(len(shard_ids), gate)
            shared = dataclasses.replace(config, fetch=fetch)
            return self._submit_all(client, shard_ids, root, shared, gate, progress)
        finally:
            for resource in owned:
                resource.close()

    @staticmethod
    def _submit_all(
        client: Any,
        shard_ids: Sequence[int],
        root: Path,
        config: ShardConfig,
        gate: HostGate,
        progress: ClusterProgress,
    ) -> list[ShardResult]:
        import distributed

        token = uuid.uuid4().hex[:8]
        channel = Channel("dask", f"gbif-dl-progress-{token}")
        client.subscribe_topic(channel.topic, lambda event: progress.post(event[1]))

        submitted: list[Any] = []

        def submit(sid: int) -> Any:
            future = client.submit(
                report_shard, sid, str(root), config, channel,
                key=f"gbif-dl-shard-{sid:06d}-{token}", retries=TASK_RETRIES, pure=False,
            )  # fmt: skip
            submitted.append(future)
            return future

        def wait(futures: set[Any]) -> set[Any]:
            try:
                done = distributed.wait(list(futures), POLL_S, "FIRST_COMPLETED").done
            except TimeoutError:
                done = set()
            progress.poll()
            return set(done)

        def threads() -> int:
            return max(1, sum(client.nthreads().values()))

        def finished(result: ShardResult) -> None:
            progress.finish(result)
            done = len(progress.done)
            logger.info("shard %d done (%d/%d)", result.shard_id, done, len(shard_ids))

        try:
            return run_gated(
                shard_ids, gate, slots=threads, submit=submit, wait=wait,
                result=lambda future: future.result(), on_done=finished,
            )  # fmt: skip
        except GbifDlError:
            client.cancel(submitted)
            raise
        except Exception as exc:
            client.cancel(submitted)
            raise GbifDlError(
                f"a shard failed on the Dask cluster ({type(exc).__name__}: {exc}); "
                "rerun the same command: done shards are skipped and the others resume"
            ) from exc
        finally:
            client.unsubscribe_topic(channel.topic)

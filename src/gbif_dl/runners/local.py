"""The local runner: shards in this process, or in N processes when resizing makes it CPU-bound.

One process is the right choice for plain downloads: the fetch engine is an asyncio loop that
keeps hundreds of requests in flight, and network latency, not the CPU, is the limit. With
``max_size`` (resize) the CPU becomes the limit; the engine already resizes in a process pool,
but the event loop itself (sniffing, hashing, writing, journaling) then saturates one core, so
``workers=None`` runs one process per CPU, each with its share of the politeness caps and of the
resize processes.

Example:
    >>> LocalRunner(workers=2).workers
    2
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import queue
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError, GbifDlError
from gbif_dl.runners.base import share_fetch
from gbif_dl.runners.gate import HostGate, run_gated, share_hosts
from gbif_dl.runners.report import (
    Channel,
    ClusterProgress,
    ShardTicker,
    pool_queue,
    report_shard,
    set_pool_queue,
)
from gbif_dl.shards.run import ShardConfig, ShardResult, run_shard

__all__ = ["LocalRunner"]

logger = logging.getLogger(__name__)

#: Seconds the runner waits for a shard before it looks at the progress ticks again.
POLL_S = 0.5


class LocalRunner:
    """Run shards on this machine: in this process (``workers=1``) or a process pool.

    Args:
        workers: processes; None = 1, or one per CPU when the job resizes (``max_size``).

    A pool process that dies (out of memory, killed) fails the job with a message to rerun;
    the rerun skips the shards that are done and resumes the one that was cut. With more
    processes than ``per_host``, at most ``per_host`` shards touch one host at once (see
    :mod:`gbif_dl.runners.gate`).

    Example:
        >>> import tempfile
        >>> LocalRunner().run_shards([], Path(tempfile.mkdtemp()), ShardConfig())
        []
    """

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"workers must be a positive integer or None; got {workers!r}")
        self.workers = workers

    def processes_for(self, shards: int, config: ShardConfig) -> int:
        """How many processes run ``shards`` shards with ``config``.

        Example:
            >>> from gbif_dl.fetch import FetchConfig
            >>> LocalRunner().processes_for(8, ShardConfig())
            1
        """
        wanted = self.workers
        if wanted is None:
            wanted = (os.cpu_count() or 1) if config.fetch.max_size is not None else 1
        return max(1, min(wanted, shards))

    def plans_by_host(self, config: ShardConfig) -> bool:
        """True with more processes than ``per_host``: the shards are then cut by host.

        Example:
            >>> from gbif_dl.fetch import FetchConfig
            >>> LocalRunner(workers=8).plans_by_host(ShardConfig(fetch=FetchConfig(per_host=2)))
            True
        """
        return self.processes_for(sys.maxsize, config) > config.fetch.per_host

    def run_shards(
        self, shard_ids: Sequence[int], root: Path, config: ShardConfig
    ) -> list[ShardResult]:
        """Run every shard here; return their results in shard order."""
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
        """Run every shard here, at most ``per_host`` at once on one of ``hosts`` (None: the
        caps divided among the processes); report to ``progress``. Results in shard order.

        Example:
            >>> LocalRunner().run_planned([], Path("."), ShardConfig(), hosts={})
            []
        """
        progress = progress if progress is not None else ClusterProgress(mode=False)
        processes = self.processes_for(len(shard_ids), config)
        if processes == 1:
            progress.begin(len(shard_ids))
            return [self._run_here(sid, root, config, progress) for sid in shard_ids]
        fetch, lanes = share_hosts(config.fetch, processes)
        if hosts is None:  # hosts unknown: every shard may touch every host
            fetch, lanes = share_fetch(config.fetch, processes), processes
        if fetch.resize_workers is None and fetch.max_size is not None:
            fetch = dataclasses.replace(
                fetch, resize_workers=max(1, (os.cpu_count() or 1) // processes)
            )
        shared = dataclasses.replace(config, fetch=fetch)
        gate = HostGate(hosts or {}, lanes)
        progress.begin(len(shard_ids), gate)
        logger.info(
            "running %d shards in %d processes: per_host=%d per shard, %d shards per host",
            len(shard_ids),
            processes,
            fetch.per_host,
            lanes,
        )
        return self._run_pool(shard_ids, root, shared, gate, processes, progress)

    @staticmethod
    def _run_here(
        sid: int, root: Path, config: ShardConfig, progress: ClusterProgress
    ) -> ShardResult:
        def send(tick: dict[str, Any]) -> None:
            progress.post(tick)
            progress.poll()

        result = run_shard(sid, root, config, progress=ShardTicker(sid, send))
        progress.finish(result)
        progress.poll()
        return result

    @staticmethod
    def _run_pool(
        shard_ids: Sequence[int],
        root: Path,
        config: ShardConfig,
        gate: HostGate,
        processes: int,
        progress: ClusterProgress,
    ) -> list[ShardResult]:
        ticks = pool_queue()
        channel = Channel("pool")

        def wait(futures: set[concurrent.futures.Future[ShardResult]]) -> set[Any]:
            done = concurrent.futures.wait(futures, POLL_S, concurrent.futures.FIRST_COMPLETED)
            while True:
                try:
                    progress.post(ticks.get_nowait())
                except queue.Empty:
                    break
            progress.poll()
            return done.done

        with concurrent.futures.ProcessPoolExecutor(
            max_workers=processes, initializer=set_pool_queue, initargs=(ticks,)
        ) as pool:
            try:
                return run_gated(
                    shard_ids,
                    gate,
                    slots=lambda: processes,
                    submit=lambda sid: pool.submit(report_shard, sid, root, config, channel),
                    wait=wait,
                    result=lambda future: future.result(),
                    on_done=progress.finish,
                )
            except concurrent.futures.process.BrokenProcessPool as exc:
                pool.shutdown(wait=False, cancel_futures=True)
                raise GbifDlError(
                    "a worker process died while running a shard (out of memory or killed); "
                    "rerun the same command: done shards are skipped and the cut one resumes"
                ) from exc
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            finally:
                ticks.close()

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
from collections.abc import Sequence
from pathlib import Path

from gbif_dl.errors import ConfigError, GbifDlError
from gbif_dl.runners.base import share_fetch
from gbif_dl.shards.run import ShardConfig, ShardResult, run_shard

__all__ = ["LocalRunner"]

logger = logging.getLogger(__name__)


class LocalRunner:
    """Run shards on this machine: in this process (``workers=1``) or a process pool.

    Args:
        workers: processes; None = 1, or one per CPU when the job resizes (``max_size``).

    A pool process that dies (out of memory, killed) fails the job with a message to rerun;
    the rerun skips the shards that are done and resumes the one that was cut.

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

    def run_shards(
        self, shard_ids: Sequence[int], root: Path, config: ShardConfig
    ) -> list[ShardResult]:
        """Run every shard here; return their results in shard order."""
        processes = self.processes_for(len(shard_ids), config)
        if processes == 1:
            return [run_shard(sid, root, config) for sid in shard_ids]
        fetch = share_fetch(config.fetch, processes)
        if fetch.resize_workers is None and fetch.max_size is not None:
            fetch = dataclasses.replace(
                fetch, resize_workers=max(1, (os.cpu_count() or 1) // processes)
            )
        shared = dataclasses.replace(config, fetch=fetch)
        logger.info("running %d shards in %d processes", len(shard_ids), processes)
        results: dict[int, ShardResult] = {}
        with concurrent.futures.ProcessPoolExecutor(max_workers=processes) as pool:
            futures = {pool.submit(run_shard, sid, root, shared): sid for sid in shard_ids}
            try:
                for future in concurrent.futures.as_completed(futures):
                    results[futures[future]] = future.result()
            except concurrent.futures.process.BrokenProcessPool as exc:
                pool.shutdown(wait=False, cancel_futures=True)
                raise GbifDlError(
                    "a worker process died while running a shard (out of memory or killed); "
                    "rerun the same command: done shards are skipped and the cut one resumes"
                ) from exc
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return [results[sid] for sid in shard_ids]

"""The CPU workers of a fetch run: decode, resize and encode off the event loop, on every core.

:class:`ResizePool` runs :func:`gbif_dl.fetch.images.prepare` in a process pool sized to the
cores (started on first use, once per run, shut down when the run ends); the bodies travel as
bytes. Where processes cannot be used (no ``fork``/semaphores on the platform, a daemonic
process such as a Dask worker, a script without ``if __name__ == "__main__":`` under the spawn
start method, a worker killed by the system), it falls back to threads for the rest of the run,
with one warning: Pillow releases the GIL while it decodes, resizes and encodes, so threads
still use several cores, if less well than processes.

Example:
    >>> from gbif_dl._aio import run_sync
    >>> pool = ResizePool(workers=1, processes=False)
    >>> run_sync(pool.prepare(b"not an image", 64))[0], pool.kind
    ('resize_error', 'threads')
    >>> pool.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

from gbif_dl.fetch import images

__all__ = ["ResizePool", "default_workers"]

logger = logging.getLogger(__name__)

#: Makes the process pool (tests pass one that fails to check the fallback).
PoolFactory = Callable[[int], concurrent.futures.Executor]


def default_workers() -> int:
    """Workers of a resize pool when none is asked for: the CPUs this process may use.

    Example:
        >>> default_workers() >= 1
        True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _process_pool(workers: int) -> concurrent.futures.Executor:
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers)


class ResizePool:
    """Runs :func:`~gbif_dl.fetch.images.prepare` on ``workers`` processes (threads as a
    fallback, or with ``processes=False``).

    Args:
        workers: processes (or threads); default :func:`default_workers`.
        processes: False to use threads from the start.
        factory: makes the process pool from a worker count (default a
            ``ProcessPoolExecutor`` with multiprocessing's default start method).

    ``kind`` is ``"processes"``, ``"threads"`` or ``"idle"`` (nothing started yet).

    Example:
        >>> ResizePool(workers=2).kind
        'idle'
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        processes: bool = True,
        factory: PoolFactory = _process_pool,
    ) -> None:
        self.workers = workers or default_workers()
        self._use_processes = processes
        self._factory = factory
        self._executor: concurrent.futures.Executor | None = None
        self.kind = "idle"

    def _start(self) -> concurrent.futures.Executor:
        if self._executor is None:
            if self._use_processes:
                try:
                    self._executor = self._factory(self.workers)
                    self.kind = "processes"
                except Exception as exc:
                    self._fall_back(exc)
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.workers, thread_name_prefix="gbif-dl-resize"
                )
                self.kind = "threads"
        return self._executor

    def _fall_back(self, exc: BaseException) -> None:
        """Use threads from now on (the process pool, if any, is let go without waiting)."""
        logger.warning(
            "cannot resize in worker processes (%s: %s); resizing in %d threads instead",
            type(exc).__name__,
            exc,
            self.workers,
        )
        self._use_processes = False
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def prepare(
        self,
        body: bytes,
        max_size: int,
        quality: int = 90,
        decode_check: bool = False,
        max_pixels: int = images.DEFAULT_MAX_PIXELS,
    ) -> images.ResizedImage | tuple[str, str]:
        """:func:`gbif_dl.fetch.images.prepare` of ``body`` on a worker (same arguments, same
        result); a broken process pool is replaced by threads and the job run there.

        Example:
            >>> from gbif_dl._aio import run_sync
            >>> pool = ResizePool(workers=1, processes=False)
            >>> run_sync(pool.prepare(b"\\xff\\xd8\\xff\\xe0garbage", 64))[0]
            'resize_error'
            >>> pool.close()
        """
        loop = asyncio.get_running_loop()
        args = (body, max_size, quality, decode_check, max_pixels)
        executor = self._start()
        if self.kind == "threads":
            return await loop.run_in_executor(executor, images.prepare, *args)
        try:
            return await loop.run_in_executor(executor, images.prepare, *args)
        except (BrokenProcessPool, AssertionError, OSError, RuntimeError) as exc:
            # BrokenProcessPool: a worker died or could not start; AssertionError: this is a
            # daemonic process (no children); OSError/RuntimeError: the start itself failed
            if self._executor is executor and self._use_processes:
                self._fall_back(exc)
            return await loop.run_in_executor(self._start(), images.prepare, *args)

    def close(self) -> None:
        """Shut the workers down (waiting for running jobs; queued ones are cancelled).

        Example:
            >>> ResizePool().close()
        """
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

"""The CPU workers of a run: decode, resize, encode and hash off the event loop, on every core.

:class:`CorePool` runs functions in a process pool sized to the cores, awaited by the event
loop or waited for by a thread (the run's store threads hash there: see
:mod:`gbif_dl.dedupe.store`). :class:`ResizePool` runs :func:`gbif_dl.fetch.images.prepare`
there (started on first use, once per run, shut down when the run ends); the bodies travel as
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
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from gbif_dl.fetch import images

__all__ = ["CorePool", "ResizePool", "default_workers"]

logger = logging.getLogger(__name__)

#: Makes the process pool (tests pass one that fails to check the fallback).
PoolFactory = Callable[[int], concurrent.futures.Executor]
R = TypeVar("R")


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


#: What a process pool raises when it cannot be used: a worker died or could not start
#: (BrokenProcessPool), this is a daemonic process that may have no children
#: (AssertionError), the start itself failed (OSError, RuntimeError).
_CANNOT_USE = (BrokenProcessPool, AssertionError, OSError, RuntimeError)


class CorePool:
    """Runs functions on ``workers`` processes (threads as a fallback, or with
    ``processes=False``), for the event loop (:meth:`run`) or for a thread (:meth:`call`).

    Args:
        workers: processes (or threads); default :func:`default_workers`.
        processes: False to use threads from the start.
        factory: makes the process pool from a worker count (default a
            ``ProcessPoolExecutor`` with multiprocessing's default start method).
        task: what the workers do, as the fallback's warning says it ("resizing").

    ``kind`` is ``"processes"``, ``"threads"`` or ``"idle"`` (nothing started yet). Safe to
    use from several threads.

    Example:
        >>> pool = CorePool(workers=1, processes=False)
        >>> pool.call(sum, [1, 2, 3]), pool.kind
        (6, 'threads')
        >>> pool.close()
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        processes: bool = True,
        factory: PoolFactory = _process_pool,
        task: str = "working",
    ) -> None:
        self.workers = workers or default_workers()
        self.task = task
        self._use_processes = processes
        self._factory = factory
        self._executor: concurrent.futures.Executor | None = None
        self._lock = threading.Lock()
        self.kind = "idle"

    def _start(self) -> concurrent.futures.Executor:
        with self._lock:
            if self._executor is None:
                if self._use_processes:
                    try:
                        self._executor = self._factory(self.workers)
                        self.kind = "processes"
                    except Exception as exc:
                        self._fall_back_locked(exc)
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self.workers, thread_name_prefix=f"gbif-dl-{self.task}"
                    )
                    self.kind = "threads"
            return self._executor

    def _fall_back(self, executor: concurrent.futures.Executor, exc: BaseException) -> None:
        """Use threads from now on, unless another caller already switched ``executor``."""
        with self._lock:
            if self._executor is executor and self._use_processes:
                self._fall_back_locked(exc)

    def _fall_back_locked(self, exc: BaseException) -> None:
        """(under the lock) threads from now on; the process pool is let go without waiting."""
        logger.warning(
            "cannot do the %s in worker processes (%s: %s); %s in %d threads instead",
            self.task,
            type(exc).__name__,
            exc,
            self.task,
            self.workers,
        )
        self._use_processes = False
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on a worker, awaited; a broken process pool is replaced by threads
        and the job run there.

        Example:
            >>> from gbif_dl._aio import run_sync
            >>> pool = CorePool(workers=1, processes=False)
            >>> run_sync(pool.run(max, 1, 5))
            5
            >>> pool.close()
        """
        loop = asyncio.get_running_loop()
        executor = self._start()
        if self.kind == "threads":
            return await loop.run_in_executor(executor, fn, *args)
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except _CANNOT_USE as exc:
            self._fall_back(executor, exc)
            return await loop.run_in_executor(self._start(), fn, *args)

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on a worker, waited for in this thread (never the event loop's); a
        broken process pool is replaced by threads and the job run there.

        Example:
            >>> pool = CorePool(workers=1, processes=False)
            >>> pool.call(pow, 2, 10)
            1024
            >>> pool.close()
        """
        executor = self._start()
        if self.kind == "threads":
            return executor.submit(fn, *args).result()
        try:
            return executor.submit(fn, *args).result()
        except _CANNOT_USE as exc:
            self._fall_back(executor, exc)
            return self._start().submit(fn, *args).result()

    def close(self) -> None:
        """Shut the workers down (waiting for running jobs; queued ones are cancelled).

        Example:
            >>> CorePool().close()
        """
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


class ResizePool(CorePool):
    """Runs :func:`~gbif_dl.fetch.images.prepare` on ``workers`` processes (threads as a
    fallback, or with ``processes=False``); arguments as :class:`CorePool`'s.

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
        super().__init__(workers, processes=processes, factory=factory, task="resizing")

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
        return await self.run(images.prepare, body, max_size, quality, decode_check, max_pixels)

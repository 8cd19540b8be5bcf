"""Store threads: the writer's blocking work off the event loop, handed over in batches.

Creating a file can cost a millisecond of kernel time (ext4 under churn), so the run stores
results in threads, where that overlaps with the downloads on another core. A thread pool's
``run_in_executor`` costs a queue put, a thread wake-up and a loop wake-up *per file*, which on
a fast download is a large share of the loop's time; :class:`StoreThreads` instead keeps a few
threads that take whatever work is waiting, do it, and hand the outcomes back to the loop in
one call per batch. A thread is woken only when it sleeps: while the downloads outpace the
disk, no wake-up is needed at all.

With ``prepare``, a thread first hands its whole batch to that function (one call, e.g. to a
worker process that hashes every body of the batch) and then calls ``work(value, prepared)``
with each value and its share of the answer.

Each :meth:`StoreThreads.submit` returns an asyncio future that gets the function's value or
its exception; cancelling the awaiting task does not stop the work (shield the future to wait
for it anyway, as :class:`gbif_dl.pipeline.run.Run` does so no stored file lacks its row).

Example:
    >>> from gbif_dl._aio import run_sync
    >>> async def main():
    ...     stores = StoreThreads(lambda x: x * 2, threads=2)
    ...     try:
    ...         return await asyncio.gather(*(stores.submit(i) for i in range(5)))
    ...     finally:
    ...         stores.close()
    >>> run_sync(main())
    [0, 2, 4, 6, 8]
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["STORE_BATCH", "STORE_THREADS", "StoreThreads"]

#: Threads that store at once (files in different folders are created in parallel).
STORE_THREADS = 2
#: Pieces of work a thread takes at once at most (the others stay for the other threads).
STORE_BATCH = 32

T = TypeVar("T")
R = TypeVar("R")

_Outcome = tuple["asyncio.Future[Any]", bool, Any]  # future, succeeded, value or exception


class StoreThreads(Generic[T, R]):
    """``threads`` threads running ``work`` on submitted values, outcomes in batches.

    Args:
        work: the blocking function, called in a store thread with each submitted value (and,
            with ``prepare``, that value's item of ``prepare``'s list).
        threads: how many threads.
        prepare: called in the store thread with each batch of values; returns one item per
            value. Should it raise, every value of the batch gets its exception.

    Must be made and used inside the running event loop; :meth:`close` once done (it waits
    for the threads, after the work already submitted).

    Example:
        >>> StoreThreads(str, threads=1).threads
        1
    """

    def __init__(
        self,
        work: Callable[..., R],
        *,
        threads: int = STORE_THREADS,
        prepare: Callable[[list[T]], list[Any]] | None = None,
    ) -> None:
        self.work = work
        self.prepare = prepare
        self.threads = max(1, threads)
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._changed = threading.Condition(threading.Lock())
        self._sleeping = 0
        self._closed = False
        self._workers: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, value: T) -> asyncio.Future[R]:
        """The future of ``work(value)``, run in a store thread."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = self._loop.create_future()
        with self._changed:
            if self._closed:
                raise RuntimeError("StoreThreads.submit after close()")
            self._waiting.append((value, future))
            if self._sleeping:
                self._changed.notify()
            elif len(self._workers) < self.threads:
                self._start()
        return future

    def _start(self) -> None:
        name = f"gbif-dl-store-{len(self._workers)}"
        worker = threading.Thread(target=self._serve, name=name, daemon=True)
        self._workers.append(worker)
        worker.start()

    def _serve(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._sleeping += 1
                    self._changed.wait()
                    self._sleeping -= 1
                if not self._waiting:  # closed and nothing left
                    return
                take = min(len(self._waiting), STORE_BATCH)
                batch = [self._waiting.popleft() for _ in range(take)]
            outcomes = self._do(batch)
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(_settle, outcomes)
            except RuntimeError:  # the loop is closed: nobody waits for these any more
                return

    def _do(self, batch: list[tuple[T, asyncio.Future[R]]]) -> list[_Outcome]:
        """The outcome of every value of ``batch`` (a value or an exception, never raised)."""
        prepared: list[Any] | None = None
        if self.prepare is not None:
            try:
                prepared = self.prepare([value for value, _ in batch])
            except BaseException as exc:  # every value of the batch gets it
                return [(future, False, exc) for _, future in batch]
        outcomes: list[_Outcome] = []
        for i, (value, future) in enumerate(batch):
            try:
                result = self.work(value) if prepared is None else self.work(value, prepared[i])
                outcomes.append((future, True, result))
            except BaseException as exc:  # handed to the awaiting task
                outcomes.append((future, False, exc))
        return outcomes

    def close(self) -> None:
        """Let the threads finish the submitted work, then stop them (waits for them)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        for worker in self._workers:
            worker.join()
        self._workers.clear()


def _settle(outcomes: list[_Outcome]) -> None:
    for future, succeeded, value in outcomes:
        if future.cancelled():
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)

"""One async core, one sync entry point: run coroutines and async iterators from sync code.

Works both in plain scripts and inside an already running event loop (Jupyter), without
``nest_asyncio``: when the calling thread already runs a loop, the work runs on a fresh loop in a
helper thread.

Example:
    >>> async def answer() -> int:
    ...     return 42
    >>> run_sync(answer())
    42
    >>> async def numbers():
    ...     for i in range(3):
    ...         yield i
    >>> list(iterate_sync(numbers()))
    [0, 1, 2]
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["iterate_sync", "run_sync"]

T = TypeVar("T")


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from any synchronous context."""
    if not _loop_running():
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="gbif-dl-loop", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


_DONE = object()


def iterate_sync(agen: AsyncIterator[T], *, buffer: int = 1024) -> Iterator[T]:
    """Iterate an async iterator from synchronous code.

    The async iterator runs on its own event loop in a helper thread and hands items over
    through a bounded queue, so memory stays bounded. Closing the returned generator early
    (``break``) cancels the producer.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=buffer)
    stop = threading.Event()
    failure: list[BaseException] = []

    async def pump() -> None:
        try:
            async for item in agen:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        await asyncio.sleep(0)
                if stop.is_set():
                    break
        except BaseException as exc:
            failure.append(exc)
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                # already failing or cancelled: an error while closing adds nothing
                with contextlib.suppress(BaseException):
                    await aclose()

    def target() -> None:
        try:
            asyncio.run(pump())
        finally:
            while True:
                try:
                    items.put(_DONE, timeout=0.1)
                    break
                except queue.Full:
                    if stop.is_set():
                        with contextlib.suppress(queue.Empty):
                            items.get_nowait()

    thread = threading.Thread(target=target, name="gbif-dl-iter", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.05)
        thread.join()

"""StoreThreads: blocking work off the loop, outcomes in batches, nothing lost or reordered
per future, cancellation of the waiter never stops the work."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gbif_dl._aio import run_sync
from gbif_dl.pipeline.store import STORE_BATCH, StoreThreads


def test_every_submitted_value_gets_its_own_outcome() -> None:
    """Many more values than a batch: each future gets work(value), in any thread but the
    loop's, and at most the configured number of threads run."""
    seen_threads: set[str] = set()
    lock = threading.Lock()

    def work(value: int) -> int:
        with lock:
            seen_threads.add(threading.current_thread().name)
        return value * value

    async def main() -> list[int]:
        stores: StoreThreads[int, int] = StoreThreads(work, threads=3)
        try:
            return list(await asyncio.gather(*(stores.submit(i) for i in range(5 * STORE_BATCH))))
        finally:
            stores.close()

    assert run_sync(main()) == [i * i for i in range(5 * STORE_BATCH)]
    assert seen_threads and threading.current_thread().name not in seen_threads
    assert len(seen_threads) <= 3


def test_an_exception_of_the_work_goes_to_its_future_only() -> None:
    def work(value: int) -> int:
        if value == 2:
            raise OSError(28, "No space left on device")
        return value

    async def main() -> list[object]:
        stores: StoreThreads[int, int] = StoreThreads(work, threads=1)
        try:
            return list(
                await asyncio.gather(*(stores.submit(i) for i in range(4)), return_exceptions=True)
            )
        finally:
            stores.close()

    outcomes = run_sync(main())
    assert outcomes[:2] == [0, 1] and outcomes[3] == 3
    assert isinstance(outcomes[2], OSError) and outcomes[2].errno == 28


def test_cancelling_the_waiter_does_not_stop_the_work_and_close_waits_for_it() -> None:
    """A shielded future still completes after its waiter is cancelled (the run journals the
    row of a file stored meanwhile); close() returns only once the work is done."""
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def work(value: int) -> int:
        started.set()
        release.wait(5)
        done.append(value)
        return value

    async def main() -> int:
        stores: StoreThreads[int, int] = StoreThreads(work, threads=1)
        future = stores.submit(7)
        waiter = asyncio.ensure_future(asyncio.shield(future))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        value = await future
        stores.close()
        return value

    assert run_sync(main()) == 7 and done == [7]


def test_submit_after_close_is_refused() -> None:
    async def main() -> None:
        stores: StoreThreads[int, int] = StoreThreads(lambda value: value)
        stores.close()
        with pytest.raises(RuntimeError, match="after close"):
            stores.submit(1)

    run_sync(main())


def test_prepare_sees_whole_batches_and_each_value_gets_its_share() -> None:
    """With ``prepare``, one call per batch (not per value) and work(value, prepared[i])."""
    batches: list[list[int]] = []

    def prepare(values: list[int]) -> list[int]:
        batches.append(list(values))
        return [v + 1000 for v in values]

    async def main() -> list[tuple[int, int]]:
        stores: StoreThreads[int, tuple[int, int]] = StoreThreads(
            lambda value, extra: (value, extra), threads=1, prepare=prepare
        )
        try:
            return list(await asyncio.gather(*(stores.submit(i) for i in range(3 * STORE_BATCH))))
        finally:
            stores.close()

    outcomes = run_sync(main())
    assert outcomes == [(i, i + 1000) for i in range(3 * STORE_BATCH)]
    assert sorted(v for batch in batches for v in batch) == list(range(3 * STORE_BATCH))
    assert len(batches) < 3 * STORE_BATCH and max(map(len, batches)) <= STORE_BATCH


def test_a_failing_prepare_fails_every_value_of_its_batch_and_nothing_else() -> None:
    def prepare(values: list[int]) -> list[int]:
        if 1 in values:
            raise RuntimeError("the hashing workers are gone")
        return values

    async def one(stores: StoreThreads[int, int], value: int) -> object:
        try:
            return await stores.submit(value)
        except RuntimeError as exc:
            return exc

    async def main() -> list[object]:
        stores: StoreThreads[int, int] = StoreThreads(
            lambda value, extra: value + extra, threads=1, prepare=prepare
        )
        try:
            first = await one(stores, 0)  # a batch of its own
            return [first, await one(stores, 1), await one(stores, 2)]
        finally:
            stores.close()

    first, failed, after = run_sync(main())
    assert first == 0 and after == 4
    assert isinstance(failed, RuntimeError) and "hashing workers" in str(failed)

"""The resize workers: a process pool on the cores, threads where processes cannot be used."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import multiprocessing
import sys
from typing import Any

import pytest
from PIL import Image

from gbif_dl.fetch import FetchConfig, FetchEngine, FetchResult
from gbif_dl.fetch.images import ResizedImage, resize_image
from gbif_dl.fetch.workers import ResizePool
from gbif_dl.records import make_record
from gbif_dl.testing.mediahost import MediaHosts
from gbif_dl.testing.renditions import photo_jpeg

PHOTO = photo_jpeg(1200, 900, seed=3)


def _prepare(pool: ResizePool, body: bytes = PHOTO) -> Any:
    return asyncio.run(pool.prepare(body, 256))


def _fail_to_start(workers: int) -> concurrent.futures.Executor:
    raise OSError("no semaphores on this platform")


def _refuse(*_args: Any) -> None:
    raise RuntimeError("this worker cannot start")


def _dying_pool(workers: int) -> concurrent.futures.Executor:
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, initializer=_refuse)


def test_process_pool_gives_the_same_image_as_a_direct_call() -> None:
    pool = ResizePool(workers=1)
    try:
        out = _prepare(pool)
        assert pool.kind == "processes"
    finally:
        pool.close()
    assert isinstance(out, ResizedImage)
    assert out == resize_image(PHOTO, 256)
    assert (out.width, out.height) == (256, 192)


@pytest.mark.parametrize("factory", [_fail_to_start, _dying_pool])
def test_threads_take_over_when_processes_cannot_be_used(
    factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A pool that cannot start, or whose workers die: the job is done in a thread, the rest
    of the run too, with one warning."""
    pool = ResizePool(workers=1, factory=factory)
    try:
        with caplog.at_level(logging.WARNING, logger="gbif_dl.fetch.workers"):
            first, second = _prepare(pool), _prepare(pool)
        assert pool.kind == "threads"
    finally:
        pool.close()
    assert first == second == resize_image(PHOTO, 256)
    warnings = [r for r in caplog.records if "resizing in 1 threads" in r.getMessage()]
    assert len(warnings) == 1


def test_bad_bodies_are_reasons_not_exceptions_in_both_kinds() -> None:
    for pool in (ResizePool(workers=1), ResizePool(workers=1, processes=False)):
        try:
            assert _prepare(pool, b"\xff\xd8\xff\xe0garbage")[0] == "resize_error"
        finally:
            pool.close()


def _run_in_daemon(base_url: str, queue: Any) -> None:
    """In a daemonic process (no children allowed, as in a Dask worker): fetch and resize."""
    results: list[FetchResult] = []
    config = FetchConfig(concurrency=4, per_host=2, max_size=64, allow_private=True)
    urls = [f"{base_url}/photo/{i}.jpg" for i in range(4)]
    asyncio.run(FetchEngine(config).run([make_record(u) for u in urls], results.append))
    queue.put([(r.ok, r.width, r.height, r.mime) for r in results])


@pytest.mark.skipif(sys.platform != "linux", reason="uses the fork start method")
def test_the_engine_resizes_in_threads_inside_a_daemonic_process() -> None:
    out = io.BytesIO()
    Image.new("RGB", (400, 200), (10, 200, 30)).save(out, "JPEG")
    context = multiprocessing.get_context("fork")
    with MediaHosts(n_hosts=1) as hosts:
        for i in range(4):
            hosts.serve(f"/photo/{i}.jpg", out.getvalue())
        queue = context.Queue()
        child = context.Process(target=_run_in_daemon, args=(hosts.base_urls[0], queue))
        child.daemon = True
        child.start()
        outcome = queue.get(timeout=120)
        child.join(timeout=60)
    assert child.exitcode == 0
    assert outcome == [(True, 64, 32, "image/jpeg")] * 4


def test_core_pool_call_from_a_thread_runs_in_a_worker_process_or_falls_back() -> None:
    """CorePool.call (what the store threads use to hash): the answer of a worker process,
    and the same answer from a thread when processes cannot start."""
    from gbif_dl.dedupe.phash import dhash, dhash_many
    from gbif_dl.fetch.workers import CorePool

    bodies = [PHOTO, b"not an image", photo_jpeg(300, 200, seed=5)]
    expected = [dhash(body) for body in bodies]
    assert expected[0] is not None and expected[1] is None
    for pool in (CorePool(workers=1, task="hashing"), CorePool(workers=1, factory=_fail_to_start)):
        try:
            assert pool.call(dhash_many, bodies) == expected
            assert pool.call(dhash_many, bodies[:1]) == expected[:1]
        finally:
            pool.close()
    pool = CorePool(workers=1, task="hashing")
    try:
        pool.call(dhash_many, [])
        assert pool.kind == "processes"
    finally:
        pool.close()
    broken = CorePool(workers=1, factory=_dying_pool)
    try:
        assert broken.call(dhash_many, bodies) == expected
        assert broken.kind == "threads"
    finally:
        broken.close()

"""Benchmark: a CPU-heavy job (resize 1600x1200 JPEGs to 512) on 2 Dask workers vs one process.

Usage:
    python benchmarks/dask_speedup.py [--n 2000] [--workers 2] [--json OUT.json]

The images come from :class:`gbif_dl.testing.mediahost.MediaHosts` running in a separate
process (so serving them does not compete with the client for the GIL): a few distinct
1600x1200 photo-like JPEGs served at ``n`` distinct paths on 2 loopback hosts. Three runs, each
into a fresh folder:

- ``plain``: ``gbif_dl.io.download(max_size=512)``, the default single process whose fetch
  engine resizes in a pool of one process per CPU;
- ``local-1``: ``runner="local", workers=1`` with ``resize_workers=1``: one process, one core
  for resizing (the baseline of the speed-up);
- ``dask-W``: ``runner="dask"`` on a LocalCluster of ``W`` worker processes (one thread and one
  resize process each). The cluster is started before the clock starts; its start-up time is
  reported separately.

Prints a JSON summary (seconds, images/s and the speed-ups) and writes it to ``--json``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

N_BODIES = 8
SIZE = (1600, 1200)


def _bodies() -> list[bytes]:
    """Photo-like JPEGs: smooth gradients plus noise, so decoding and resizing cost real CPU."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = SIZE
    out = []
    for i in range(N_BODIES):
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack(
            [(x * (i + 1)) % 256, (y * (i + 2)) % 256, ((x + y) * (i + 3)) % 256], axis=-1
        )
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, format="JPEG", quality=88)
        out.append(buffer.getvalue())
    return out


def _serve(n: int, queue: Any, stop: Any) -> None:
    from gbif_dl.testing.mediahost import MediaHosts

    bodies = _bodies()
    with MediaHosts(n_hosts=2, distinct_pixels=False) as hosts:
        for i in range(n):
            hosts.serve(f"/photo/{i}.jpg", bodies[i % N_BODIES])
        queue.put(hosts.base_urls)
        stop.wait()


def _records(bases: list[str], n: int) -> list[dict[str, Any]]:
    return [
        {"url": f"{bases[i % len(bases)]}/photo/{i}.jpg", "label": f"species {i % 10}"}
        for i in range(n)
    ]


def _timed(label: str, func: Any, root: Path, n: int) -> dict[str, Any]:
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    stats = func(root)
    elapsed = time.perf_counter() - started
    if stats["success"] != n:
        raise SystemExit(f"{label}: {stats['success']} of {n} images stored; {stats['reasons']}")
    print(f"{label:>10}: {elapsed:7.2f} s  {n / elapsed:7.1f} img/s", file=sys.stderr)
    return {"seconds": round(elapsed, 3), "images_per_s": round(n / elapsed, 1)}


def _parse_args() -> argparse.Namespace:
    """The command line: ``--n``, ``--workers``, ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def _start_server(n: int) -> tuple[Any, Any, list[str]]:
    """Start the media hosts in a spawned process; its process, stop event and base URLs."""
    context = multiprocessing.get_context("spawn")
    queue, stop = context.Queue(), context.Event()
    server = context.Process(target=_serve, args=(n, queue, stop), daemon=True)
    server.start()
    return server, stop, queue.get(timeout=120)


def _job_and_machine(args: argparse.Namespace) -> dict[str, Any]:
    """The summary's first keys: the job, the machine and its load before the runs."""
    return {
        "n": args.n,
        "image": f"{SIZE[0]}x{SIZE[1]} JPEG -> 512",
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }


def _add_speedups(results: dict[str, Any], workers: int) -> None:
    """Add the Dask run's speed-ups over ``local-1`` and ``plain``, and the load after."""
    dask_s = results[f"dask-{workers}"]["seconds"]
    results["speedup_vs_local_1"] = round(results["local-1"]["seconds"] / dask_s, 2)
    results["speedup_vs_plain"] = round(results["plain"]["seconds"] / dask_s, 2)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    """Run the three downloads, print the JSON summary and write it to ``--json``.

    Example:
        >>> main()  # doctest: +SKIP
    """
    args = _parse_args()

    import dask
    import distributed

    from gbif_dl.fetch import FetchConfig
    from gbif_dl.io import download
    from gbif_dl.runners import run

    server, stop, bases = _start_server(args.n)
    records = _records(bases, args.n)
    work = Path(tempfile.mkdtemp(prefix="gbif-dl-dask-speedup-"))
    one_core = FetchConfig(max_size=512, resize_workers=1)
    results = _job_and_machine(args)
    try:
        results["plain"] = _timed(
            "plain",
            lambda root: download(records, root=root, max_size=512, progress=False),
            work / "plain",
            args.n,
        )
        results["local-1"] = _timed(
            "local-1",
            lambda root: run(records, root, runner="local", workers=1, fetch=one_core),
            work / "local",
            args.n,
        )
        started = time.perf_counter()
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = distributed.LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",
            )
        client = distributed.Client(cluster)
        results["dask_startup_s"] = round(time.perf_counter() - started, 2)
        try:
            shard_size = max(1, args.n // (4 * args.workers))  # a few shards per worker
            results[f"dask-{args.workers}"] = _timed(
                f"dask-{args.workers}",
                lambda root: run(
                    records,
                    root,
                    runner="dask",
                    dask_client=client,
                    shard_size=shard_size,
                    fetch=one_core,
                ),
                work / "dask",
                args.n,
            )
        finally:
            client.close()
            cluster.close()
    finally:
        stop.set()
        server.join(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    _add_speedups(results, args.workers)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

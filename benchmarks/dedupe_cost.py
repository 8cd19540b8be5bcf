"""The cost of content hashing (sha256 + dHash + the duplicate lookups) on a download, A/B.

The same distinct images (the simulator's pictures, about 80% JPEG and 20% PNG, 64..400 px,
rendered once and served as static bodies by two media hosts in a separate process) are
downloaded with ``content_hashes=False`` and ``content_hashes=True`` into fresh roots,
alternating, ``--repeats`` times each; prints every run and the median images/s of each arm.
Issue 18 asks for at most a 15% cut.

    PYTHONPATH=src python benchmarks/dedupe_cost.py [--n 10000] [--repeats 3] [--json PATH]

A harder setting than ``python benchmarks/run.py hashing`` (case a's nginx and JPEGs): here the
media hosts are Python and share the machine's cores with the download, so every extra
microsecond of CPU shows; PNGs are decoded whole.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _serve(n: int, queue: Any, stop: Any) -> None:
    from gbif_dl.testing.mediahost import MediaHosts, render_image

    with MediaHosts(n_hosts=2) as hosts:
        for i in range(n):  # rendered once, served as they are: the host is not the limit
            body, mime = render_image(f"/media/{i}/0.jpg")
            hosts.serve(f"/b/{i}.jpg", body, mime)
        queue.put(hosts.base_urls)
        stop.wait()


def _once(base_urls: list[str], n: int, hashes: bool) -> float:
    import gbif_dl

    root = Path(tempfile.mkdtemp(prefix="gbif-dl-dedupe-cost-"))
    items = (
        {"url": f"{base_urls[i % 2]}/b/{i}.jpg", "label": f"c{i % 20}", "gbifID": str(i)}
        for i in range(n)
    )
    try:
        started = time.perf_counter()
        stats = gbif_dl.io.download(
            items, root=str(root), progress=False, allow_private=True, content_hashes=hashes
        )
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return stats.success / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    queue, stop = context.Queue(), context.Event()
    server = context.Process(target=_serve, args=(args.n, queue, stop), daemon=True)
    server.start()
    try:
        base_urls = queue.get(timeout=600)
        _once(base_urls, min(args.n, 500), False)  # warm-up: imports, connections
        rates: dict[bool, list[float]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for hashes in (False, True):
                rate = _once(base_urls, args.n, hashes)
                rates[hashes].append(rate)
                print(f"repeat {repeat}: content_hashes={hashes}: {rate:,.0f} images/s")
    finally:
        stop.set()
        server.join(timeout=10)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    change = (on / off - 1) * 100
    print(f"median images/s: without hashing {off:,.0f}, with {on:,.0f} ({change:+.1f}%)")
    if args.json is not None:
        summary = {
            "images": args.n,
            "repeats": args.repeats,
            "rates_without": [round(r, 1) for r in rates[False]],
            "rates_with": [round(r, 1) for r in rates[True]],
            "median_without": round(off, 1),
            "median_with": round(on, 1),
            "change_pct": round(change, 1),
        }
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

"""Micro-benchmark of the resume index: microseconds per record for what a run does per record.

    python benchmarks/resume_lookup.py [--records 1000000] [--json OUT.json]

Two cases, on the public API (``gbif_dl.manifest``):

* ``fresh``: a run over new urls (no manifest): per record, ``get`` (a miss), mark it pending,
  ``get`` again (as the result arrives), mark it finished: the run's own seen set;
* ``rerun``: the index of a manifest of ``--records`` rows (``ResumeIndex.from_arrays``), one
  ``get`` per url (every one a hit), then as many misses.

It prints microseconds per record, the index's ``nbytes`` (memory it holds) and the resident
set size (RSS) before and after, as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return round(int(handle.read().split()[1]) * 4096 / 2**20, 1)


def fresh(n: int) -> dict[str, Any]:
    from gbif_dl.manifest import ResumeIndex

    index = ResumeIndex()
    urls = (f"http://h{i % 4}.example.org/media/{i}/0.jpg" for i in range(n))
    rss0 = rss_mib()
    start = time.perf_counter()
    for url in urls:
        if index.get(url) is not None:
            raise AssertionError(url)
        index[url] = ("pending", None)
        index.get(url, (None, None))
        index[url] = ("finished", None)
    elapsed = time.perf_counter() - start
    # the same url again in this run is seen (every 1000th url)
    seen = all(index.get(f"http://h{i % 4}.example.org/media/{i}/0.jpg") for i in range(0, n, 1000))
    out = {
        "us_per_record": round(elapsed / n * 1e6, 2),
        "nbytes": index.nbytes,
        "rss_before_mib": rss0,
        "rss_after_mib": rss_mib(),
        "repeats_seen": seen,
    }
    if hasattr(index, "close"):
        index.close()
    return out


def rerun(n: int) -> dict[str, Any]:
    import pyarrow as pa

    from gbif_dl.manifest import ResumeIndex

    urls = [f"http://h{i % 4}.example.org/media/{i}/0.jpg" for i in range(n)]
    paths = [f"class-{i % 100:03d}/{i:040x}.jpg" for i in range(n)]
    start = time.perf_counter()
    index = ResumeIndex.from_arrays(pa.array(urls), pa.array(["success"] * n), pa.array(paths))
    built = time.perf_counter() - start
    del paths
    rss0 = rss_mib()
    start = time.perf_counter()
    for url in urls:
        if index.get(url) is None:
            raise AssertionError(url)
    hits = time.perf_counter() - start
    start = time.perf_counter()
    for url in urls:
        if index.get(url + "?new") is not None:
            raise AssertionError(url)
    misses = time.perf_counter() - start
    out = {
        "build_s": round(built, 2),
        "us_per_hit": round(hits / n * 1e6, 2),
        "us_per_miss": round(misses / n * 1e6, 2),
        "nbytes": index.nbytes,
        "rss_mib": rss0,
    }
    if hasattr(index, "close"):
        index.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--case", choices=["fresh", "rerun", "both"], default="both")
    parser.add_argument("--json", help="also write the JSON summary to this file")
    args = parser.parse_args(argv)
    summary: dict[str, Any] = {"records": args.records}
    if args.case in ("fresh", "both"):
        summary["fresh"] = fresh(args.records)
    if args.case in ("rerun", "both"):
        summary["rerun"] = rerun(args.records)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

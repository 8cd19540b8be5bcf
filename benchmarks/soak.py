"""Soak run: many records through ``gbif_dl.io.download`` with the images served from memory.

    python benchmarks/soak.py [--records 1000000] [--hosts 4] [--concurrency 128]
                              [--per-host 32] [--root DIR] [--keep] [--json OUT.json]
    python benchmarks/soak.py --sizes 100000,1000000 [--json OUT.json]

With ``--sizes``, each size runs in a fresh process (its own peak) one after the other, and the
summary adds the ratio of the peak RSS of the largest to the smallest, the slope in bytes per
record between them, and the peak that slope extrapolates to at 10^8 records (issue 19: peak
RSS at 10^6 within 15% of that at 10^5, a flat line to 10^8). The peak is the kernel's
high-water mark of this process's resident set (``VmHWM``), not a sample.

The media hosts (:class:`gbif_dl.testing.mediahost.MediaHosts`, no latency, no faults, tiny
images rendered from an in-memory cache) run in a child process, so the resident memory sampled
here is the download pipeline's alone. The records are produced lazily by a generator (never a
list), so the input itself costs no memory.

What it measures:

* the resident set size (RSS) of this process every ``--sample-s`` seconds, and at every 10% of
  the records taken from the input;
* the throughput of every 10% slice (records per second), to show whether the run slows down;
* the time from the last record taken to the end of ``download()`` (draining the last requests,
  merging the journal into ``manifest.parquet``, writing the attribution files).

It prints a JSON summary and a markdown table (for BENCHMARKS.md); ``--json`` also writes the
JSON to a file. The output root is a temporary folder removed at the end unless ``--keep`` or
``--root`` is given.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The resident set size of this process (Linux ``/proc``, else psutil)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * PAGE
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def rss_peak_bytes() -> int:
    """The high-water mark of this process's resident set (``VmHWM``), else the latest RSS."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss_bytes()


def _serve(n_hosts: int, conn: Connection) -> None:
    """Child process: run the media hosts until the parent sends anything."""
    from gbif_dl.testing.mediahost import MediaHosts

    with MediaHosts(n_hosts=n_hosts, distinct_pixels=False) as hosts:
        conn.send(hosts.base_urls)
        conn.recv()
        stats = hosts.stats()
        conn.send({key: s.requests for key, s in stats.items()})


class Sampler:
    """Samples RSS on a timer and records a checkpoint at every 10% of the input."""

    def __init__(self, total: int, every_s: float) -> None:
        self.total = total
        self.every_s = every_s
        self.taken = 0
        self.started = time.monotonic()
        self.samples: list[tuple[float, int, int]] = []  # (t, taken, rss)
        self.checkpoints: list[tuple[int, float, int]] = [(0, 0.0, rss_bytes())]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append((time.monotonic() - self.started, self.taken, rss_bytes()))

    def records(self, base_urls: list[str], n_labels: int) -> Iterator[dict[str, Any]]:
        step = max(1, self.total // 10)
        n_hosts = len(base_urls)
        for i in range(self.total):
            self.taken = i + 1
            if (i + 1) % step == 0:
                self.checkpoints.append((i + 1, time.monotonic() - self.started, rss_bytes()))
            yield {
                "url": f"{base_urls[i % n_hosts]}/media/{i}/0.jpg",
                "label": f"class-{i % n_labels:03d}",
                "gbifID": str(i),
                "license": "CC_BY_4_0",
                "rightsHolder": f"holder {i % 97}",
                "datasetKey": f"dataset-{i % 7}",
            }


def _mib(value: float) -> float:
    return round(value / 2**20, 1)


def _manifest_rows(root: Path) -> int | None:
    """The rows of ``root/manifest.parquet``; ``None`` when it cannot be read."""
    try:
        import pyarrow.parquet as pq

        return pq.read_metadata(root / "manifest.parquet").num_rows
    except Exception:  # reported as null
        return None


def _slices(checkpoints: list[tuple[int, float, int]], records: int) -> list[dict[str, Any]]:
    """Records, elapsed time, rate and RSS of every 10% slice between the checkpoints."""
    slices = []
    for (n0, t0, _), (n1, t1, rss1) in pairwise(checkpoints):
        slices.append(
            {
                "records": n1,
                "share": round(n1 / records, 2),
                "elapsed_s": round(t1, 1),
                "rate_per_s": round((n1 - n0) / max(t1 - t0, 1e-9), 1),
                "rss_mib": _mib(rss1),
            }
        )
    return slices


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One soak run of ``args.records`` records; its JSON summary.

    Example:
        >>> run(argparse.Namespace(records=1000, hosts=2, labels=10, concurrency=32,
        ...     per_host=16, sample_s=1.0, root=None))["success"]  # doctest: +SKIP
        1000
    """
    import logging

    from gbif_dl.io import download

    logging.basicConfig(level=logging.WARNING)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(args.hosts, child), daemon=True)
    server.start()
    base_urls = parent.recv()
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="gbif-dl-soak-"))
    sampler = Sampler(args.records, args.sample_s)
    rss_start = rss_bytes()
    sampler.start()
    try:
        stats = download(
            sampler.records(base_urls, args.labels),
            root=root,
            concurrency=args.concurrency,
            per_host=args.per_host,
            retries=1,
            progress=False,
        )
        finished = time.monotonic() - sampler.started
        rss_hwm = rss_peak_bytes()
    finally:
        sampler.stop()
        parent.send("stop")
        served = parent.recv() if server.is_alive() else {}
        server.join(10)
    input_done = sampler.checkpoints[-1][1]
    manifest_rows = _manifest_rows(root)
    slices = _slices(sampler.checkpoints, args.records)
    rss_series = [rss for _, _, rss in sampler.samples]
    fetch_series = [rss for t, _, rss in sampler.samples if t <= input_done]
    return {
        "root": str(root),
        "records": args.records,
        "hosts": args.hosts,
        "concurrency": args.concurrency,
        "per_host": args.per_host,
        "success": stats["success"],
        "failed": stats["failed"],
        "skipped": stats["skipped"],
        "manifest_rows": manifest_rows,
        "requests_served": sum(served.values()) if served else None,
        "bytes": stats["bytes"],
        "elapsed_s": round(finished, 1),
        "rate_per_s": round(args.records / finished, 1),
        "input_done_s": round(input_done, 1),
        "tail_s": round(finished - input_done, 1),
        "rss_start_mib": _mib(rss_start),
        "rss_peak_mib": _mib(max(rss_series + [c[2] for c in sampler.checkpoints])),
        "rss_hwm_mib": _mib(rss_hwm),
        "rss_peak_while_fetching_mib": _mib(
            max(fetch_series + [c[2] for c in sampler.checkpoints])
        ),
        "rss_at_10pct_mib": slices[0]["rss_mib"] if slices else None,
        "rss_at_100pct_mib": slices[-1]["rss_mib"] if slices else None,
        "slices": slices,
        "samples": [
            {"t": round(t, 1), "taken": n, "rss_mib": _mib(r)} for t, n, r in sampler.samples
        ],
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"Soak: {summary['records']:,} records, {summary['hosts']} in-memory hosts, "
        f"concurrency {summary['concurrency']}, per host {summary['per_host']}: "
        f"{summary['success']:,} stored, {summary['failed']:,} failed, "
        f"{summary['manifest_rows']} manifest rows, {summary['elapsed_s']} s "
        f"({summary['rate_per_s']} records/s); RSS {summary['rss_start_mib']} MiB at start, "
        f"peak {summary['rss_peak_while_fetching_mib']} MiB while fetching, "
        f"peak {summary['rss_peak_mib']} MiB overall (end of run: drain + manifest merge, "
        f"{summary['tail_s']} s); high-water mark {summary['rss_hwm_mib']} MiB.",
        "",
        "| records taken | elapsed (s) | rate in this 10% (records/s) | RSS (MiB) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in summary["slices"]:
        lines.append(
            f"| {row['records']:,} ({row['share']:.0%}) | {row['elapsed_s']} | "
            f"{row['rate_per_s']} | {row['rss_mib']} |"
        )
    return "\n".join(lines)


def scaling(summaries: list[dict[str, Any]], target: int = 10**8) -> dict[str, Any]:
    """Peak RSS (high-water mark) against the number of records: the ratio of the largest run
    to the smallest, the slope between them (bytes per record) and its extrapolation."""
    small, large = summaries[0], summaries[-1]
    peak_small, peak_large = small["rss_hwm_mib"] * 2**20, large["rss_hwm_mib"] * 2**20
    slope = (peak_large - peak_small) / max(large["records"] - small["records"], 1)
    return {
        "sizes": [s["records"] for s in summaries],
        "rss_hwm_mib": [s["rss_hwm_mib"] for s in summaries],
        "rss_fetch_peak_mib": [s["rss_peak_while_fetching_mib"] for s in summaries],
        "ratio": round(peak_large / peak_small, 3),
        "slope_bytes_per_record": round(slope, 2),
        "extrapolated_target": target,
        # a peak that fell between the sizes (run-to-run spread) extrapolates flat, not down
        "extrapolated_rss_mib": _mib(peak_large + max(slope, 0.0) * (target - large["records"])),
    }


def scaling_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| records | peak RSS (high-water mark, MiB) | peak while fetching (MiB) |",
        "| ---: | ---: | ---: |",
    ]
    for n, hwm, fetch in zip(
        result["sizes"], result["rss_hwm_mib"], result["rss_fetch_peak_mib"], strict=True
    ):
        lines.append(f"| {n:,} | {hwm} | {fetch} |")
    lines.append("")
    lines.append(
        f"Ratio {result['ratio']} (largest / smallest); slope "
        f"{result['slope_bytes_per_record']} bytes per record; extrapolated to "
        f"{result['extrapolated_target']:,} records: {result['extrapolated_rss_mib']} MiB."
    )
    return "\n".join(lines)


def run_sizes(args: argparse.Namespace) -> int:
    """Each size in a fresh process, then the scaling summary."""
    import subprocess

    summaries = []
    for size in sorted(int(n) for n in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="gbif-dl-soak-json-") as folder:
            out = Path(folder) / "summary.json"
            cmd = [sys.executable, __file__, "--records", str(size), "--json", str(out)]
            cmd += ["--hosts", str(args.hosts), "--labels", str(args.labels)]
            cmd += ["--concurrency", str(args.concurrency), "--per-host", str(args.per_host)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if not out.exists():
                print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                return 1
            summary = json.loads(out.read_text())
        summary.pop("samples", None)
        summaries.append(summary)
        print(markdown(summary), end="\n\n", flush=True)
    result = {"runs": summaries, "scaling": scaling(summaries)}
    text = json.dumps(result, indent=2)
    print(text)
    print()
    print(scaling_markdown(result["scaling"]))
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    ok = all(s["success"] == s["records"] == s["manifest_rows"] for s in summaries)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--sizes", help="comma-separated record counts, each run in a fresh process"
    )
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--labels", type=int, default=100, help="distinct class folders")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--per-host", type=int, default=32)
    parser.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling period")
    parser.add_argument("--root", help="output folder (kept); default: a temp folder")
    parser.add_argument("--keep", action="store_true", help="keep the temp output folder")
    parser.add_argument("--json", help="also write the JSON summary to this file")
    args = parser.parse_args(argv)
    if args.sizes:
        return run_sizes(args)
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    print()
    print(markdown(summary))
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    if not (args.keep or args.root):  # after printing: removing 1M files takes minutes
        shutil.rmtree(summary["root"], ignore_errors=True)
    ok = summary["success"] == args.records and summary["manifest_rows"] == args.records
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

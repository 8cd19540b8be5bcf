"""Cases ``download-a`` .. ``download-e`` (issue 5): the downloader against its peers.

a) 10,000 images in 20 labels from nginx (no latency): images/s, gbif-dl vs gbif-dl 0.1.1 vs
   img2dataset.
b) 10,000 images over 4 simulated hosts with 100 ms latency: images/s against the bound
   hosts x per-host cap / latency; gbif-dl 0.1.1 and img2dataset at the same total concurrency.
c) 100,000 images into one label folder (nginx): rate of the last 10% vs the first 10%, from the
   files' mtimes; gbif-dl 0.1.1 at 20,000 for comparison.
d) 2% truncated bodies (persistent): gbif-dl completes and accounts for every failure;
   gbif-dl 0.1.1 gets a timeout; img2dataset for reference.
e) gbif-dl's peak RSS downloading 100,000 vs 10,000 items.
hashing) case a with 10,000 distinct JPEGs, gbif-dl with ``content_hashes`` off and on (sha256,
   dHash and the duplicate lookups), alternating in the same run (issue 18: at most a 15% cut).

Items are generated lazily in each runner (``peers/_runner_common.download_items``), the same
for every tool; img2dataset gets the same URLs as a text file.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import core, images, venvs
from harness.core import (
    BARE,
    CURL,
    I2D,
    OLD,
    OURS,
    OURS_ONE,
    CaseResult,
    Context,
    Line,
    fmt,
    median,
    ratio,
)
from harness.nginx import Nginx
from harness.proc import OURS_PYTHON, Run, run_tool

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
sys_path_peers = core.BENCH / "peers"


def _media_url(base_urls: list[str], i: int) -> str:
    import sys

    if str(sys_path_peers) not in sys.path:
        sys.path.insert(0, str(sys_path_peers))
    import _runner_common

    return _runner_common.media_url(base_urls, i)


def _engine_defaults() -> tuple[int, int]:
    from gbif_dl.fetch import engine

    return int(engine.DEFAULT_CONCURRENCY), int(engine.DEFAULT_PER_HOST)


def _auto_processes(n: int) -> int:
    """The processes ``processes="auto"`` uses for ``n`` records on this machine."""
    from gbif_dl.runners import processes

    return processes.auto_processes() if n >= processes.AUTO_MIN_RECORDS else 1


def _image_mtimes(root: Path) -> list[int]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.lower().endswith(IMAGE_SUFFIXES):
                out.append(os.stat(os.path.join(dirpath, f)).st_mtime_ns)
    return sorted(out)


def _tail_rates(mtimes: list[int]) -> dict[str, float | None]:
    """Files/s over the first and the last 10% of the files written (by mtime)."""
    n = len(mtimes)
    k = n // 10
    if k < 2:
        return {"first10_per_s": None, "last10_per_s": None}
    first = (mtimes[k - 1] - mtimes[0]) / 1e9
    last = (mtimes[-1] - mtimes[n - k]) / 1e9
    return {
        "first10_per_s": (k - 1) / first if first > 0 else None,
        "last10_per_s": (k - 1) / last if last > 0 else None,
    }


def _manifest_status(root: Path) -> dict[str, int] | None:
    path = root / "manifest.parquet"
    if not path.exists():
        return None
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "status" not in table.column_names:
        return {"rows": table.num_rows}
    counts = pc.value_counts(table["status"]).to_pylist()
    return {"rows": table.num_rows, **{str(c["values"]): int(c["counts"]) for c in counts}}


class Tools:
    """Builds the run callables of the three downloaders for one case."""

    def __init__(self, ctx: Context, case: str) -> None:
        self.ctx = ctx
        self.scratch = ctx.scratch(case)
        self.old_python = str(venvs.ensure(venvs.GBIF_DL_011, ctx.log))
        self.i2d_python = str(venvs.ensure(venvs.IMG2DATASET, ctx.log))
        self.after: list[Callable[[str, Run, Path], None]] = []

    def _finish(self, name: str, run: Run, root: Path) -> Run:
        mtimes = _image_mtimes(root)
        run.result["files_on_disk"] = len(mtimes)
        for hook in self.after:
            hook(name, run, root)
        if run.timed_out:
            run.result["timed_out_after_s"] = round(run.wall_s)
        shutil.rmtree(root, ignore_errors=True)
        return run

    def ours(self, spec: dict[str, Any], timeout_s: float, name: str = OURS) -> Callable[[], Run]:
        def go() -> Run:
            root = core.fresh_dir(self.scratch / "out-ours")
            full = {"kwargs": {"progress": False}, **spec, "root": str(root)}
            run = run_tool(
                name,
                OURS_PYTHON,
                core.BENCH / "ours/gbifdl_download.py",
                full,
                scratch=self.scratch,
                timeout_s=timeout_s,
                ours=True,
            )
            return self._finish(name, run, root)

        return go

    def old(self, spec: dict[str, Any], timeout_s: float) -> Callable[[], Run]:
        def go() -> Run:
            root = core.fresh_dir(self.scratch / "out-old")
            run = run_tool(
                OLD,
                self.old_python,
                core.BENCH / "peers/gbifdl011_download.py",
                {**spec, "root": str(root)},
                scratch=self.scratch,
                timeout_s=timeout_s,
            )
            return self._finish(OLD, run, root)

        return go

    def bare(self, spec: dict[str, Any], connections: int, timeout_s: float) -> Callable[[], Run]:
        """The bare aiohttp loop (``peers/bare_aiohttp_download.py``) in our interpreter."""

        def go() -> Run:
            root = core.fresh_dir(self.scratch / "out-bare")
            run = run_tool(
                BARE,
                OURS_PYTHON,
                core.BENCH / "peers/bare_aiohttp_download.py",
                {**spec, "root": str(root), "connections": connections},
                scratch=self.scratch,
                timeout_s=timeout_s,
            )
            return self._finish(BARE, run, root)

        return go

    def curl(self, spec: dict[str, Any], connections: int, timeout_s: float) -> Callable[[], Run]:
        """``curl --parallel`` (``peers/curl_download.py``): the floor of a C client."""

        def go() -> Run:
            root = core.fresh_dir(self.scratch / "out-curl")
            run = run_tool(
                CURL,
                OURS_PYTHON,
                core.BENCH / "peers/curl_download.py",
                {**spec, "root": str(root), "connections": connections},
                scratch=self.scratch,
                timeout_s=timeout_s,
            )
            return self._finish(CURL, run, root)

        return go

    def img2dataset(
        self,
        spec: dict[str, Any],
        processes: int,
        threads: int,
        timeout_s: float,
        **options: Any,
    ) -> Callable[[], Run]:
        """img2dataset on the spec's URLs; ``options`` go into its runner's spec as they are
        (``image_size``, ``encode_quality``: see ``peers/img2dataset_download.py``)."""

        def go() -> Run:
            root = self.scratch / "out-i2d"
            if root.exists():
                shutil.rmtree(root)
            start = int(spec.get("start", 0))
            urls = self.scratch / "urls.txt"
            urls.write_text(
                "".join(
                    _media_url(spec["base_urls"], i) + "\n"
                    for i in range(start, start + int(spec["n"]))
                )
            )
            shard = max(100, math.ceil(int(spec["n"]) / (processes * 5)))
            run = run_tool(
                I2D,
                self.i2d_python,
                core.BENCH / "peers/img2dataset_download.py",
                {
                    "url_list": str(urls),
                    "output_folder": str(root),
                    "processes": processes,
                    "threads": threads,
                    "shard_size": shard,
                    "timeout": 10,
                    **options,
                },
                scratch=self.scratch,
                timeout_s=timeout_s,
            )
            return self._finish(I2D, run, root)

        return go


def _rates(runs: dict[str, list[Run]]) -> dict[str, float | None]:
    return {t: median([r.rate() for r in rs]) for t, rs in runs.items()}


def _pool(ctx: Context) -> Path:
    return images.make_pool(core.WORK / "jpeg-pool")


# --- a -------------------------------------------------------------------------------------


def run_a(ctx: Context) -> CaseResult:
    """Case a: images/s from nginx on loopback, gbif-dl against its peers.

    Example:
        >>> run_a(Context(quick=True, repeats=1))  # doctest: +SKIP
    """
    n = 500 if ctx.quick else 10_000
    concurrency, per_host = _engine_defaults()
    ours_total = min(concurrency, per_host)  # one host
    i2d_procs = os.cpu_count() or 2
    i2d_threads = max(1, ours_total // i2d_procs)
    auto = _auto_processes(n)
    res = CaseResult(
        "download-a",
        "images/s, 20 labels, nginx on loopback, no latency",
        {
            "images": n,
            "labels": 20,
            "gbif-dl": f"defaults (concurrency {concurrency}, per_host {per_host}, "
            f"processes='auto': {auto} processes, the caps divided among them)",
            "gbif-dl processes=1": "defaults but processes=1 (one streaming process)",
            "gbif-dl 0.1.1": "defaults (tcp_connections 128, nb_workers 128, retries 1)",
            "img2dataset": f"processes {i2d_procs} x threads {i2d_threads}, resize_mode no, "
            "skip_reencode, output_format files",
        },
    )
    tools = Tools(ctx, "download-a")
    one_spec = {"kwargs": {"progress": False, "processes": 1}}
    with Nginx(_pool(ctx)) as base:
        spec = {"base_urls": [base], "n": n, "labels": 20}
        runs = core.alternate(
            ctx,
            [
                (OURS, tools.ours(spec, 600)),
                (OURS_ONE, tools.ours({**spec, **one_spec}, 600, name=OURS_ONE)),
                (OLD, tools.old(spec, 600)),
                (I2D, tools.img2dataset(spec, i2d_procs, i2d_threads, 600)),
                (BARE, tools.bare(spec, 128, 600)),
                *([(CURL, tools.curl(spec, 128, 600))] if shutil.which("curl") else []),
            ],
        )
    res.add_runs("a", runs)
    res.lines += _lines_a(runs, n)
    res.notes.append(
        f"img2dataset gets {i2d_procs} processes x {i2d_threads} threads = gbif-dl's "
        f"{ours_total} connections to the one host; gbif-dl 0.1.1 runs with its defaults."
    )
    return res


def _lines_a(runs: dict[str, list[Run]], n: int) -> list[Line]:
    """Case a's lines: images/s against 0.1.1, img2dataset, the bare loop and curl."""
    rates = _rates(runs)
    rates.setdefault(CURL, None)
    r_old, r_i2d = ratio(rates[OURS], rates[OLD]), ratio(rates[OURS], rates[I2D])
    r_bare = ratio(rates[OURS], rates[BARE])
    r_one_old, r_one_bare = ratio(rates[OURS_ONE], rates[OLD]), ratio(rates[OURS_ONE], rates[BARE])
    return [
        Line(
            f"images/s ({n:,} images, 20 labels)",
            {t: fmt(v) for t, v in rates.items()},
            f"{fmt(r_old, '×', 2)} vs 0.1.1; {fmt(r_i2d, '×', 2)} vs img2dataset",
            "≥ 2.5× 0.1.1 and > img2dataset",
            None if r_old is None or r_i2d is None else (r_old >= 2.5 and r_i2d > 1),
        ),
        Line(
            "images/s as a share of a bare aiohttp loop (128 connections, writes only)",
            {OURS: fmt(rates[OURS]), BARE: fmt(rates[BARE])},
            f"gbif-dl at {fmt(None if r_bare is None else 100 * r_bare, '%', 0)} of it",
            "≥ 80% of the bare loop",
            None if r_bare is None else r_bare >= 0.8,
        ),
        Line(
            "gbif-dl processes=1 (one streaming process), for reference",
            {OURS_ONE: fmt(rates[OURS_ONE]), OLD: fmt(rates[OLD]), BARE: fmt(rates[BARE])},
            f"{fmt(r_one_old, '×', 2)} vs 0.1.1; "
            f"{fmt(None if r_one_bare is None else 100 * r_one_bare, '%', 0)} of the bare loop",
        ),
        Line(
            "images/s of curl --parallel (128 transfers, writes only), for reference",
            {OURS: fmt(rates[OURS]), CURL: fmt(rates[CURL])},
            "not installed" if rates[CURL] is None and not shutil.which("curl") else "",
        ),
        Line(
            "images stored (median)",
            {
                t: fmt(median([r.result.get("files_on_disk") for r in rs]), digits=0)
                for t, rs in runs.items()
            },
        ),
        Line(
            "peak RSS",
            {t: fmt(median([r.peak_rss_mb for r in rs if r.ok]), " MB") for t, rs in runs.items()},
        ),
    ]


# --- b -------------------------------------------------------------------------------------


def run_b(ctx: Context) -> CaseResult:
    """Case b: images/s over 4 hosts with 100 ms latency, against the latency bound.

    Example:
        >>> run_b(Context(quick=True, repeats=1))  # doctest: +SKIP
    """
    from gbif_dl.testing.mediahost import HostFaults, MediaHosts

    n = 500 if ctx.quick else 10_000
    n_hosts, latency = 4, 0.1
    concurrency, per_host = _engine_defaults()
    total = min(concurrency, n_hosts * per_host)
    bound = total / latency
    i2d_procs = os.cpu_count() or 2
    i2d_threads = max(1, total // i2d_procs)
    res = CaseResult(
        "download-b",
        "images/s, 4 hosts with 100 ms latency",
        {
            "images": n,
            "hosts": n_hosts,
            "latency_s": latency,
            "gbif-dl": f"defaults (concurrency {concurrency}, per_host {per_host})",
            "gbif-dl 0.1.1": f"tcp_connections = nb_workers = {total}",
            "img2dataset": f"processes {i2d_procs} x threads {i2d_threads}",
            "bound_images_per_s": bound,
        },
    )
    tools = Tools(ctx, "download-b")
    host_stats: dict[str, list[dict[str, Any]]] = {OURS: [], OLD: [], I2D: []}
    with MediaHosts(
        n_hosts=n_hosts, faults=HostFaults(latency_s=latency), distinct_pixels=False
    ) as hosts:
        spec = {"base_urls": hosts.base_urls, "n": n, "labels": 20}
        old_spec = {**spec, "tcp_connections": total, "nb_workers": total}
        runs = core.alternate(
            ctx,
            [
                (OURS, _with_host_stats(hosts, tools.ours(spec, 600), host_stats[OURS])),
                (OLD, _with_host_stats(hosts, tools.old(old_spec, 600), host_stats[OLD])),
                (
                    I2D,
                    _with_host_stats(
                        hosts,
                        tools.img2dataset(spec, i2d_procs, i2d_threads, 600),
                        host_stats[I2D],
                    ),
                ),
            ],
        )
    res.add_runs("b", runs)
    rates = _rates(runs)
    share = ratio(rates[OURS], bound)
    res.lines += [
        Line(
            f"images/s ({n:,} images, {n_hosts} hosts x 100 ms)",
            {t: fmt(v) for t, v in rates.items()},
            f"gbif-dl at {fmt(None if share is None else share * 100, '%', 0)} of the bound "
            f"{bound:.0f}/s; {fmt(ratio(rates[OURS], rates[OLD]), '×', 2)} vs 0.1.1; "
            f"{fmt(ratio(rates[OURS], rates[I2D]), '×', 2)} vs img2dataset",
            f"≥ 80% of {n_hosts} x {per_host} / {latency} s = {bound:.0f}/s, ≥ 0.1.1",
            None
            if share is None or rates[OLD] is None
            else share >= 0.8 and (rates[OURS] or 0.0) >= rates[OLD],
        ),
        _in_flight_line(host_stats, per_host),
    ]
    return res


def _with_host_stats(
    hosts: Any, fn: Callable[[], Run], into: list[dict[str, Any]]
) -> Callable[[], Run]:
    """``fn`` with the hosts' counters reset before and their peak and total added after."""

    def go() -> Run:
        hosts.reset_stats()
        run = fn()
        st = hosts.stats()
        into.append(
            {
                "max_in_flight_per_host": max(s.max_in_flight for s in st.values()),
                "requests": sum(s.requests for s in st.values()),
            }
        )
        run.result["hosts"] = into[-1]
        return run

    return go


def _in_flight_line(host_stats: dict[str, list[dict[str, Any]]], per_host: int) -> Line:
    """The most requests in flight on one host per tool, against gbif-dl's ``per_host``."""
    return Line(
        "max requests in flight on one host",
        {
            t: str(max((h["max_in_flight_per_host"] for h in hs), default="n/a"))
            for t, hs in host_stats.items()
        },
        "",
        f"gbif-dl ≤ per_host {per_host}",
        (max(h["max_in_flight_per_host"] for h in host_stats[OURS]) <= per_host)
        if host_stats[OURS]
        else None,
    )


# --- c -------------------------------------------------------------------------------------


def run_c(ctx: Context) -> CaseResult:
    n_ours = 3_000 if ctx.quick else 100_000
    n_old = 1_000 if ctx.quick else 20_000
    res = CaseResult(
        "download-c",
        "one label folder: rate of the last 10% vs the first 10% of files",
        {"gbif-dl images": n_ours, "gbif-dl 0.1.1 images": n_old, "labels": 1},
    )
    tools = Tools(ctx, "download-c")

    def tail(name: str, run: Run, root: Path) -> None:
        run.result.update(_tail_rates(_image_mtimes(root)))

    tools.after.append(tail)
    with Nginx(_pool(ctx)) as base:
        runs = core.alternate(
            ctx,
            [
                (OURS, tools.ours({"base_urls": [base], "n": n_ours, "labels": 1}, 900)),
                (OLD, tools.old({"base_urls": [base], "n": n_old, "labels": 1}, 900)),
            ],
            repeats=min(ctx.repeats, 2),
        )
    res.add_runs("c", runs)
    rates = _rates(runs)
    first = {
        t: median([r.result.get("first10_per_s") for r in rs if r.ok]) for t, rs in runs.items()
    }
    last = {t: median([r.result.get("last10_per_s") for r in rs if r.ok]) for t, rs in runs.items()}
    keep = {t: ratio(last[t], first[t]) for t in runs}
    res.lines += [
        Line(
            f"images/s overall (gbif-dl {n_ours:,}, 0.1.1 {n_old:,} in one folder)",
            {t: fmt(v) for t, v in rates.items()},
            f"{fmt(ratio(rates[OURS], rates[OLD]), '×', 1)} vs 0.1.1",
        ),
        Line("files/s, first 10% of files", {t: fmt(v) for t, v in first.items()}),
        Line("files/s, last 10% of files", {t: fmt(v) for t, v in last.items()}),
        Line(
            "last 10% / first 10%",
            {t: fmt(v, digits=2) for t, v in keep.items()},
            "",
            "gbif-dl does not slow down (≥ 0.9)",
            None if keep[OURS] is None else keep[OURS] >= 0.9,
        ),
    ]
    return res


# --- d -------------------------------------------------------------------------------------


def run_d(ctx: Context) -> CaseResult:
    """Case d: 2% truncated bodies; gbif-dl completes and accounts for every item.

    Example:
        >>> run_d(Context(quick=True, repeats=1))  # doctest: +SKIP
    """
    from gbif_dl.testing.mediahost import HostFaults, MediaHosts

    n = 300 if ctx.quick else 5_000
    old_timeout = 10 if ctx.quick else 120
    i2d_procs = os.cpu_count() or 2
    res = CaseResult(
        "download-d",
        "2% truncated bodies (persist through retries): completes and accounts for every item",
        {
            "images": n,
            "hosts": 2,
            "faults": "truncate_rate 0.02, fault_attempts 100",
            "gbif-dl": "defaults",
            "gbif-dl 0.1.1": f"defaults, killed after {old_timeout} s",
            "img2dataset": f"processes {i2d_procs} x threads 8",
        },
    )
    tools = Tools(ctx, "download-d")
    tools.after.append(_add_manifest_status)
    faults = HostFaults(truncate_rate=0.02, fault_attempts=100)
    with MediaHosts(n_hosts=2, faults=faults, distinct_pixels=False) as hosts:
        spec = {"base_urls": hosts.base_urls, "n": n, "labels": 20}
        runs = core.alternate(
            ctx,
            [
                (OURS, _resetting(hosts, tools.ours(spec, 600))),
                (OLD, _resetting(hosts, tools.old(spec, old_timeout))),
                (I2D, _resetting(hosts, tools.img2dataset(spec, i2d_procs, 8, 600))),
            ],
            repeats=min(ctx.repeats, 2),
        )
    res.add_runs("d", runs)
    res.lines.append(
        Line(
            f"outcome ({n:,} images, 2% truncated)",
            {t: _outcome(rs[-1], old_timeout) if rs else "n/a" for t, rs in runs.items()},
        )
    )
    accounted = [_accounted(r, n) for r in runs[OURS]]
    last = runs[OURS][-1].result if runs[OURS] else {}
    reasons = (last.get("stats") or {}).get("reasons")
    res.lines.append(
        Line(
            "gbif-dl: ok + failed = items, files = ok, manifest rows = items",
            {OURS: f"{sum(accounted)}/{len(accounted)} runs; reasons {reasons}"},
            "",
            "every failure reported, run completes",
            bool(accounted) and all(accounted),
        )
    )
    res.lines.append(Line("images/s", {t: fmt(v) for t, v in _rates(runs).items()}))
    return res


def _add_manifest_status(name: str, run: Run, root: Path) -> None:
    """A ``Tools.after`` hook: the manifest's row and status counts into the run's result."""
    manifest = _manifest_status(root)
    if manifest is not None:
        run.result["manifest"] = manifest


def _resetting(hosts: Any, fn: Callable[[], Run]) -> Callable[[], Run]:
    """``fn`` with the hosts' counters reset before it runs."""

    def go() -> Run:
        hosts.reset_stats()
        return fn()

    return go


def _outcome(run: Run, old_timeout: float) -> str:
    """How a case d run ended: timed out, crashed, or finished with its ok and failed counts."""
    if run.timed_out:
        limit = old_timeout if run.tool == OLD else 600
        files = run.result.get("files_on_disk", 0)
        return f"did not finish in {limit} s ({files:,} files written)"
    if not run.ok:
        return f"crashed (exit {run.returncode})"
    stats = run.result.get("stats")
    if isinstance(stats, dict) and "failed" in stats:
        return f"finished: {stats.get('success')} ok + {stats.get('failed')} failed reported"
    if run.tool == I2D:
        ok, failed = run.result.get("count"), run.result.get("failures")
        return f"finished: {ok} ok + {failed} failed reported"
    return f"finished: {run.result.get('files_on_disk')} files"


def _accounted(run: Run, n: int) -> bool:
    """Whether a gbif-dl run of ``n`` items reported every one (ok + failed = items, files =
    ok, manifest rows = items)."""
    stats = run.result.get("stats") or {}
    man = run.result.get("manifest") or {}
    if run.ok and isinstance(stats, dict):
        return (
            stats.get("success", 0) + stats.get("failed", 0) == n
            and run.result.get("files_on_disk") == stats.get("success")
            and man.get("rows", n) == n
        )
    return False


# --- e -------------------------------------------------------------------------------------


def run_e(ctx: Context) -> CaseResult:
    small, big = (300, 3_000) if ctx.quick else (10_000, 100_000)
    res = CaseResult(
        "download-e",
        "gbif-dl peak RSS: 100,000 vs 10,000 items",
        {"small": small, "big": big, "labels": 20, "items": "a lazy generator"},
    )
    tools = Tools(ctx, "download-e")
    with Nginx(_pool(ctx)) as base:
        runs = core.alternate(
            ctx,
            [
                ("small", tools.ours({"base_urls": [base], "n": small, "labels": 20}, 900, OURS)),
                ("big", tools.ours({"base_urls": [base], "n": big, "labels": 20}, 900, OURS)),
            ],
            repeats=min(ctx.repeats, 2),
        )
    res.add_runs("e", runs)
    rss = {k: median([r.peak_rss_mb for r in rs if r.ok]) for k, rs in runs.items()}
    r = ratio(rss["big"], rss["small"])
    res.lines += [
        Line(f"peak RSS, {small:,} items", {OURS: fmt(rss["small"], " MB")}),
        Line(f"peak RSS, {big:,} items", {OURS: fmt(rss["big"], " MB")}),
        Line(
            f"RSS {big:,} / {small:,}",
            {OURS: fmt(r, "×", 2)},
            "",
            "≤ 1.5×",
            None if r is None else r <= 1.5,
        ),
    ]
    res.notes.append("peers not measured here (memory scaling is gbif-dl's own goal).")
    return res


# --- hashing ---------------------------------------------------------------------------------

OURS_HASHES = "gbif-dl content_hashes"


def _hashing_pair(ctx: Context, tools: Tools, spec: dict[str, Any]) -> dict[str, list[Run]]:
    """gbif-dl without and with content hashes on ``spec``, alternating."""
    on = {"kwargs": {"progress": False, "content_hashes": True}}
    return core.alternate(
        ctx,
        [
            (OURS, tools.ours(spec, 600)),
            (OURS_HASHES, tools.ours({**spec, **on}, 600, name=OURS_HASHES)),
        ],
    )


def _hashing_line(title: str, runs: dict[str, list[Run]]) -> Line:
    rates = _rates(runs)
    kept = ratio(rates[OURS_HASHES], rates[OURS])
    stored = " / ".join(
        fmt(median([r.result.get("files_on_disk") for r in runs[t]]), digits=0)
        for t in (OURS, OURS_HASHES)
    )
    return Line(
        title,
        {OURS: f"{fmt(rates[OURS])} / {fmt(rates[OURS_HASHES])}"},
        ("" if kept is None else f"{100 * (kept - 1):+.1f}% with hashing; ") + f"stored {stored}",
        "cut ≤ 15%",
        None if kept is None else kept >= 0.85,
    )


def run_hashing(ctx: Context) -> CaseResult:
    """Content hashes off vs on (issue 18): case a's download of distinct photos (the CPU is
    the limit), and the same photos from 4 hosts with 100 ms latency (the network is)."""
    from gbif_dl.testing.mediahost import HostFaults, MediaHosts

    n = 1_000 if ctx.quick else 10_000
    n_slow = 500 if ctx.quick else 4_000
    res = CaseResult(
        "hashing",
        "content hashing cost: content_hashes off vs on, distinct JPEGs",
        {
            "images": n,
            "images_latency_bound": n_slow,
            "labels": 20,
            "gbif-dl": "defaults",
            OURS_HASHES: "content_hashes=True",
        },
    )
    tools = Tools(ctx, "hashing")
    pool = images.make_pool(core.WORK / f"jpeg-pool-{n}", n=n)
    with Nginx(pool, digits=images.pool_digits(n)) as base:
        fast = _hashing_pair(ctx, tools, {"base_urls": [base], "n": n, "labels": 20})
    with MediaHosts(n_hosts=4, faults=HostFaults(latency_s=0.1)) as hosts:
        for i, path in enumerate(sorted(pool.glob("*.jpg"))[:n_slow]):
            hosts.serve(f"/img/{i:08d}.jpg", path.read_bytes())
        slow = _hashing_pair(ctx, tools, {"base_urls": hosts.base_urls, "n": n_slow, "labels": 20})
    res.add_runs("nginx", fast)
    res.add_runs("latency", slow)
    res.lines += [
        _hashing_line(f"images/s ({n:,} images, nginx, no latency): hashes off / on", fast),
        _hashing_line(f"images/s ({n_slow:,} images, 4 hosts x 100 ms): hashes off / on", slow),
    ]
    return res

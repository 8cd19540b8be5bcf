"""Cases that wrap gbif-dl's own standalone benchmark scripts (no peer to compare with in-process).

- ``read``  (issue 6): decoded images/s of one dataset as ImageFolder vs WebDataset through the
  torch loaders (``benchmarks/read_throughput.py``).
- ``dask``  (issue 7): a CPU-heavy job (resize to 512) on 2 Dask workers vs one local process
  (``benchmarks/dask_speedup.py``).
- ``soak``  (issues 9, 19): records through ``gbif_dl.io.download`` with the images served from
  memory; memory curve and rate per 10% of the items, at 10^5 and 10^6 records, each in a
  fresh process: the ratio of their peaks and the slope extrapolated to 10^8
  (``benchmarks/soak.py --sizes``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from harness import core
from harness.core import OURS, CaseResult, Context, Line, fmt
from harness.proc import OURS_PYTHON


def _script(name: str, args: list[str], ctx: Context, timeout_s: float) -> str:
    cmd = [OURS_PYTHON, str(core.BENCH / name), *args]
    ctx.log("    $ " + " ".join(cmd[1:]))
    env = {**os.environ, "GBIF_DL_ALLOW_PRIVATE": "1"}  # the scripts serve images on loopback
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-800:]}")
    return done.stdout


def _script_json(name: str, args: list[str], ctx: Context, timeout_s: float) -> dict[str, Any]:
    """Run a script that writes its JSON summary to ``--json PATH``; return that summary."""
    json_path = ctx.scratch(Path(name).stem) / "result.json"
    _script(name, [*args, "--json", str(json_path)], ctx, timeout_s)
    data: dict[str, Any] = json.loads(json_path.read_text())
    return data


def run_read(ctx: Context) -> CaseResult:
    images = 2_000 if ctx.quick else 50_000
    workdir: Path = ctx.scratch("read")
    out = _script(
        "read_throughput.py",
        ["--images", str(images), "--workdir", str(workdir), "--repeats", str(ctx.repeats)],
        ctx,
        timeout_s=3600,
    )
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    by_layout = {row["layout"]: row for row in rows}
    res = CaseResult(
        "read",
        "read throughput: decoded images/s through the torch loaders",
        {"images": images, "num_workers": 2, "batch_size": 64},
    )
    folder, shards = by_layout.get("imagefolder"), by_layout.get("webdataset")
    res.lines.append(
        Line(
            f"images/s decoded ({images:,} images): ImageFolder / WebDataset",
            {
                OURS: f"{fmt(folder and folder['images_per_s'])} / "
                f"{fmt(shards and shards['images_per_s'])}"
            },
            ""
            if not (folder and shards)
            else f"WebDataset {shards['images_per_s'] / folder['images_per_s']:.2f}× ImageFolder",
        )
    )
    res.runs = {"read": rows}
    return res


def run_dask(ctx: Context) -> CaseResult:
    n = 200 if ctx.quick else 2_000
    data = _script_json("dask_speedup.py", ["--n", str(n)], ctx, timeout_s=3600)
    res = CaseResult(
        "dask",
        "CPU-heavy job (resize 1600x1200 JPEGs to 512): 2 Dask workers vs one process",
        {"images": n},
    )
    res.lines.append(
        Line(
            f"seconds for {n:,} images: one process (one resize core) / plain download"
            " / 2 Dask workers",
            {
                OURS: f"{data['local-1']['seconds']} / {data['plain']['seconds']} / "
                f"{data['dask-2']['seconds']}"
            },
            f"speed-up {data['speedup_vs_local_1']}× vs one process, "
            f"{data['speedup_vs_plain']}× vs the plain download",
        )
    )
    res.runs = {"dask": [data]}
    return res


def run_soak(ctx: Context) -> CaseResult:
    sizes = [5_000, 20_000] if ctx.quick else [100_000, 1_000_000]
    result = _script_json(
        "soak.py", ["--sizes", ",".join(map(str, sizes))], ctx, timeout_s=2 * 7200
    )
    data, scaling = result["runs"][-1], result["scaling"]
    records = data["records"]
    slices = data.get("slices") or []
    res = CaseResult(
        "soak",
        "soak: records through io.download, images served from memory",
        {"records": sizes, "concurrency": data["concurrency"], "per_host": data["per_host"]},
    )
    res.lines.append(
        Line(
            f"records/s ({records:,} records); first 10% / last 10%",
            {
                OURS: f"{fmt(data['rate_per_s'])}; "
                f"{fmt(slices[0]['rate_per_s'] if slices else None)} / "
                f"{fmt(slices[-1]['rate_per_s'] if slices else None)}"
            },
            f"{data['success']:,} stored, {data['failed']:,} failed, "
            f"{data['manifest_rows']:,} manifest rows",
        )
    )
    res.lines.append(
        Line(
            "RSS MiB: start / at 10% / at 100% / peak (high-water mark)",
            {
                OURS: f"{data['rss_start_mib']} / {data['rss_at_10pct_mib']} / "
                f"{data['rss_at_100pct_mib']} / {data['rss_hwm_mib']}"
            },
            f"end-of-run merge {data['tail_s']} s",
        )
    )
    res.lines.append(
        Line(
            f"peak RSS MiB at {' / '.join(f'{n:,}' for n in sizes)} records; ratio",
            {OURS: f"{' / '.join(str(m) for m in scaling['rss_hwm_mib'])}; {scaling['ratio']}"},
            f"slope {scaling['slope_bytes_per_record']} B/record; at 10^8 records "
            f"{scaling['extrapolated_rss_mib']} MiB (extrapolated)",
            "ratio ≤ 1.15",
            scaling["ratio"] <= 1.15,
        )
    )
    res.runs = {"soak": result["runs"], "scaling": [scaling]}
    return res

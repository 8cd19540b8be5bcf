"""Cases ``resize`` and ``renditions`` (issue 20, items 2 and 3).

resize) 1,000 photos of 1,600 to 2,400 px (about 800 kB, ``harness/photos.py``) served by nginx
   on loopback, downloaded and resized to 512 px on the longest side, JPEG quality 90:
   gbif-dl (``max_size=512``, defaults otherwise) vs img2dataset at the same output size and
   quality, and the Pillow floor: draft-mode decode, resize and encode of the same files from
   disk on 2 processes, no network (``peers/pillow_floor.py``). Images/s and CPU seconds per
   image (runner plus its worker processes, from ``wait4``; interpreter start-up included).
renditions) bytes the host sends for photos of a simulated iNaturalist host at
   ``max_size=512``, with renditions (the default) and without; then with every 10th ``large``
   rendition missing (404: the original is fetched in the same run). Counted by the host, so
   the figures are exact and do not depend on the machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any

from harness import core, photos
from harness.cases.download import Tools
from harness.core import FLOOR, I2D, OURS, CaseResult, Context, Line, fmt, median, ratio
from harness.nginx import Nginx
from harness.proc import OURS_PYTHON, Run, run_tool

MAX_SIZE = 512
QUALITY = 90  # gbif-dl's default jpeg_quality


def _outputs(name: str, run: Run, root: Path) -> None:
    """Mean output size and the largest longest side among the stored images."""
    from PIL import Image

    sizes, longest = [], 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.lower().endswith((".jpg", ".jpeg")):
                path = os.path.join(dirpath, f)
                sizes.append(os.path.getsize(path))
                if len(sizes) <= 50:  # a sample is enough to check the size
                    with Image.open(path) as image:
                        longest = max(longest, max(image.size))
    run.result["mean_output_kb"] = round(sum(sizes) / len(sizes) / 1000, 1) if sizes else None
    run.result["max_longest_side"] = longest or None


def _floor(ctx: Context, pool: Path, n: int, processes: int) -> Any:
    scratch = ctx.scratch("resize")

    def go() -> Run:
        return run_tool(
            FLOOR,
            OURS_PYTHON,
            core.BENCH / "peers/pillow_floor.py",
            {"pool": str(pool), "n": n, "processes": processes, "max_size": MAX_SIZE,
             "quality": QUALITY},
            scratch=scratch,
            timeout_s=900,
        )  # fmt: skip

    return go


def _cpu_per_image_ms(runs: list[Run]) -> float | None:
    values = [
        1000 * r.cpu_s / r.result["count"]
        for r in runs
        if r.ok and r.cpu_s is not None and r.result.get("count")
    ]
    return median(values)


def run_resize(ctx: Context) -> CaseResult:
    n = 100 if ctx.quick else 1_000
    cores = os.cpu_count() or 2
    from gbif_dl.fetch import engine

    per_host = int(engine.DEFAULT_PER_HOST)
    i2d_threads = max(1, per_host // cores)
    res = CaseResult(
        "resize",
        "download and resize 1,600-2,400 px photos to 512 px, nginx on loopback",
        {
            "images": n,
            "max_size": MAX_SIZE,
            "jpeg_quality": QUALITY,
            "gbif-dl": f"max_size={MAX_SIZE}, defaults (per_host {per_host}, one fetching "
            f"process below processes='auto''s 5,000 records, resize_workers = {cores} CPUs)",
            "img2dataset": f"processes {cores} x threads {i2d_threads}, resize_mode "
            f"keep_ratio_largest, image_size {MAX_SIZE}, encode_quality {QUALITY}",
            "Pillow floor": "draft decode + LANCZOS resize + encode from disk, 2 processes",
        },
    )
    ctx.log("    photo pool (made once, about a minute)")
    pool = photos.make_photo_pool(core.WORK / "photo-pool")
    tools = Tools(ctx, "resize")
    tools.after.append(_outputs)
    with Nginx(pool) as base:
        spec = {"base_urls": [base], "n": n, "labels": 20}
        ours_spec = {**spec, "kwargs": {"progress": False, "max_size": MAX_SIZE}}
        i2d_options = {"image_size": MAX_SIZE, "encode_quality": QUALITY}
        runs = core.alternate(
            ctx,
            [
                (OURS, tools.ours(ours_spec, 900)),
                (I2D, tools.img2dataset(spec, cores, i2d_threads, 900, **i2d_options)),
                (FLOOR, _floor(ctx, pool, n, 2)),
            ],
        )
    res.add_runs("resize", runs)
    rates = {t: median([r.rate() for r in rs]) for t, rs in runs.items()}
    cpu = {t: _cpu_per_image_ms(rs) for t, rs in runs.items()}
    r_i2d, r_floor = ratio(rates[OURS], rates[I2D]), ratio(rates[OURS], rates[FLOOR])
    res.lines += [
        Line(
            f"images/s ({n:,} photos to {MAX_SIZE} px, quality {QUALITY})",
            {t: fmt(v) for t, v in rates.items()},
            f"{fmt(r_i2d, '×', 2)} vs img2dataset",
            "≥ 1.5× img2dataset",
            None if r_i2d is None else r_i2d >= 1.5,
        ),
        Line(
            "images/s as a share of the Pillow floor (2 processes, from disk)",
            {OURS: fmt(rates[OURS]), FLOOR: fmt(rates[FLOOR])},
            f"gbif-dl at {fmt(None if r_floor is None else 100 * r_floor, '%', 0)} of it",
            "≥ 90% of the floor",
            None if r_floor is None else r_floor >= 0.9,
        ),
        Line(
            "CPU ms per image (runner + workers, start-up included)",
            {t: fmt(v) for t, v in cpu.items()},
        ),
        Line(
            "mean output kB / largest side (sample)",
            {
                t: f"{fmt(median([r.result.get('mean_output_kb') for r in rs]))} / "
                f"{fmt(median([r.result.get('max_longest_side') for r in rs]), digits=0)}"
                for t, rs in runs.items()
                if t != FLOOR
            },
        ),
        Line(
            "peak RSS",
            {t: fmt(median([r.peak_rss_mb for r in rs if r.ok]), " MB") for t, rs in runs.items()},
        ),
    ]
    res.notes.append(
        "the Pillow floor reads the files from disk and writes nothing; gbif-dl and img2dataset "
        "download each photo from nginx and store the resized JPEG."
    )
    return res


# --- renditions ----------------------------------------------------------------------------


def _bytes_sent(hosts: Any, urls: list[str], config: Any) -> tuple[int, int, int]:
    """(bytes the host sent, requests, images ok) for one engine run over ``urls``."""
    from gbif_dl.fetch import FetchEngine
    from gbif_dl.records import make_record

    ok = []
    hosts.reset_stats()
    asyncio.run(FetchEngine(config).run([make_record(u) for u in urls], ok.append))
    stats = hosts.stats()[hosts.hosts[0]]
    return stats.bytes_sent, stats.requests, sum(1 for r in ok if r.ok)


def run_renditions(ctx: Context) -> CaseResult:
    from gbif_dl.fetch import FetchConfig
    from gbif_dl.testing.mediahost import MediaHosts
    from gbif_dl.testing.renditions import INATURALIST_HOST, LoopbackResolver
    from gbif_dl.testing.renditions import serve_inaturalist_photo as serve

    n = 20 if ctx.quick else 100
    res = CaseResult(
        "renditions",
        f"bytes sent by a simulated iNaturalist host, max_size={MAX_SIZE}",
        {"photos": n, "max_size": MAX_SIZE, "originals": "harness/photos.py, 1,600-2,400 px"},
    )
    originals = [photos.photo(i) for i in range(n)]
    figures: dict[str, tuple[int, int, int]] = {}
    with MediaHosts(n_hosts=1) as hosts:
        address = hosts.hosts[0].split(":")[0]
        config = FetchConfig(
            concurrency=16,
            per_host=8,
            max_size=MAX_SIZE,
            resolver=LoopbackResolver({INATURALIST_HOST: address}),
            allow_private=True,
        )
        urls = [serve(hosts, i, body)["original"] for i, body in enumerate(originals)]
        figures["on"] = _bytes_sent(hosts, urls, config)
        figures["off"] = _bytes_sent(hosts, urls, dataclasses.replace(config, renditions=False))
        missing = [
            serve(hosts, 10_000 + i, body, missing={"large"} if i % 10 == 0 else ())["original"]
            for i, body in enumerate(originals)
        ]
        figures["10% missing"] = _bytes_sent(hosts, missing, config)
    base = figures["off"][0]
    labels = {
        "on": "renditions on (default)",
        "off": "renditions off",
        "10% missing": "renditions on, every 10th large rendition answers 404",
    }
    for key, (sent, requests, ok) in figures.items():
        res.lines.append(
            Line(
                f"MB sent for {n} photos: {labels[key]}",
                {OURS: f"{sent / 1e6:,.2f}"},
                f"{100 * sent / base:.1f}% of off; {requests} requests, {ok} images",
            )
        )
    res.runs = {"renditions": [{k: list(v) for k, v in figures.items()}]}
    res.notes.append(
        "counted by the host (deterministic); every image ends resized to "
        f"{MAX_SIZE} px either way."
    )
    return res

"""Read throughput: decoded images/s of one dataset as ImageFolder vs WebDataset shards.

Builds (or reuses, under ``--workdir``) an N-image dataset downloaded from the simulator's media
hosts (resized to small images) twice: ``output="imagefolder"`` and ``output="webdataset"``.
Then times full passes of ``torch.utils.data.DataLoader(num_workers=2, batch_size=64)`` over
:class:`gbif_dl.loaders.torch.GBIFImageDataset` and over :func:`gbif_dl.loaders.webdataset.load`
(each image decoded by Pillow to RGB, resized to a fixed size and made a uint8 tensor), and
reports the median of ``--repeats`` passes as one JSON line and one markdown table row each.

Usage::

    python benchmarks/read_throughput.py --images 50000 --workdir /tmp/gbif-dl-read-bench
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from gbif_dl.io import download
from gbif_dl.loaders import webdataset as wds_loader
from gbif_dl.loaders.torch import GBIFImageDataset
from gbif_dl.testing.mediahost import MediaHosts

SIDE = 64
LABELS = 20


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A fixed-size uint8 CHW tensor (what a training transform would produce)."""
    return torch.from_numpy(np.array(image.resize((SIDE, SIDE)))).permute(2, 0, 1)


def build(workdir: Path, n: int, shard_size: int) -> dict[str, Path]:
    """Download n images into both layouts under workdir (reused when already complete)."""
    roots = {"imagefolder": workdir / f"imagefolder-{n}", "webdataset": workdir / f"wds-{n}"}
    # the hosts get new ports (so new URLs) every run: reuse a complete build, never extend it
    complete = {name: workdir / f".{root.name}.complete" for name, root in roots.items()}
    if all(marker.exists() for marker in complete.values()):
        return roots
    for name, root in roots.items():
        shutil.rmtree(root, ignore_errors=True)
        complete[name].unlink(missing_ok=True)
    with MediaHosts(n_hosts=2, distinct_pixels=False) as hosts:
        records = [
            {
                "url": f"{hosts.base_urls[i % 2]}/media/{i}/0.jpg",
                "label": f"species {i % LABELS:02d}",
                "gbifID": str(i),
            }
            for i in range(n)
        ]
        for output, root in roots.items():
            options = {"shard_size": shard_size} if output == "webdataset" else {}
            started = time.monotonic()
            stats = download(
                records,
                root=root,
                output=output,
                max_size=SIDE,
                concurrency=64,
                progress=False,
                **options,
            )
            logging.info(
                "%s: %d new, %d reused in %.0f s",
                output,
                stats["success"],
                stats["skipped"],
                time.monotonic() - started,
            )
            if stats["success"] + stats["skipped"] == n:
                complete[output].touch()
    return roots


def one_pass(dataset: Any, n: int) -> float:
    """Seconds for a full DataLoader pass; checks every image was read."""
    loader = DataLoader(dataset, batch_size=64, num_workers=2)
    started = time.perf_counter()
    seen = 0
    for images, _targets in loader:
        seen += images.shape[0]
    elapsed = time.perf_counter() - started
    if seen != n:
        raise RuntimeError(f"read {seen} images, expected {n}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--workdir", type=Path, default=Path("read-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=2_500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    roots = build(args.workdir, args.images, args.shard_size)
    candidates = {
        "imagefolder": lambda: GBIFImageDataset(
            roots["imagefolder"], split=None, transform=to_tensor
        ),
        "webdataset": lambda: wds_loader.load(roots["webdataset"], split=None, transform=to_tensor),
    }
    for layout, make in candidates.items():
        times = [one_pass(make(), args.images) for _ in range(args.repeats)]
        median = statistics.median(times)
        result = {
            "benchmark": "read_throughput",
            "layout": layout,
            "images": args.images,
            "images_per_s": round(args.images / median, 1),
            "median_s": round(median, 3),
            "runs_s": [round(t, 3) for t in times],
            "num_workers": 2,
            "batch_size": 64,
            "image_side": SIDE,
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
        print(json.dumps(result))
        print(
            f"| {layout} | {args.images:,} | {result['images_per_s']:,.0f} | "
            f"{median:.2f} s | {', '.join(f'{t:.2f}' for t in times)} |"
        )


if __name__ == "__main__":
    main()

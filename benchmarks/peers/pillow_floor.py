"""Peer runner: the Pillow floor of the resize case, no network, no files written.

Spec: ``pool`` (a folder of ``NNN.jpg``), ``n`` (images: index ``i`` reads ``pool/{i % 1000}``,
the file nginx serves for the i-th URL), ``processes``, ``max_size``, ``quality``. Each of
``processes`` processes reads its share of the files from disk and does what a resize needs and
nothing else: a draft-mode JPEG decode (the decoder scales by 1/2, 1/4 or 1/8 on its own, as
far as still covers the output size), a LANCZOS resize to ``max_size`` on the longest side, a
JPEG encode at ``quality``. The rate of gbif-dl resizing while it downloads is compared to it.
Standard library and Pillow only (runs with the harness's python).
"""

from __future__ import annotations

import io
import multiprocessing
import sys
from pathlib import Path

import _runner_common as rc


def shrink(path: str, max_size: int, quality: int) -> int:
    """Decode (draft), resize and encode one file; the size of the JPEG made."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        scale = max_size / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image.draft("RGB", size)  # the decoder scales down as far as still covers ``size``
        if image.mode != "RGB":  # (convert to the same mode would copy for nothing)
            image = image.convert("RGB")
        if scale < 1:
            image = image.resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        return len(out.getbuffer())


def work(args: tuple[list[str], int, int]) -> int:
    paths, max_size, quality = args
    return sum(1 for path in paths if shrink(path, max_size, quality) > 0)


def main() -> None:
    spec, out = rc.load_spec()
    pool = Path(spec["pool"])
    n, processes = int(spec["n"]), int(spec.get("processes", 2))
    max_size, quality = int(spec.get("max_size", 512)), int(spec.get("quality", 90))
    paths = [str(pool / f"{i % 1000:03d}.jpg") for i in range(n)]
    chunks = [(paths[k::processes], max_size, quality) for k in range(processes)]
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Pool(processes) as workers:  # started before the clock, as a warm pool
        workers.map(int, range(processes))
        with rc.Timer() as t:
            count = sum(workers.map(work, chunks))
    rc.write_result(
        out, count=count, elapsed_s=t.elapsed, wall_start=t.wall_start, wall_end=t.wall_end
    )


if __name__ == "__main__":
    main()

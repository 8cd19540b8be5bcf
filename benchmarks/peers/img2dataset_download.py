"""Peer runner: img2dataset (run in its own venv) on a plain URL list.

Spec: ``url_list`` (a .txt file, one URL a line), ``output_folder``, ``processes``, ``threads``,
``shard_size``, ``timeout``. Files output, no resize, no re-encode: img2dataset's fastest
settings for this job; or, with ``image_size`` (the resize case), ``resize_mode``
``keep_ratio_largest`` (the longest side becomes ``image_size``, as gbif-dl's ``max_size``), only
if bigger, re-encoded at ``encode_quality``. Successes are read from its per-shard
``*_stats.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import _runner_common as rc


def main() -> None:
    spec, out = rc.load_spec()
    from img2dataset import download

    folder = Path(spec["output_folder"])
    size = spec.get("image_size")
    resize = {"resize_mode": "no", "skip_reencode": True}
    if size is not None:
        resize = {
            "resize_mode": "keep_ratio_largest",
            "image_size": int(size),
            "resize_only_if_bigger": True,
            "encode_quality": int(spec.get("encode_quality", 90)),
            "skip_reencode": False,
        }
    with rc.Timer() as t:
        download(
            url_list=spec["url_list"],
            input_format="txt",
            output_format="files",
            output_folder=str(folder),
            processes_count=int(spec["processes"]),
            thread_count=int(spec["threads"]),
            number_sample_per_shard=int(spec["shard_size"]),
            **resize,
            timeout=int(spec.get("timeout", 10)),
            retries=int(spec.get("retries", 0)),
            enable_wandb=False,
            distributor="multiprocessing",
        )
    successes = failures = 0
    for stats_file in folder.glob("*_stats.json"):
        stats = json.loads(stats_file.read_text())
        successes += int(stats.get("successes", 0))
        failures += int(stats.get("failed_to_download", 0)) + int(stats.get("failed_to_resize", 0))
    rc.write_result(
        out,
        count=successes,
        files=rc.count_files(folder),
        failures=failures,
        elapsed_s=t.elapsed,
        wall_start=t.wall_start,
        wall_end=t.wall_end,
    )


if __name__ == "__main__":
    main()

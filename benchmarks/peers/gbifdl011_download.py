"""Peer runner: gbif-dl 0.1.1's downloader (run in its own venv).

gbif-dl 0.1.1 documents ``gbif_dl.io.download``; the installed 0.1.1 package exposes that function
as ``gbif_dl.dl_async.download``. Items are the same lazily generated dicts our runner gets.
Spec: ``base_urls``, ``n``, ``labels``, ``root``, ``tcp_connections``, ``nb_workers``,
``retries``. The progress bar is switched off (``loglevel="ERROR"``) as it is for every tool.
"""

from __future__ import annotations

from pathlib import Path

import _runner_common as rc


def main() -> None:
    spec, out = rc.load_spec()
    from gbif_dl import dl_async

    root = Path(spec["root"])
    kwargs = {
        k: spec[k] for k in ("tcp_connections", "nb_workers", "retries", "batch_size") if k in spec
    }
    with rc.Timer() as t:
        stats = dl_async.download(
            rc.download_items(spec), root=str(root), loglevel="ERROR", **kwargs
        )
    rc.write_result(
        out,
        count=rc.count_files(root),
        elapsed_s=t.elapsed,
        wall_start=t.wall_start,
        wall_end=t.wall_end,
        stats=stats,
    )


if __name__ == "__main__":
    main()

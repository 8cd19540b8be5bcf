"""Reference runner: ``curl --parallel``, a C client's floor for the same downloads.

Not a product and never part of the library: like the bare aiohttp loop
(``bare_aiohttp_download.py``), it says how fast "just fetch and write" goes, here without
Python at all. The items every runner gets are written to a curl config file (``url`` and
``output`` per item, ``root/label/basename.jpg``), then one ``curl --parallel`` process fetches
them with ``connections`` transfers at once (default 128) over reused connections. No
validation, no temp file and rename, no journal, no manifest, no retries. The time includes
writing the config file.

Spec: ``base_urls``, ``n``, ``labels``, ``root``, optional ``connections``, optional ``curl``
(the binary; default the one on ``PATH``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import _runner_common as rc


def _quoted(text: str) -> str:
    """A curl config value: double-quoted, with backslashes and quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(spec: dict[str, Any], root: Path, config: Path) -> int:
    """The curl config of the spec's items (one ``url``/``output`` pair each); returns how many."""
    count = 0
    with open(config, "w", encoding="utf-8") as handle:
        for item in rc.download_items(spec):
            target = root / item["label"] / f"{item['basename']}.jpg"
            handle.write(f"url = {_quoted(item['url'])}\noutput = {_quoted(str(target))}\n")
            count += 1
    return count


def main() -> None:
    spec, out = rc.load_spec()
    root = Path(spec["root"])
    curl = spec.get("curl") or shutil.which("curl")
    if curl is None:
        raise SystemExit("curl is not installed")
    connections = int(spec.get("connections", 128))
    config = out.with_suffix(".curl.txt")
    with rc.Timer() as t:
        items = write_config(spec, root, config)
        done = subprocess.run(
            [
                curl,
                "--parallel",
                "--parallel-max",
                str(connections),
                "--create-dirs",
                "--no-progress-meter",  # --silent leaves the --parallel meter on (curl 7.88)
                "--fail",
                "--config",
                str(config),
            ],
            check=False,
        )
    config.unlink(missing_ok=True)
    count = rc.count_files(root)
    rc.write_result(
        out,
        count=count,
        elapsed_s=t.elapsed,
        wall_start=t.wall_start,
        wall_end=t.wall_end,
        stats={"items": items, "ok": count, "curl_exit": done.returncode},
    )


if __name__ == "__main__":
    main()

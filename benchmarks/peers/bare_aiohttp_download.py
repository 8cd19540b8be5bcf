"""Reference runner: a bare aiohttp loop, the floor of gbif-dl's own HTTP library.

Not a product and never part of the library: it is what "just fetch and write" costs with the
same client library gbif-dl uses, so the benchmarks can say how close gbif-dl gets to it. One
``aiohttp.ClientSession`` with ``connections`` connections (default 128), a fixed number of
worker coroutines taking items from the same lazily generated list every runner gets, each body
read whole and written to ``root/label/basename.jpg`` with a plain ``open().write()``: no
validation, no temp file and rename, no journal, no manifest, no retries.

Spec: ``base_urls``, ``n``, ``labels``, ``root``, optional ``connections``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import _runner_common as rc
import aiohttp


async def _fetch_all(spec: dict[str, Any], root: Path) -> dict[str, int]:
    connections = int(spec.get("connections", 128))
    items = rc.download_items(spec)
    counts = {"ok": 0, "failed": 0}
    made: set[str] = set()
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for item in items:  # one shared generator: each item is taken once
                folder = root / item["label"]
                if item["label"] not in made:
                    os.makedirs(folder, exist_ok=True)
                    made.add(item["label"])
                try:
                    async with session.get(item["url"]) as response:
                        body = await response.read()
                        if response.status != 200:
                            counts["failed"] += 1
                            continue
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    counts["failed"] += 1
                    continue
                # a plain blocking write, as plain as a loop can be (small files, page cache)
                with open(folder / f"{item['basename']}.jpg", "wb") as handle:  # noqa: ASYNC230
                    handle.write(body)
                counts["ok"] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return counts


def main() -> None:
    spec, out = rc.load_spec()
    root = Path(spec["root"])
    with rc.Timer() as t:
        counts = asyncio.run(_fetch_all(spec, root))
    rc.write_result(
        out,
        count=rc.count_files(root),
        elapsed_s=t.elapsed,
        wall_start=t.wall_start,
        wall_end=t.wall_end,
        stats=counts,
    )


if __name__ == "__main__":
    main()

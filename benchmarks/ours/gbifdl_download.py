"""Runner: this repository's gbif-dl ``io.download`` on lazily generated items.

Spec: ``base_urls``, ``n``, ``labels``, ``root``, optional ``kwargs`` passed on unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import _bootstrap  # noqa: F401
import _runner_common as rc


def as_plain(stats: Any) -> Any:
    """Turn whatever ``download`` returned into JSON-friendly data."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    for name in ("to_dict", "as_dict", "_asdict"):
        if hasattr(stats, name):
            return getattr(stats, name)()
    if isinstance(stats, dict):
        return {str(k): v for k, v in stats.items()}
    return str(stats)


def main() -> None:
    spec, out = rc.load_spec()
    import gbif_dl
    import gbif_dl.io  # imported before the clock starts, as each peer runner imports its library

    root = Path(spec["root"])
    with rc.Timer() as t:
        stats = gbif_dl.io.download(
            rc.download_items(spec), root=str(root), **spec.get("kwargs", {})
        )
    rc.write_result(
        out,
        count=rc.count_files(root),
        elapsed_s=t.elapsed,
        wall_start=t.wall_start,
        wall_end=t.wall_end,
        stats=as_plain(stats),
    )


if __name__ == "__main__":
    main()

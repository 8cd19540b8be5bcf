"""Runner: this repository's gbif-dl ``dwca.generate_urls`` on a local archive, fully consumed.

Spec: ``path``, ``label``, ``rows`` (the archive's occurrence count, for rows/s).
Big archives have their occurrence file read by a worker process: the result carries this
process's peak RSS and the worker's (``RUSAGE_CHILDREN``, the runner's only child), so the
case can report their sum.
"""

from __future__ import annotations

import resource

import _bootstrap  # noqa: F401
import _runner_common as rc


def main() -> None:
    spec, out = rc.load_spec()
    import gbif_dl
    import gbif_dl.dwca  # imported before the clock starts, as the peer runner imports its reader

    count = 0
    with rc.Timer() as t:
        for _item in gbif_dl.dwca.generate_urls(spec["path"], label=spec.get("label")):
            count += 1
    rc.write_result(
        out,
        rows=spec.get("rows"),
        count=count,
        elapsed_s=t.elapsed,
        main_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        worker_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )


if __name__ == "__main__":
    main()

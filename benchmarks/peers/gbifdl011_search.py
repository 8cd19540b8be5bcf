"""Peer runner: gbif-dl 0.1.1 ``api.generate_urls`` against the simulator (run in its own venv).

gbif-dl 0.1.1 searches through pygbif, which builds every URL from the module constant
``pygbif.gbifutils.gbif_baseurl``. The search modules import that constant by name, so the runner
rewrites it in every loaded pygbif module (the same override a user would need for GBIF's test
environment). Spec: ``api_url``, ``queries``, ``label``.
"""

from __future__ import annotations

import sys

import _runner_common as rc


def point_pygbif_at(api_url: str) -> list[str]:
    """Rewrite ``gbif_baseurl`` in every loaded pygbif module; return the modules changed."""
    import pygbif  # noqa: F401  (loads the submodules that copy the constant)

    base = api_url.rstrip("/") + "/"
    changed = []
    for name, module in list(sys.modules.items()):
        if name.startswith("pygbif") and hasattr(module, "gbif_baseurl"):
            module.gbif_baseurl = base
            changed.append(name)
    return changed


def main() -> None:
    spec, out = rc.load_spec()
    changed = point_pygbif_at(spec["api_url"])
    import gbif_dl

    count = 0
    labels: set[str] = set()
    with rc.Timer() as t:
        for item in gbif_dl.api.generate_urls(queries=spec["queries"], label=spec["label"]):
            count += 1
            labels.add(str(item["label"]))
    rc.write_result(
        out, count=count, elapsed_s=t.elapsed, labels=len(labels), pygbif_modules=len(changed)
    )


if __name__ == "__main__":
    main()

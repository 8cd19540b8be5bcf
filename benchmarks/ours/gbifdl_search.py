"""Runner: this repository's gbif-dl ``api.generate_urls`` against the simulator.

Spec: ``api_url``, ``queries``, ``label``, optional ``kwargs`` passed on unchanged.
"""

from __future__ import annotations

import _bootstrap  # noqa: F401
import _runner_common as rc


def main() -> None:
    spec, out = rc.load_spec()
    import gbif_dl
    import gbif_dl.api  # imported before the clock starts, as the peer runner imports its library

    count = 0
    labels: set[str] = set()
    with rc.Timer() as t:
        items = gbif_dl.api.generate_urls(
            queries=spec["queries"],
            label=spec["label"],
            api_url=spec["api_url"],
            **spec.get("kwargs", {}),
        )
        for item in items:
            count += 1
            labels.add(str(item["label"]))
    rc.write_result(out, count=count, elapsed_s=t.elapsed, labels=len(labels))


if __name__ == "__main__":
    main()

"""Case ``dwca`` (issue 4): rows/s and peak RSS reading a big GBIF DwC-A.

An archive of 1,000,000 occurrences (about 1.5 million multimedia rows) written by
``gbif_dl.testing.write_dwca`` and cached in ``benchmarks/.work/``. gbif-dl's
``dwca.generate_urls(path, label="speciesKey")`` fully consumed, against python-dwca-reader
doing what gbif-dl 0.1.1 did (``DwCAReader``, rows, extensions). Each tool in its own process so
peak RSS is per tool.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from harness import core, venvs
from harness.core import DWCA_READER, OURS, CaseResult, Context, Line, fmt, median, ratio
from harness.proc import OURS_PYTHON, Run, run_tool

SEED = 0
N_SPECIES = 50


def _testing() -> tuple[Any, Any]:
    try:
        from gbif_dl.testing import Population, write_dwca
    except ImportError:  # the package may not re-export them yet
        from gbif_dl.testing.archive import write_dwca
        from gbif_dl.testing.population import Population
    return Population, write_dwca


def archive(size: int, log: Any = print) -> tuple[Path, dict[str, Any]]:
    """The cached archive of ``size`` occurrences (rebuilt when the writer's source changes)."""
    import numpy as np

    population_cls, write_dwca = _testing()
    source = "".join(
        inspect.getsource(m)
        for m in (inspect.getmodule(write_dwca), inspect.getmodule(population_cls))
    )
    digest = hashlib.sha1(f"{size}|{SEED}|{N_SPECIES}|{source}".encode()).hexdigest()[:12]
    path = core.WORK / f"dwca-{size}-{digest}.zip"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return path, json.loads(meta_path.read_text())
    for old in core.WORK.glob(f"dwca-{size}-*"):
        old.unlink()
    log(f"  writing a DwC-A of {size:,} occurrences to {path} (cached for later runs)")
    pop = population_cls(seed=SEED, size=size, n_species=N_SPECIES)
    summary = write_dwca(pop, np.arange(size), path)
    meta = {
        "occurrences": int(summary.occurrences),
        "multimedia_rows": int(summary.multimedia_rows),
        "zip_mb": round(summary.size / 2**20, 1),
    }
    meta_path.write_text(json.dumps(meta))
    return path, meta


def run(ctx: Context) -> CaseResult:
    size = 20_000 if ctx.quick else 1_000_000
    path, meta = archive(size, ctx.log)
    res = CaseResult(
        "dwca",
        "DwC-A parse: occurrence rows/s and peak RSS",
        {"archive": meta, "label": "speciesKey", "mediatype": "StillImage"},
    )
    old_python = venvs.ensure(venvs.GBIF_DL_011, ctx.log)
    scratch = ctx.scratch("dwca")
    spec = {"path": str(path), "label": "speciesKey", "rows": meta["occurrences"]}

    def tool(name: str, python: str, script: str, ours: bool):
        def go() -> Run:
            run = run_tool(
                name, python, core.BENCH / script, spec, scratch=scratch, timeout_s=900, ours=ours
            )
            run.result.setdefault("rows", meta["occurrences"])
            return run

        return go

    runs = core.alternate(
        ctx,
        [
            (OURS, tool(OURS, OURS_PYTHON, "ours/gbifdl_dwca.py", True)),
            (DWCA_READER, tool(DWCA_READER, str(old_python), "peers/dwca_reader.py", False)),
        ],
    )
    res.add_runs("dwca", runs)
    rows = {t: median([r.rate("rows") for r in rs]) for t, rs in runs.items()}
    rss = {t: median([r.peak_rss_mb if r.ok else None for r in rs]) for t, rs in runs.items()}
    ours_ok = [r for r in runs[OURS] if r.ok]
    main_rss = median([r.result.get("main_rss_mb") for r in ours_ok])
    worker_rss = median([r.result.get("worker_rss_mb") for r in ours_ok])
    # two processes: the sum of their peaks (an upper bound: shared library pages count twice)
    if main_rss is not None and worker_rss is not None:
        rss[OURS] = main_rss + worker_rss
    items = {
        t: median([r.result.get("count") if r.ok else None for r in rs]) for t, rs in runs.items()
    }
    r = ratio(rows[OURS], rows[DWCA_READER])
    res.lines += [
        Line(
            f"occurrence rows/s ({meta['occurrences']:,} occurrences, "
            f"{meta['multimedia_rows']:,} media rows)",
            {t: fmt(v) for t, v in rows.items()},
            f"{fmt(r, '×', 1)} vs python-dwca-reader",
            "≥ 20×",
            None if r is None else r >= 20,
        ),
        Line(
            "peak RSS (gbif-dl: main process + occurrence worker)",
            {t: fmt(v, " MB") for t, v in rss.items()},
            f"main {fmt(main_rss, ' MB')} + worker {fmt(worker_rss, ' MB')}",
            "gbif-dl < 300 MB",
            None if rss[OURS] is None else rss[OURS] < 300,
        ),
        Line("media records yielded", {t: fmt(v, digits=0) for t, v in items.items()}),
    ]
    res.notes.append(
        "gbif-dl reads occurrence.txt in a worker process while the main one streams "
        "multimedia.txt and builds the records; its peak RSS is the sum of both peaks, which "
        "counts the shared library pages of pyarrow and numpy twice."
    )
    res.notes.append(
        "python-dwca-reader runs in the gbif-dl 0.1.1 venv (its dependency there) with 0.1.1's "
        "loop: DwCAReader rows, row.extensions, one random StillImage per occurrence."
    )
    return res

"""Run gbif-dl's benchmarks against its peers, in one command.

    python benchmarks/run.py [CASE ...] [--quick] [--repeats N]

Cases: search, dwca, download (= download-a .. download-e), any single download-X, read, dask,
soak, hashing, resize, renditions. With no case, all run (the full soak alone takes about half
an hour).
Peers (gbif-dl 0.1.1, img2dataset) get their own virtual environments under
``benchmarks/.venvs/`` on first use; nginx is started and stopped by the download cases.
Each case writes ``benchmarks/results/<case>.json``; the markdown table printed at the end goes
into BENCHMARKS.md. ``--quick`` uses small sizes so the whole harness runs in about a minute.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import core, machine, proc, venvs
from harness.nginx import find_nginx

DOWNLOAD = ["download-a", "download-b", "download-c", "download-d", "download-e"]
SCRIPTS = ["read", "dask", "soak"]
RESIZE = ["resize", "renditions"]
CASES = ["search", "dwca", *DOWNLOAD, "hashing", *SCRIPTS, *RESIZE]


def case_runner(name: str):
    if name.startswith("download-") or name == "hashing":
        module = importlib.import_module("harness.cases.download")
        return getattr(module, "run_" + name.split("-", 1)[-1])
    if name in SCRIPTS:
        return getattr(importlib.import_module("harness.cases.scripts"), "run_" + name)
    if name in RESIZE:
        return getattr(importlib.import_module("harness.cases.resize"), "run_" + name)
    return importlib.import_module(f"harness.cases.{name}").run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"{', '.join(CASES)}, download")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--report",
        action="store_true",
        help="run nothing: print the markdown table from the saved results/*.json",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="rounds per case (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--budget-min",
        type=float,
        default=10.0,
        help="a case starts no new round that would end past this many minutes (default 10)",
    )
    args = parser.parse_args(argv)
    names: list[str] = []
    for name in args.cases or CASES:
        expanded = DOWNLOAD if name == "download" else [name]
        for n in expanded:
            if n not in CASES:
                parser.error(f"unknown case {n!r}; choose from {', '.join(CASES)}, download")
            if n not in names:
                names.append(n)

    if args.report:
        print(report(names if args.cases else CASES, quick=args.quick))
        return 0

    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    ctx = core.Context(quick=args.quick, repeats=max(1, repeats), budget_s=60.0 * args.budget_min)
    start = time.monotonic()
    meta = {
        "machine": machine.machine_info(),
        "quick": args.quick,
        "repeats": ctx.repeats,
    }
    proc.compile_bytecode(proc.OURS_PYTHON, proc.REPO / "src")  # as an installed package has it
    results = []
    for name in names:
        ctx.log(f"== {name}{' (quick)' if args.quick else ''}")
        case_start = time.monotonic()
        load_start = os.getloadavg()[0]
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        try:
            res = case_runner(name)(ctx)
        except Exception as exc:  # one broken case must not hide the others' numbers
            traceback.print_exc()
            res = core.CaseResult(name, name, {}, skipped=f"{exc.__class__.__name__}: {exc}"[:300])
        res.params["case_wall_s"] = round(time.monotonic() - case_start, 1)
        # other work on the machine skews timings: record the load around the case
        res.params["loadavg_1m_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
        res.params["started"] = started
        meta["versions"] = versions()
        res.params["gbif_dl_version"] = meta["versions"]["gbif-dl"]
        path = res.write(meta)
        ctx.log(
            f"   {name} took {res.params['case_wall_s']} s -> {path.relative_to(core.BENCH.parent)}"
        )
        results.append(res)
    meta["versions"] = versions()
    print()
    print(core.markdown(results, meta))
    ctx.log(f"\ntotal {time.monotonic() - start:.0f} s")
    return 0


def report(names: list[str], quick: bool) -> str:
    """The markdown table of the saved results of ``names`` (the newest file gives the header)."""
    folder = core.RESULTS / "quick" if quick else core.RESULTS
    loaded = []
    for name in names:
        path = folder / f"{name}.json"
        if path.exists():
            loaded.append(json.loads(path.read_text()))
    if not loaded:
        return f"no saved results in {folder}"
    newest = max(loaded, key=lambda d: d["params"].get("started", ""))
    meta = {k: newest[k] for k in ("machine", "versions", "quick", "repeats") if k in newest}
    return core.markdown([core.CaseResult.from_json(d) for d in loaded], meta)


def versions() -> dict[str, str]:
    out = machine.ours_version()
    old = venvs.versions(venvs.GBIF_DL_011)
    if old:
        out["gbif-dl 0.1.1 venv"] = ", ".join(f"{k} {v}" for k, v in old.items())
    i2d = venvs.versions(venvs.IMG2DATASET)
    if i2d:
        out["img2dataset venv"] = ", ".join(f"{k} {v}" for k, v in i2d.items())
    if find_nginx():
        out["nginx"] = machine.nginx_version() or "?"
    return out


if __name__ == "__main__":
    sys.exit(main())

"""What every case shares: the run context, alternating repeats, medians, ratios, results."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.proc import Run

BENCH = Path(__file__).resolve().parents[1]
WORK = BENCH / ".work"
RESULTS = BENCH / "results"

OURS = "gbif-dl"
OURS_ONE = "gbif-dl processes=1"
OLD = "gbif-dl 0.1.1"
I2D = "img2dataset"
DWCA_READER = "python-dwca-reader"
BARE = "bare aiohttp loop"
FLOOR = "Pillow floor"
CURL = "curl --parallel"
TOOLS = (OURS, OURS_ONE, OLD, I2D, DWCA_READER, BARE, CURL, FLOOR)


@dataclass
class Context:
    """Options of this harness run."""

    quick: bool
    repeats: int
    log: Callable[[str], None] = print
    budget_s: float = 600.0  # no new round starts that would end past this

    def scratch(self, case: str) -> Path:
        path = WORK / "runs" / case
        path.mkdir(parents=True, exist_ok=True)
        return path


def alternate(
    ctx: Context,
    tools: Sequence[tuple[str, Callable[[], Run]]],
    *,
    repeats: int | None = None,
    budget_s: float | None = None,
) -> dict[str, list[Run]]:
    """Run the tools in rounds, rotating who goes first, until ``repeats`` rounds are done or the
    time budget is spent (always at least one round)."""
    repeats = repeats or ctx.repeats
    budget = ctx.budget_s if budget_s is None else budget_s
    runs: dict[str, list[Run]] = {name: [] for name, _ in tools}
    start = time.monotonic()
    for r in range(repeats):
        order = list(tools[r % len(tools) :]) + list(tools[: r % len(tools)])
        round_start = time.monotonic()
        for name, fn in order:
            run = fn()
            runs[name].append(run)
            status = (
                "ok" if run.ok else ("TIMEOUT" if run.timed_out else f"FAILED rc={run.returncode}")
            )
            ctx.log(
                f"    round {r + 1} {name:<20} {status:<8} work {run.elapsed_s:8.2f} s  "
                f"wall {run.wall_s:8.2f} s  peak RSS {run.peak_rss_mb:8.1f} MB  "
                f"{ {k: v for k, v in run.result.items() if k in ('count', 'rows', 'files')} }"
            )
            if not run.ok and not run.timed_out:
                ctx.log("      log tail: " + run.log[-600:].replace("\n", "\n      "))
        spent = time.monotonic() - start
        if spent + (time.monotonic() - round_start) > budget and r + 1 < repeats:
            ctx.log(f"    time budget reached after {r + 1} round(s)")
            break
    return runs


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(value: float | None, unit: str = "", digits: int | None = None) -> str:
    if value is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    return f"{value:,.{digits}f}{unit}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


@dataclass
class Line:
    """One row of the results table: a measure, each tool's median, the ratio and the goal."""

    measure: str
    values: dict[str, str]
    ratio: str = ""
    goal: str = ""
    met: bool | None = None


@dataclass
class CaseResult:
    """A case's table rows, raw runs and notes; written to ``results/<case>.json``."""

    case: str
    title: str
    params: dict[str, Any]
    lines: list[Line] = field(default_factory=list)
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseResult:
        """Rebuild a saved result (for ``run.py --report``)."""
        params = dict(data.get("params", {}))
        # results saved before these keys existed: the harness run's start and its versions
        params.setdefault("started", "harness run of " + data.get("machine", {}).get("date", "?"))
        params.setdefault("gbif_dl_version", data.get("versions", {}).get("gbif-dl", "?"))
        return cls(
            data["case"],
            data.get("title", data["case"]),
            params,
            lines=[Line(**line) for line in data.get("table", [])],
            runs=data.get("runs", {}),
            notes=data.get("notes", []),
            skipped=data.get("skipped"),
        )

    @property
    def rounds(self) -> int:
        return max((len(v) for v in self.runs.values()), default=0)

    def add_runs(self, key: str, runs: dict[str, list[Run]]) -> None:
        for tool, rs in runs.items():
            self.runs[f"{key}/{tool}"] = [r.as_dict() for r in rs]

    def write(self, meta: dict[str, Any]) -> Path:
        folder = RESULTS / "quick" if meta.get("quick") else RESULTS  # smoke tests stay apart
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.case}.json"
        data = {
            "case": self.case,
            "title": self.title,
            **meta,
            "params": self.params,
            "skipped": self.skipped,
            "table": [line.__dict__ for line in self.lines],
            "notes": self.notes,
            "runs": self.runs,
        }
        path.write_text(json.dumps(scrub(data), indent=1, default=str) + "\n")
        return path


def scrub(value: Any) -> Any:
    """Make paths in saved results relative to the repository (no machine-specific paths)."""
    if isinstance(value, str):
        return value.replace(str(BENCH.parent) + "/", "").replace(sys.prefix, "<python>")
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def markdown(results: Sequence[CaseResult], meta: dict[str, Any]) -> str:
    """The table to paste into BENCHMARKS.md, with date, machine and versions above it."""
    m = meta["machine"]
    v = meta["versions"]
    out = [
        f"Run {m['date']}{' (--quick sizes)' if meta.get('quick') else ''}, "
        f"up to {meta.get('repeats')} rounds (median), on {m['nproc']} cores ({m['cpu_model']}), "
        f"{m['ram_gib']} GiB RAM, {m['os']}, Python {m['python']}.",
        "",
        "Versions: " + "; ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        f"| case | measure | {' | '.join(TOOLS)} | ratio | goal |",
        "| --- | --- | " + "---: | " * len(TOOLS) + "--- | --- |",
    ]
    for res in results:
        if res.skipped:
            out.append(f"| {res.case} | not measured: {res.skipped} |" + " |" * (len(TOOLS) + 2))
            continue
        for line in res.lines:
            cells = [line.values.get(t, "") for t in TOOLS]
            mark = {True: " (met)", False: " (not met)", None: ""}[line.met]
            out.append(
                f"| {res.case} | {line.measure} | "
                + " | ".join(cells)
                + f" | {line.ratio} | {line.goal}{mark if line.goal else ''} |"
            )
    notes = [f"- {r.case}: {n}" for r in results for n in r.notes]
    for r in results:
        p = r.params
        load = p.get("loadavg_1m_start_end")
        notes.append(
            f"- {r.case}: run {p.get('started', '?')}, {r.rounds} round(s), "
            f"{p.get('case_wall_s', '?')} s, gbif-dl {p.get('gbif_dl_version', '?')}"
            + (f", 1-min load average {load[0]} → {load[1]}" if load else "")
        )
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


def fresh_dir(path: Path) -> Path:
    """An empty folder at ``path``."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path

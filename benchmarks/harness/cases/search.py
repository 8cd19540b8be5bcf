"""Case ``search`` (issue 3): records/s from the occurrence search API with 200 ms latency.

gbif-dl's ``api.generate_urls`` against gbif-dl 0.1.1's (pygbif pointed at the simulator), on a
synthetic population whose query matches about 20,000 occurrences with images. The simulator
runs in the harness process; each tool runs in its own process against a fresh simulator, so
``max_in_flight`` (the most API requests the simulator handled at once) is per tool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import core, venvs
from harness.core import OLD, OURS, CaseResult, Context, Line, fmt, median, ratio
from harness.proc import OURS_PYTHON, Run, run_tool

LATENCY_S = 0.2
#: The API concurrency of the second gbif-dl run (the default is 2; GBIF allows a few).
CONFIGURED_CONCURRENCY = 6
OURS_CONFIGURED = f"{OURS} (concurrency {CONFIGURED_CONCURRENCY})"
SEED = 0
N_SPECIES = 12


def _stat(stats: Any, name: str) -> Any:
    """One of the simulator's stats, from a dict or an object; ``None`` when missing."""
    if isinstance(stats, dict):
        return stats.get(name)
    return getattr(stats, name, None)


def _population(target: int) -> tuple[Any, dict[str, Any], int]:
    """A population whose query matches about ``target`` occurrences with a still image."""
    from gbif_dl.testing import Population

    probe = Population(seed=SEED, size=20_000, n_species=N_SPECIES)
    keys = [int(sp["key"]) for sp in probe.species]
    query = {"speciesKey": keys}
    share = len(probe.select({**query, "mediaType": "StillImage"})) / probe.size
    pop = Population(seed=SEED, size=int(target / share) + 1, n_species=N_SPECIES)
    keys = [int(sp["key"]) for sp in pop.species]
    query = {"speciesKey": keys}
    matched = len(pop.select({**query, "mediaType": "StillImage"}))
    return pop, query, matched


@dataclass
class _SimTally:
    """What the simulator saw in each tool's runs: most requests in flight, requests served."""

    in_flight: dict[str, list[int]] = field(
        default_factory=lambda: {OURS: [], OURS_CONFIGURED: [], OLD: []}
    )
    requests: dict[str, list[int]] = field(
        default_factory=lambda: {OURS: [], OURS_CONFIGURED: [], OLD: []}
    )


def _tool(
    name: str,
    python: str,
    script: str,
    ours: bool,
    *,
    pop: Any,
    query: dict[str, Any],
    scratch: Path,
    tally: _SimTally,
    kwargs: dict | None = None,
) -> Callable[[], Run]:
    """One run of ``script`` against a fresh simulator; the simulator's counts go to ``tally``."""
    from gbif_dl.testing import GbifSimulator

    def go() -> Run:
        with GbifSimulator(pop, latency_s=LATENCY_S) as sim:
            spec = {"api_url": sim.api_url, "queries": query, "label": "speciesKey"}
            if kwargs:
                spec["kwargs"] = kwargs
            run = run_tool(
                name,
                python,
                core.BENCH / script,
                spec,
                scratch=scratch,
                timeout_s=600,
                ours=ours,
            )
            stats = sim.stats()
        tally.in_flight[name].append(_stat(stats, "max_in_flight"))
        req = _stat(stats, "requests")
        tally.requests[name].append(sum(req.values()) if isinstance(req, dict) else req)
        run.result["sim_max_in_flight"] = tally.in_flight[name][-1]
        run.result["sim_requests"] = tally.requests[name][-1]
        return run

    return go


def _run_tools(
    ctx: Context, pop: Any, query: dict[str, Any], tally: _SimTally
) -> dict[str, list[Run]]:
    """gbif-dl (default and configured concurrency) and gbif-dl 0.1.1, alternating."""
    old_python = venvs.ensure(venvs.GBIF_DL_011, ctx.log)
    scratch = ctx.scratch("search")
    sim = {"pop": pop, "query": query, "scratch": scratch, "tally": tally}
    return core.alternate(
        ctx,
        [
            (OURS, _tool(OURS, OURS_PYTHON, "ours/gbifdl_search.py", True, **sim)),
            (
                OURS_CONFIGURED,
                _tool(
                    OURS_CONFIGURED,
                    OURS_PYTHON,
                    "ours/gbifdl_search.py",
                    True,
                    kwargs={"concurrency": CONFIGURED_CONCURRENCY},
                    **sim,
                ),
            ),
            (OLD, _tool(OLD, str(old_python), "peers/gbifdl011_search.py", False, **sim)),
        ],
    )


def _add_rate_lines(
    res: CaseResult, runs: dict[str, list[Run]], quick: bool
) -> tuple[float | None, float | None]:
    """The records/s lines (default and configured concurrency); returns gbif-dl's and 0.1.1's."""
    ours = median([r.rate() for r in runs[OURS]])
    configured = median([r.rate() for r in runs[OURS_CONFIGURED]])
    old = median([r.rate() for r in runs[OLD]])
    r = ratio(ours, old)
    r_configured = ratio(configured, old)
    res.lines.append(
        Line(
            "records/s (20,000 records, 200 ms/request)" if not quick else "records/s",
            {OURS: fmt(ours), OLD: fmt(old)},
            f"{fmt(r, '×', 1)} vs 0.1.1",
            "≥ 4×",
            None if r is None else r >= 4,
        )
    )
    res.lines.append(
        Line(
            f"records/s at API concurrency {CONFIGURED_CONCURRENCY}",
            {OURS: fmt(configured), OLD: fmt(old)},
            f"{fmt(r_configured, '×', 1)} vs 0.1.1",
            "≥ 4×",
            None if r_configured is None else r_configured >= 4,
        )
    )
    return ours, old


def _add_in_flight_lines(
    res: CaseResult, in_flight: dict[str, list[int]], api_concurrency: int
) -> None:
    """The simulator's most requests in flight, against the configured and default caps."""
    mif_configured = [m for m in in_flight[OURS_CONFIGURED] if m is not None]
    res.lines.append(
        Line(
            f"simulator max requests in flight at concurrency {CONFIGURED_CONCURRENCY}",
            {OURS: str(max(mif_configured)) if mif_configured else "n/a"},
            f"configured {CONFIGURED_CONCURRENCY}",
            f"≤ {CONFIGURED_CONCURRENCY}",
            (max(mif_configured) <= CONFIGURED_CONCURRENCY) if mif_configured else None,
        )
    )
    mif = [m for m in in_flight[OURS] if m is not None]
    res.lines.append(
        Line(
            "simulator max requests in flight",
            {
                OURS: str(max(mif)) if mif else "n/a",
                OLD: str(max((m for m in in_flight[OLD] if m is not None), default="n/a")),
            },
            f"gbif-dl API concurrency {api_concurrency}",
            f"≤ {api_concurrency}",
            (max(mif) <= api_concurrency) if mif else None,
        )
    )


def _bound_line(api_concurrency: int, ours: float | None, old: float | None) -> Line:
    """The latency bound (concurrency x page size / latency) and the rates' share of it."""
    from gbif_dl.gbif import client

    page = getattr(client, "MAX_PAGE_SIZE", 300)
    bound = api_concurrency * page / LATENCY_S
    return Line(
        "latency bound: concurrency x page size / latency",
        {OURS: fmt(bound)},
        f"{fmt(ratio(bound, old), '×', 1)} of 0.1.1's rate; gbif-dl at "
        f"{fmt(None if ours is None else 100 * ours / bound, '%', 0)} of it",
        f"4× needs ≥ {fmt(None if old is None else 4 * old)} records/s",
    )


def _requests_line(runs: dict[str, list[Run]], requests: dict[str, list[int]]) -> Line:
    """Records retrieved against API requests made, per tool."""
    counts = {t: median([r.result.get("count") for r in rs if r.ok]) for t, rs in runs.items()}
    return Line(
        "records retrieved / API requests",
        {
            t: f"{fmt(counts[t], digits=0)} / {fmt(median(requests[t]), digits=0)}"
            for t in (OURS, OURS_CONFIGURED, OLD)
        },
    )


def run(ctx: Context) -> CaseResult:
    """Case ``search``: records/s of gbif-dl and gbif-dl 0.1.1 against the simulated API.

    Example:
        >>> run(Context(quick=True, repeats=1))  # doctest: +SKIP
    """
    from gbif_dl.gbif import client

    target = 2_000 if ctx.quick else 20_000
    pop, query, matched = _population(target)
    api_concurrency = client.DEFAULT_API_CONCURRENCY
    res = CaseResult(
        "search",
        "occurrence search: records/s with 200 ms API latency",
        {
            "population": pop.size,
            "matched_occurrences_with_image": matched,
            "latency_s": LATENCY_S,
            "query": "speciesKey = all species, mediaType = StillImage, label = speciesKey",
            "gbif-dl API concurrency (default)": api_concurrency,
        },
    )
    tally = _SimTally()
    runs = _run_tools(ctx, pop, query, tally)
    res.add_runs("search", runs)
    ours, old = _add_rate_lines(res, runs, ctx.quick)
    _add_in_flight_lines(res, tally.in_flight, api_concurrency)
    res.lines.append(_bound_line(api_concurrency, ours, old))
    res.lines.append(_requests_line(runs, tally.requests))
    return res

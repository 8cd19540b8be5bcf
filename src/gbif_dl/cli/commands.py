"""The commands that make and read datasets: ``download``, ``plan``, ``report``, ``demo``,
``simulate``. Each takes the parsed arguments and returns an exit code; the work is the
library's.

Example:
    >>> import argparse
    >>> cmd_report(argparse.Namespace(root="/nonexistent", thumbnails=0, no_html=True, html=None))
    Traceback (most recent call last):
    ...
    gbif_dl.errors.ConfigError: /nonexistent does not exist; give the folder a `gbif-dl download` \
wrote (it holds manifest.parquet)
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import textwrap
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gbif_dl.cli.exits import EXIT_FAILURES, EXIT_OK
from gbif_dl.cli.logs import logger
from gbif_dl.cli.settings import (
    parse_storage_options,
    records_of,
    require_source,
    run_config,
    sampling_options,
)
from gbif_dl.config import RunConfig
from gbif_dl.errors import ConfigError
from gbif_dl.fetch.result import Reason
from gbif_dl.progress import Meter, counted, expected_total, format_bytes, format_duration
from gbif_dl.sampling.spares import with_spares
from gbif_dl.storage.location import is_store_root

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.estimate import SearchPlan

__all__ = ["cmd_demo", "cmd_download", "cmd_plan", "cmd_report", "cmd_simulate"]


# --- download -----------------------------------------------------------------------------------


def _stat(stats: Any, name: str) -> int:
    value = stats.get(name, 0) if isinstance(stats, Mapping) else getattr(stats, name, 0)
    return int(value or 0)


#: Images fetched but deliberately not stored (the same photo as a stored file).
_NOT_STORED = (Reason.DUPLICATE, Reason.NEAR_DUPLICATE, Reason.PLACEHOLDER)


def _stat_reasons(stats: Any) -> Mapping[str, int]:
    reasons = (
        stats.get("reasons") if isinstance(stats, Mapping) else getattr(stats, "reasons", None)
    )
    return reasons if isinstance(reasons, Mapping) else {}


def _download(records: Iterable[Any], config: RunConfig, *, quiet: bool) -> Any:
    from gbif_dl import io

    total = config.nb_samples if config.nb_samples and config.nb_samples > 0 else None
    meter = Meter("records", unit="records", total=total)
    with expected_total(total):
        return io.download(
            counted(with_spares(records), meter),
            progress=False if quiet else None,
            **config.download_kwargs(),
        )


def _finish(stats: Any, config: RunConfig, root: str) -> int:
    ok, failed, skipped = (_stat(stats, k) for k in ("success", "failed", "skipped"))
    reasons = _stat_reasons(stats)
    copies = sum(reasons.get(reason.value, 0) for reason in _NOT_STORED)  # not fetch failures
    attempted = ok + failed - copies
    share = (failed - copies) / attempted if attempted else 0.0
    print(f"{ok} images downloaded, {failed} failed, {skipped} skipped -> {root}")
    _print_streams(getattr(stats, "streams", None) or {})
    print(f"summary: gbif-dl report {root}")
    if share > config.fail_threshold:
        logger.error(
            "%.1f%% of the images failed, more than the threshold of %.1f%%; run "
            "`gbif-dl report %s` for the reasons (the next run retries failed images), or raise "
            "--fail-threshold",
            100 * share,
            100 * config.fail_threshold,
            root,
        )
        return EXIT_FAILURES
    return EXIT_OK


def _print_streams(streams: Mapping[str, Mapping[str, Any]]) -> None:
    """Quotas: how many streams are complete, spares used, streams that ran dry."""
    if not streams:
        return
    from gbif_dl.report.quotas import quota_title

    used = sum(s["spares_used"] for s in streams.values())
    print(f"{quota_title(streams)}, {used} spares used")
    for name, s in streams.items():
        if s["ran_dry"]:
            print(
                f"  {name} ran dry: {s['delivered']} of {s['requested']} "
                f"({s['failed']} candidates failed, {s['trimmed']} trimmed)"
            )


def cmd_download(args: argparse.Namespace) -> int:
    """``gbif-dl download``: records from the configured source into the output folder.

    Example:
        >>> cmd_download(build_parser().parse_args(["download", "q.toml"]))  # doctest: +SKIP
        0
    """
    config = run_config(args)
    require_source(config, "download")
    records = records_of(config, dwca_dir=getattr(args, "dwca_dir", None))
    stats = _download(records, config, quiet=args.quiet)
    return _finish(stats, config, config.root)


# --- plan ---------------------------------------------------------------------------------------


def _plan_note(config: RunConfig, mediatype: str) -> str:
    """Why the download can take fewer than the plan's quotas, for these options."""
    skipped = [
        f"without a {config.label} value" if config.label else "",
        f"without a usable {mediatype} URL",
        "with a licence outside --license" if config.licenses else "",
        "with a URL already taken" if config.dedupe else "",
    ]
    reasons = [s for s in skipped if s]
    listed = ", ".join(reasons[:-1]) + (" or " if len(reasons) > 1 else "") + reasons[-1]
    note = (
        f"Counts are GBIF occurrence counts. The download skips occurrences {listed}, so each "
        "stream gives at most its quota"
    )
    if config.nb_samples == -1:
        note += "; with --nb-samples -1 every stream is cut to what the driest one really yields"
    return textwrap.fill(note + ".", width=100)


def _print_plan(plan: SearchPlan, config: RunConfig) -> None:
    from gbif_dl.estimate import ASSUMED_IMAGES_PER_S, estimate_cost
    from gbif_dl.report import format_table

    for name, key in plan.names.items():
        print(f"name {name!r} -> taxonKey {key}")
    print(
        f"Plan: {len(plan.streams)} stream(s), {plan.total_count:,} occurrences with "
        f"{plan.mediatype} media, up to {plan.total_quota:,} to take"
    )
    rows: list[list[Any]] = [[s.stream, s.count, s.quota] for s in plan.streams]
    rows.append(["TOTAL", plan.total_count, plan.total_quota])
    print("\n".join(format_table(["stream", "occurrences", "up to"], rows)))
    print(_plan_note(config, plan.mediatype))
    cost = estimate_cost(
        plan, max_size=config.max_size, one_media_per_occurrence=config.one_media_per_occurrence
    )
    more = "+" if cost.lower_bound else ""
    print()
    print(
        f"Estimate: ~{cost.api_requests:,} API requests, ~{cost.image_requests:,}{more} image "
        f"requests, ~{format_bytes(cost.total_bytes)}{more}, ~{format_duration(cost.seconds)}"
    )
    print(
        f"  (assuming ~{format_bytes(cost.image_bytes)} per image and ~{ASSUMED_IMAGES_PER_S:.0f} "
        "images/s; real hosts vary a lot)"
    )
    _print_spares(plan, config)
    print("Nothing was downloaded. Run the same arguments with `gbif-dl download` to fetch.")


def _print_spares(plan: SearchPlan, config: RunConfig) -> None:
    """The spares the request will likely need, from the failures seen at the output root."""
    from gbif_dl.estimate import observed_failure_share, spares_needed
    from gbif_dl.sampling.spares import spares_for

    share = observed_failure_share(config.root) if config.nb_samples is not None else None
    if share is None:
        return
    needed = spares_needed(plan, share)
    drawn = sum(spares_for(s.quota, sampling_options(config).spares) for s in plan.streams)
    print(
        f"Spares: with the {100 * share:.1f}% permanent failures seen in {config.root}, "
        f"~{sum(needed.values()):,} spares needed (most per stream: "
        f"{max(needed.values(), default=0):,}); {drawn:,} are drawn"
    )


def cmd_plan(args: argparse.Namespace) -> int:
    """``gbif-dl plan``: streams, counts, quotas and estimates of a search; downloads nothing.

    Example:
        >>> cmd_plan(build_parser().parse_args(["plan", "q.toml"]))  # doctest: +SKIP
        0
    """
    from gbif_dl.estimate import plan_search

    config = run_config(args)
    require_source(config, "plan")
    if config.source != "search" or config.queries is None:
        raise ConfigError(
            "`gbif-dl plan` plans occurrence searches (queries / --query); for --dwca use "
            "`gbif-dl dwca status KEY` to see its size"
        )
    plan = plan_search(config.queries, sampling_options(config), api_url=config.api_url)
    _print_plan(plan, config)
    return EXIT_OK


# --- report, demo, simulate ---------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    """``gbif-dl report ROOT``: terminal tables and ``ROOT/report.html``.

    Example:
        >>> cmd_report(build_parser().parse_args(["report", "data"]))  # doctest: +SKIP
        0
    """
    from gbif_dl import report

    if args.thumbnails < 0:
        raise ConfigError("--thumbnails must be 0 or more")
    if is_store_root(args.root):  # s3://...: read from the store
        return _report_store(args)
    if not Path(args.root).exists():
        raise ConfigError(
            f"{args.root} does not exist; give the folder a `gbif-dl download` wrote (it holds "
            "manifest.parquet)"
        )
    summary = report.summarize(args.root, thumbnails=0 if args.no_html else args.thumbnails)
    print(report.format_text(summary))
    if not args.no_html:
        path = report.write_html(summary, args.html)
        print(f"\nHTML report: {path}")
    return EXIT_OK


def _report_store(args: argparse.Namespace) -> int:
    from gbif_dl.storage.read import DatasetRoot
    from gbif_dl.storage.report import report_store

    options = parse_storage_options(getattr(args, "storage_option", None))
    text, page = report_store(
        DatasetRoot(args.root, options), html=not args.no_html, html_path=args.html
    )
    print(text)
    if page is not None:
        print(f"\nHTML report: {page}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """``gbif-dl demo``: the whole pipeline offline, against the built-in simulator.

    Example:
        >>> cmd_demo(build_parser().parse_args(["demo"]))  # doctest: +SKIP
        0
    """
    from gbif_dl import demo, report

    root = Path(args.root) if args.root else demo.default_demo_root()
    if not args.root:
        logger.info("demo dataset folder: %s (choose another with --root)", root)
    result = demo.run_demo(
        root,
        size=args.size,
        nb_samples=args.nb_samples,
        n_hosts=args.hosts,
        seed=args.seed,
        progress=False if args.quiet else None,
    )
    print(f"Query: {result.description}")
    print()
    print(report.format_text(result.summary))
    print()
    ok, failed, skipped = (_stat(result.stats, k) for k in ("success", "failed", "skipped"))
    known = _stat(result.stats, "not_retried")
    again = f" ({known} of the failures known from before, not requested again)" if known else ""
    print(f"This run: {ok} images downloaded, {failed} failed, {skipped} already there{again}")
    set_aside = ok + skipped - result.summary.n_success
    if set_aside > 0:  # the end-of-run content pass: copies of a kept photo, placeholders
        print(
            f"  of these, {set_aside} set aside at the end as duplicates or placeholders "
            "(manifest rows 'duplicate' / 'placeholder')"
        )
    print(f"Dataset: {result.root}")
    print(f"HTML report: {result.report_path}")
    print(f"Done in {result.seconds:.1f} s. Open the report in a browser, or train on the folders.")
    return EXIT_OK


def _stop_on_sigterm() -> Any:
    """Make SIGTERM stop the simulator cleanly, like Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def cmd_simulate(args: argparse.Namespace) -> int:
    """``gbif-dl simulate``: serve a simulated GBIF API and image hosts until stopped.

    Example:
        >>> args = argparse.Namespace(port=8080, host="127.0.0.1", size=300, hosts=1, seed=0)
        >>> cmd_simulate(args)  # doctest: +SKIP
        0
    """
    from gbif_dl.testing import simulation

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    logger.info(
        "serving a simulated GBIF API at http://%s:%d/v1 (%d occurrences, %d image hosts); "
        "Ctrl-C stops",
        args.host,
        args.port,
        args.size,
        args.hosts,
    )
    previous = _stop_on_sigterm()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            simulation.serve_forever(
                args.port, size=args.size, seed=args.seed, n_hosts=args.hosts, host=args.host
            )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    logger.info("simulator stopped")
    return EXIT_OK

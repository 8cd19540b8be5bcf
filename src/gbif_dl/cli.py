"""The ``gbif-dl`` command: argument parsing, logging, progress and exit codes; nothing else.

Every command delegates to the library (:mod:`gbif_dl.api`, :mod:`gbif_dl.dwca`,
:mod:`gbif_dl.io`, :mod:`gbif_dl.report`, :mod:`gbif_dl.demo`). Exit codes:

* ``0`` success;
* ``1`` more images failed than ``--fail-threshold`` allows, or GBIF / the network / the disk
  failed (the message says which);
* ``2`` usage or configuration error (bad flag, unknown key in a query file, missing
  credentials), detected before any download;
* ``130`` interrupted with Ctrl-C; finished images are kept and the next run resumes.

Errors print as one line with the fix; ``--debug`` adds the traceback.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    gbif-dl ...
    0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import math
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbif_dl._version import __version__
from gbif_dl.config import OUTPUT_LAYOUTS, RUNNER_NAMES, RunConfig, load_config
from gbif_dl.errors import ConfigError, GbifDlError, MissingExtraError

__all__ = ["EXIT_FAILURES", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

logger = logging.getLogger("gbif_dl.cli")

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Rough numbers behind ``gbif-dl plan``'s estimates (stated in its output).
ASSUMED_IMAGE_BYTES = 350_000
ASSUMED_IMAGES_PER_S = 25.0
ASSUMED_API_PAGE_S = 0.5
API_PAGE_SIZE = 300


# --- logging and progress ---------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest's capture swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _CliFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        if record.name != "gbif_dl.cli" and record.levelno < logging.WARNING:
            text = f"[{record.name.removeprefix('gbif_dl.')}] {text}"
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        return f"gbif-dl: {text}"


_HANDLER_TAG = "_gbif_dl_cli_handler"


def configure_logging(verbosity: int = 0, *, debug: bool = False) -> Callable[[], None]:
    """Install the command's one stderr handler on the ``gbif_dl`` logger.

    ``verbosity`` -1 (``-q``): warnings only; 0: the command's own progress lines; 1 (``-v``):
    the library's INFO lines too; 2 (``-vv``) or ``debug``: everything. Returns a function that
    restores the previous logging state (so ``main()`` can run inside a larger program).

    Example:
        >>> restore = configure_logging(1)
        >>> logging.getLogger("gbif_dl").level == logging.INFO
        True
        >>> restore()
    """
    package = logging.getLogger("gbif_dl")
    progress = logging.getLogger("gbif_dl.progress")  # the download's periodic progress lines
    saved = (
        package.level,
        package.propagate,
        logger.level,
        list(package.handlers),
        progress.level,
    )
    for handler in list(package.handlers):
        if getattr(handler, _HANDLER_TAG, False):
            package.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _HANDLER_TAG, True)
    handler.setFormatter(_CliFormatter())
    package.addHandler(handler)
    package.propagate = False
    if debug or verbosity >= 2:
        levels = (logging.DEBUG, logging.DEBUG)
    elif verbosity == 1:
        levels = (logging.INFO, logging.INFO)
    elif verbosity == 0:
        levels = (logging.WARNING, logging.INFO)
    else:
        levels = (logging.WARNING, logging.WARNING)
    package.setLevel(levels[0])
    logger.setLevel(levels[1])
    progress.setLevel(levels[1])

    def restore() -> None:
        package.removeHandler(handler)
        for old in saved[3]:
            if old not in package.handlers:
                package.addHandler(old)
        package.setLevel(saved[0])
        package.propagate = saved[1]
        logger.setLevel(saved[2])
        progress.setLevel(saved[4])

    return restore


def _is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class Meter:
    """Progress of one long step: a tqdm bar on a terminal, a log line every few seconds otherwise.

    Example:
        >>> with Meter("records", total=3, bar=False) as meter:
        ...     meter.update(2)
        >>> meter.done
        2
    """

    def __init__(
        self,
        desc: str,
        *,
        total: int | None = None,
        unit: str = "it",
        bar: bool | None = None,
        log_every_s: float = 10.0,
        scale_bytes: bool = False,
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self.log_every_s = log_every_s
        self._scale_bytes = scale_bytes
        self._last_log = self.started
        use_bar = _is_terminal() and logger.isEnabledFor(logging.INFO) if bar is None else bar
        self._bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                unit_scale=scale_bytes,
                unit_divisor=1024 if scale_bytes else 1000,
                file=sys.stderr,
                leave=True,
            )

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def set_total(self, total: int | None) -> None:
        """Set (or correct) the expected total."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_log >= self.log_every_s:
            self._last_log = now
            self._log()

    def set_done(self, done: int, total: int | None = None) -> None:
        """Set the absolute count (for callbacks that report totals, like byte transfers)."""
        if total is not None and total != self.total:
            self.set_total(total)
        self.update(done - self.done)

    def _amount(self, n: int) -> str:
        if self._scale_bytes:
            from gbif_dl.report import _human_bytes

            return _human_bytes(n)
        return f"{n:,}"

    def _log(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        of = f" of {self._amount(self.total)}" if self.total else ""
        rate = self.done / elapsed
        logger.info(
            "%s: %s%s %s (%s/s)",
            self.desc,
            self._amount(self.done),
            of,
            "" if self._scale_bytes else self.unit,
            self._amount(int(rate)) if self._scale_bytes else f"{rate:.1f}",
        )

    def close(self) -> None:
        """Finish the bar, or log the last line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.done:
            self._log()


def _counted(items: Iterable[Any], meter: Meter) -> Iterator[Any]:
    """Pass items through, counting them on ``meter``."""
    try:
        for item in items:
            meter.update()
            yield item
    finally:
        meter.close()
        close = getattr(items, "close", None)
        if close is not None:
            close()


# --- argument parsing -------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line with a hint, exit code 2."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"gbif-dl: error: {message}; see `{self.prog} --help`\n")


_EXAMPLES = {
    "main": """examples:
  gbif-dl demo                                  # the whole pipeline offline, in seconds
  gbif-dl plan bees.toml                        # what a download would take, without downloading
  gbif-dl download bees.toml                    # download the dataset a query file describes
  gbif-dl report data                           # summarise a downloaded dataset""",
    "download": """examples:
  gbif-dl download examples/query.toml
  gbif-dl download --query speciesKey=5352251 --query speciesKey=1311477 \\
      --label speciesKey --split-streams-by speciesKey --nb-samples 200 \\
      --splits train=0.8,test=0.2 -o bees
  gbif-dl download --dwca 0022697-200613084148143 --label speciesKey -o from-archive
  gbif-dl download examples/query.toml --output webdataset --shard-size 5000
  gbif-dl download examples/query.toml --max-size 512 --runner local --workers 4
  gbif-dl download --urls urls.txt -o images""",
    "plan": """examples:
  gbif-dl plan examples/query.toml
  gbif-dl plan --query taxonKey=1340278 --split-streams-by speciesKey --nb-samples 1000""",
    "dwca": """examples:
  export GBIF_USER=me GBIF_PWD=secret
  gbif-dl dwca request --query taxonKey=1340278 --query country=FR
  gbif-dl dwca status 0022697-200613084148143
  gbif-dl dwca fetch 0022697-200613084148143 --wait -o downloads/""",
    "dwca request": """examples:
  GBIF_USER=me GBIF_PWD=secret gbif-dl dwca request examples/query.toml --wait""",
    "dwca status": """examples:
  gbif-dl dwca status 0022697-200613084148143
  gbif-dl dwca status 10.15468/dl.hx3uzz""",
    "dwca fetch": """examples:
  gbif-dl dwca fetch 0022697-200613084148143 -o downloads/
  gbif-dl download --dwca downloads/0022697-200613084148143.zip --label speciesKey""",
    "report": """examples:
  gbif-dl report data                   # terminal tables, and data/report.html
  gbif-dl report data --thumbnails 0    # no thumbnails in the HTML page""",
    "demo": """examples:
  gbif-dl demo
  gbif-dl demo --root demo-data --size 5000""",
    "simulate": """examples:
  gbif-dl simulate --port 8080 &
  gbif-dl download --api-url http://127.0.0.1:8080/v1 --query taxonKey=... -o data""",
}


def _add_common(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    # On sub-commands the flags default to SUPPRESS, so `gbif-dl --debug download` keeps --debug.
    group = parser.add_argument_group("output and diagnostics")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS if sub else 0,
        help="more log lines (-vv: debug)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS if sub else False,
        help="only warnings and errors; no progress",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if sub else False,
        help="debug logs and full tracebacks",
    )


def _add_source(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("records (a query file, or these flags; flags win)")
    group.add_argument(
        "config", nargs="?", metavar="QUERY_FILE", help="a TOML or YAML query file (see examples/)"
    )
    group.add_argument(
        "--query",
        "-Q",
        action="append",
        metavar="NAME=VALUE",
        help="a GBIF occurrence search parameter; repeat a name for several values",
    )
    group.add_argument("--api-url", help="GBIF API base URL (default $GBIF_API_URL or GBIF)")


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--label", help="record field used as class label, e.g. speciesKey")
    group.add_argument(
        "--split-streams-by",
        metavar="FIELD[,FIELD]",
        help="balance over the values of these fields, e.g. speciesKey",
    )
    group.add_argument("--nb-samples", type=int, help="total records to take (-1: balanced max)")
    group.add_argument("--nb-samples-per-stream", type=int, help="most records from one stream")
    group.add_argument(
        "--weighted-streams",
        action="store_true",
        default=None,
        help="quotas proportional to stream sizes instead of equal",
    )
    group.add_argument("--seed", type=int, help="seed of sampling and split assignment")
    group.add_argument(
        "--license",
        dest="licenses",
        action="append",
        metavar="CODE",
        help="keep only this licence (repeatable), e.g. CC0_1_0, CC_BY_4_0",
    )
    group.add_argument("--mediatype", help="media type to keep (default StillImage)")
    group.add_argument(
        "--all-media",
        action="store_true",
        default=None,
        help="all media of an occurrence, not only the first",
    )


def _add_download(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("download")
    group.add_argument("-o", "--root", help="output folder (default: data)")
    group.add_argument(
        "-O",
        "--output",
        choices=OUTPUT_LAYOUTS,
        help="layout: imagefolder (class folders, default), webdataset (.tar shards) or hf "
        "(class folders + metadata.jsonl for Hugging Face datasets)",
    )
    group.add_argument(
        "--splits",
        metavar="NAME=FRACTION,...",
        help="assign records to splits, e.g. train=0.8,val=0.1,test=0.1",
    )
    group.add_argument("--max-size", type=int, metavar="PX", help="resize to this longest side")
    group.add_argument("--concurrency", type=int, help="image requests in flight at once")
    group.add_argument("--per-host", type=int, help="image requests in flight per host")
    group.add_argument(
        "--fail-threshold",
        type=float,
        metavar="FRACTION",
        help="exit with 1 when more than this share of images failed (default 0.1)",
    )
    group.add_argument(
        "--shard-size",
        type=int,
        metavar="N",
        help="webdataset: samples per .tar shard; with --runner: records per shard (default 10000)",
    )
    group.add_argument(
        "--shard-bytes", type=int, metavar="BYTES", help="webdataset: close a shard at this size"
    )
    group = parser.add_argument_group("runner (shards in several processes or on a Dask cluster)")
    group.add_argument(
        "--runner",
        choices=RUNNER_NAMES,
        help="run the download in resumable shards: local (processes on this machine) or dask",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local: processes; dask: workers of the local cluster started for the run",
    )
    group.add_argument(
        "--dask-address",
        metavar="tcp://HOST:PORT",
        help="scheduler of a running Dask cluster (with --runner dask)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``gbif-dl`` argument parser, with one sub-command per task.

    Example:
        >>> build_parser().parse_args(["report", "data"]).command
        'report'
    """
    parser = _Parser(
        prog="gbif-dl",
        description="Turn GBIF occurrence media into machine-learning image datasets.",
        epilog=_EXAMPLES["main"],
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"gbif-dl {__version__}")
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def sub(name: str, help_text: str, parent: Any = commands) -> argparse.ArgumentParser:
        key = name if parent is commands else f"dwca {name}"
        p: argparse.ArgumentParser = parent.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_EXAMPLES.get(key, ""),
            formatter_class=_Formatter,
        )
        _add_common(p, sub=True)
        return p

    p = sub("download", "download a dataset from a query file, flags, a DwC-A or a URL list")
    _add_source(p)
    p.add_argument("--dwca", metavar="KEY|DOI|PATH", help="records from a GBIF download / zip")
    p.add_argument("--dwca-dir", help="where a fetched archive is kept (default: a cache folder)")
    p.add_argument("--urls", metavar="FILE", help="records from a file of URLs (txt or csv)")
    _add_sampling(p)
    _add_download(p)
    p.set_defaults(handler=_cmd_download)

    p = sub("plan", "dry run: streams, counts, quotas and estimates; downloads nothing")
    _add_source(p)
    _add_sampling(p)
    p.set_defaults(handler=_cmd_plan)

    p = sub("dwca", "GBIF occurrence downloads (Darwin Core Archives): request, status, fetch")
    p.set_defaults(handler=lambda args, dwca_parser=p: _usage(dwca_parser))
    dwca_commands = p.add_subparsers(dest="dwca_command", metavar="ACTION", parser_class=_Parser)
    q = sub(
        "request", "ask GBIF to prepare a DwC-A download (needs GBIF_USER, GBIF_PWD)", dwca_commands
    )
    _add_source(q)
    q.add_argument("--format", default="DWCA", help="GBIF download format (default: %(default)s)")
    q.add_argument("--wait", action="store_true", help="wait until GBIF has prepared it")
    q.add_argument(
        "--poll-interval",
        type=float,
        default=15.0,
        help="seconds between polls (default: %(default)s)",
    )
    q.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    q.set_defaults(handler=_cmd_dwca_request)
    q = sub("status", "show a download's status, size and DOI", dwca_commands)
    q.add_argument("identifier", metavar="KEY|DOI")
    q.add_argument("--api-url", help="GBIF API base URL")
    q.set_defaults(handler=_cmd_dwca_status)
    q = sub("fetch", "fetch a prepared download's zip file (resumes a partial file)", dwca_commands)
    q.add_argument("identifier", metavar="KEY|DOI")
    q.add_argument(
        "-o",
        "--output",
        default=".",
        help="folder (or .zip file name) to save to (default: %(default)s)",
    )
    q.add_argument("--wait", action="store_true", help="wait while GBIF still prepares it")
    q.add_argument(
        "--poll-interval",
        type=float,
        default=15.0,
        help="seconds between polls (default: %(default)s)",
    )
    q.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    q.add_argument("--api-url", help="GBIF API base URL")
    q.set_defaults(handler=_cmd_dwca_fetch)

    p = sub("report", "summarise a downloaded dataset in the terminal and as one HTML page")
    p.add_argument("root", metavar="ROOT", help="the dataset folder (holds manifest.parquet)")
    p.add_argument(
        "--html", metavar="FILE", help="where to write the page (default ROOT/report.html)"
    )
    p.add_argument("--no-html", action="store_true", help="terminal report only")
    p.add_argument(
        "--thumbnails",
        type=int,
        default=48,
        help="sample images in the page (default: %(default)s)",
    )
    p.set_defaults(handler=_cmd_report)

    p = sub("demo", "the whole pipeline offline against the built-in simulator")
    p.add_argument("--root", default="gbif-dl-demo", help="output folder (default: %(default)s)")
    p.add_argument(
        "--nb-samples", type=int, default=400, help="images to download (default: %(default)s)"
    )
    _world_arguments(p, size=3000, hosts=3, seed_help="seed of the simulated world and sampling")
    p.set_defaults(handler=_cmd_demo)

    p = sub("simulate", "serve a simulated GBIF API and image hosts on this machine")
    p.add_argument("--port", type=int, required=True, help="port of the simulated API")
    _world_arguments(p, size=10_000, hosts=2, seed_help="seed of the simulated world")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.set_defaults(handler=_cmd_simulate)
    return parser


def _world_arguments(p: argparse.ArgumentParser, *, size: int, hosts: int, seed_help: str) -> None:
    """The flags that describe a simulated world (``demo`` and ``simulate``)."""
    p.add_argument(
        "--size", type=int, default=size, help="simulated occurrences (default: %(default)s)"
    )
    p.add_argument(
        "--hosts", type=int, default=hosts, help="simulated image hosts (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default: %(default)s)")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


# --- building a run configuration from a file and flags --------------------------------------


def _parse_value(text: str) -> Any:
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def _parse_queries(items: Sequence[str] | None) -> dict[str, Any] | None:
    """``["speciesKey=1", "speciesKey=2", "country=FR"]`` -> ``{"speciesKey": [1, 2], ...}``."""
    if not items:
        return None
    query: dict[str, list[Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(
                f"--query expects NAME=VALUE, such as speciesKey=5352251; got {item!r}"
            )
        query.setdefault(name.strip(), []).append(_parse_value(value))
    return {k: v[0] if len(v) == 1 else v for k, v in query.items()}


def _parse_splits(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    splits: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            splits[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(
                "--splits expects NAME=FRACTION,..., such as train=0.8,val=0.1,test=0.1; "
                f"got {text!r}"
            )
    return splits


def _run_config(args: argparse.Namespace) -> RunConfig:
    base = load_config(args.config) if getattr(args, "config", None) else RunConfig()
    streams = getattr(args, "split_streams_by", None)
    if streams and "," in streams:
        streams = [s.strip() for s in streams.split(",") if s.strip()]
    all_media = getattr(args, "all_media", None)
    overrides = {
        "queries": _parse_queries(getattr(args, "query", None)),
        "dwca": getattr(args, "dwca", None),
        "urls": getattr(args, "urls", None),
        "api_url": getattr(args, "api_url", None),
        "label": getattr(args, "label", None),
        "split_streams_by": streams,
        "nb_samples": getattr(args, "nb_samples", None),
        "nb_samples_per_stream": getattr(args, "nb_samples_per_stream", None),
        "weighted_streams": getattr(args, "weighted_streams", None),
        "seed": getattr(args, "seed", None),
        "licenses": getattr(args, "licenses", None),
        "mediatype": getattr(args, "mediatype", None),
        "one_media_per_occurrence": False if all_media else None,
        "root": getattr(args, "root", None),
        "splits": _parse_splits(getattr(args, "splits", None)),
        "max_size": getattr(args, "max_size", None),
        "concurrency": getattr(args, "concurrency", None),
        "per_host": getattr(args, "per_host", None),
        "fail_threshold": getattr(args, "fail_threshold", None),
        "output": getattr(args, "output", None),
        "shard_size": getattr(args, "shard_size", None),
        "shard_bytes": getattr(args, "shard_bytes", None),
        "runner": getattr(args, "runner", None),
        "workers": getattr(args, "workers", None),
        "dask_address": getattr(args, "dask_address", None),
    }
    return base.merged(overrides)


def _require_source(config: RunConfig, command: str) -> None:
    if config.queries is None and config.dwca is None and config.urls is None:
        raise ConfigError(
            f"nothing to {command}: give a query file, or --query NAME=VALUE, --dwca KEY|DOI|PATH "
            "or --urls FILE (see `gbif-dl download --help`)"
        )


def _accepted(function: Callable[..., Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``function`` accepts (sources differ slightly in their options)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return dict(kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(kwargs)
    dropped = [k for k, v in kwargs.items() if k not in parameters and v is not None]
    if dropped:
        logger.debug("%s does not take %s; ignored", function.__qualname__, ", ".join(dropped))
    return {k: v for k, v in kwargs.items() if k in parameters}


def _records(config: RunConfig, *, dwca_dir: str | None = None) -> Iterable[Any]:
    """The record iterator of the configured source (nothing is requested before iteration)."""
    if config.urls is not None:
        from gbif_dl.sources.urls import read_urls

        return read_urls(config.urls, **_accepted(read_urls, {"label": config.label}))
    if config.dwca is not None:
        dwca: Any = importlib.import_module("gbif_dl.dwca")
        kwargs = {**config.generate_kwargs(), "dwca_root_path": dwca_dir, "api_url": config.api_url}
        records: Iterable[Any] = dwca.generate_urls(
            config.dwca, **_accepted(dwca.generate_urls, kwargs)
        )
        return records
    from gbif_dl import api

    assert config.queries is not None
    kwargs = {**config.generate_kwargs(), "api_url": config.api_url}
    return api.generate_urls(config.queries, **_accepted(api.generate_urls, kwargs))


# --- commands ---------------------------------------------------------------------------------


def _stat(stats: Any, name: str) -> int:
    value = stats.get(name, 0) if isinstance(stats, Mapping) else getattr(stats, name, 0)
    return int(value or 0)


def _download(records: Iterable[Any], config: RunConfig, *, quiet: bool) -> Any:
    from gbif_dl import io

    meter = Meter("records", unit="records", total=config.nb_samples if config.nb_samples else None)
    kwargs: dict[str, Any] = {**config.download_kwargs(), "progress": False if quiet else None}
    return io.download(_counted(records, meter), **_accepted(io.download, kwargs))


def _finish(stats: Any, config: RunConfig, root: str) -> int:
    ok, failed, skipped = (_stat(stats, k) for k in ("success", "failed", "skipped"))
    attempted = ok + failed
    share = failed / attempted if attempted else 0.0
    print(f"{ok} images downloaded, {failed} failed, {skipped} skipped -> {root}")
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


def _cmd_download(args: argparse.Namespace) -> int:
    config = _run_config(args)
    _require_source(config, "download")
    records = _records(config, dwca_dir=getattr(args, "dwca_dir", None))
    stats = _download(records, config, quiet=args.quiet)
    return _finish(stats, config, config.root)


@dataclass(frozen=True)
class _PlanRow:
    stream: str
    count: int
    quota: int


@dataclass
class _Plan:
    rows: list[_PlanRow]
    names: dict[str, int]
    api_requests: int


async def _compute_plan(config: RunConfig) -> _Plan:
    """Streams, their counts and quotas: what the search source does before reading pages."""
    from gbif_dl.gbif.client import GbifClient
    from gbif_dl.gbif.params import validate_query
    from gbif_dl.sampling.balance import StreamBalancer
    from gbif_dl.sampling.filters import normalize_mediatype
    from gbif_dl.sources import search

    assert config.queries is not None
    mediatype = normalize_mediatype(config.mediatype)
    query = validate_query({**dict(config.queries), "mediaType": mediatype})
    split = config.split_streams_by
    streams = search.plan_streams(query, split, config.subset_streams)
    StreamBalancer({0: 0}, config.nb_samples, cap=config.nb_samples_per_stream)  # checks args
    names: dict[str, int] = {}
    requests = 0
    async with GbifClient(config.api_url) as client:
        if query.get("scientificName"):
            if "taxonKey" in query:
                raise ConfigError(
                    "the query has both scientificName and taxonKey; give the taxa one way only"
                )
            names = await search.resolve_names(client, query["scientificName"])
            requests += len(names)
            query = {k: v for k, v in query.items() if k != "scientificName"}
            query["taxonKey"] = list(dict.fromkeys(str(names[n]) for n in names))
            fields = [split] if isinstance(split, str) else list(split or [])
            renamed = ["taxonKey" if f == "scientificName" else f for f in fields]
            streams = search.plan_streams(query, renamed or None, config.subset_streams)
        counts = await search.count_streams(client, streams)
        requests += len(streams)  # at most one count or facet request per stream
    balancer = StreamBalancer(
        counts,
        config.nb_samples,
        cap=config.nb_samples_per_stream,
        weighted=config.weighted_streams,
    )
    rows = [_PlanRow(s.name, counts[s.index], balancer.quotas[s.index]) for s in streams]
    return _Plan(rows=rows, names=names, api_requests=requests)


def _print_plan(plan: _Plan, config: RunConfig) -> None:
    from gbif_dl.report import _human_bytes, _table

    rows = plan.rows
    for name, key in plan.names.items():
        print(f"name {name!r} -> taxonKey {key}")
    total_count = sum(r.count for r in rows)
    total_quota = sum(r.quota for r in rows)
    print(f"Plan: {len(rows)} stream(s), {total_count:,} matching records, {total_quota:,} to take")
    table_rows: list[list[Any]] = [[r.stream, r.count, r.quota] for r in rows]
    table_rows.append(["TOTAL", total_count, total_quota])
    print("\n".join(_table(["stream", "records", "quota"], table_rows)))
    images = total_quota  # one image per occurrence (more with --all-media)
    pages = plan.api_requests + sum(math.ceil(r.quota / API_PAGE_SIZE) for r in rows if r.quota)
    image_bytes = ASSUMED_IMAGE_BYTES
    if config.max_size:
        image_bytes = min(image_bytes, int(config.max_size**2 * 0.25))
    seconds = images / ASSUMED_IMAGES_PER_S + pages * ASSUMED_API_PAGE_S
    more = "+" if not config.one_media_per_occurrence else ""
    print()
    print(
        f"Estimate: ~{pages:,} API requests, ~{images:,}{more} image requests, "
        f"~{_human_bytes(images * image_bytes)}{more}, ~{_duration(seconds)}"
    )
    print(
        f"  (assuming ~{_human_bytes(image_bytes)} per image and ~{ASSUMED_IMAGES_PER_S:.0f} "
        "images/s; real hosts vary a lot)"
    )
    print("Nothing was downloaded. Run the same arguments with `gbif-dl download` to fetch.")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _cmd_plan(args: argparse.Namespace) -> int:
    config = _run_config(args)
    _require_source(config, "plan")
    if config.source != "search":
        raise ConfigError(
            "`gbif-dl plan` plans occurrence searches (queries / --query); for --dwca use "
            "`gbif-dl dwca status KEY` to see its size"
        )
    from gbif_dl._aio import run_sync

    _print_plan(run_sync(_compute_plan(config)), config)
    return EXIT_OK


def _client(api_url: str | None) -> Any:
    from gbif_dl.gbif.client import GbifClient

    return GbifClient(api_url)


def _print_meta(meta: Mapping[str, Any]) -> None:
    from gbif_dl.report import _human_bytes

    fields = [
        ("key", meta.get("key")),
        ("status", meta.get("status")),
        ("doi", meta.get("doi")),
        ("records", meta.get("totalRecords")),
        ("datasets", meta.get("numberDatasets")),
        ("size", _human_bytes(int(meta["size"])) if meta.get("size") else None),
        ("format", (meta.get("request") or {}).get("format")),
        ("created", meta.get("created")),
        ("erase after", meta.get("eraseAfter")),
    ]
    width = max(len(k) for k, _ in fields)
    for name, value in fields:
        if value not in (None, ""):
            print(f"{name.ljust(width)}  {value}")


def _cmd_dwca_request(args: argparse.Namespace) -> int:
    import os

    from gbif_dl.gbif.client import PASSWORD_ENV, USER_ENV
    from gbif_dl.gbif.params import to_predicate

    config = _run_config(args)
    if config.queries is None:
        raise ConfigError(
            "a download request needs a query: a query file with 'queries', or --query NAME=VALUE"
        )
    if not os.environ.get(USER_ENV) or not os.environ.get(PASSWORD_ENV):
        raise ConfigError(
            f"GBIF downloads need an account: set the environment variables {USER_ENV} and "
            f"{PASSWORD_ENV} (never pass passwords as flags); register at https://www.gbif.org"
        )
    query = dict(config.queries)
    if config.mediatype:
        query.setdefault("mediaType", config.mediatype)
    predicate = to_predicate(query)

    async def run() -> tuple[str, dict[str, Any] | None]:
        async with _client(config.api_url) as client:
            key = await client.request_download(predicate, format=args.format)
            print(key, flush=True)
            if not args.wait:
                return key, None
            meta = await client.wait_for_download(
                key, poll_interval_s=args.poll_interval, timeout_s=args.timeout
            )
            return key, meta

    from gbif_dl._aio import run_sync

    key, meta = run_sync(run())
    if meta is None:
        logger.info(
            "GBIF is preparing download %s; check with `gbif-dl dwca status %s`, then "
            "`gbif-dl dwca fetch %s`",
            key,
            key,
            key,
        )
    else:
        _print_meta(meta)
    return EXIT_OK


def _cmd_dwca_status(args: argparse.Namespace) -> int:
    from gbif_dl._aio import run_sync

    async def run() -> dict[str, Any]:
        async with _client(args.api_url) as client:
            meta: dict[str, Any] = await client.download_metadata(args.identifier)
            return meta

    _print_meta(run_sync(run()))
    return EXIT_OK


def _cmd_dwca_fetch(args: argparse.Namespace) -> int:
    from gbif_dl._aio import run_sync
    from gbif_dl.errors import DownloadNotReadyError

    async def run() -> Path:
        async with _client(args.api_url) as client:
            meta = await client.download_metadata(args.identifier)
            key = str(meta.get("key") or args.identifier)
            status = str(meta.get("status", "")).upper()
            if status != "SUCCEEDED":
                if not args.wait or status in ("KILLED", "CANCELLED", "FAILED", "FILE_ERASED"):
                    err = DownloadNotReadyError(
                        f"download {key} is {status or 'of unknown status'}, not SUCCEEDED; "
                        + (
                            "request it again"
                            if status in ("KILLED", "CANCELLED", "FAILED", "FILE_ERASED")
                            else "wait for it with --wait, or run this command again later"
                        )
                    )
                    err.status_name = status
                    raise err
                logger.info("download %s is %s; waiting", key, status)
                meta = await client.wait_for_download(
                    key, poll_interval_s=args.poll_interval, timeout_s=args.timeout
                )
            out = Path(args.output)
            dest = out if out.suffix.lower() == ".zip" else out / f"{key}.zip"
            size = int(meta["size"]) if meta.get("size") else None
            with Meter(f"archive {key}", total=size, unit="B", scale_bytes=True) as meter:
                return await client.fetch_download(
                    key, dest, expected_size=size, progress=meter.set_done
                )

    path = run_sync(run())
    print(path)
    logger.info("next: gbif-dl download --dwca %s --label speciesKey -o data", path)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from gbif_dl import report

    if args.thumbnails < 0:
        raise ConfigError("--thumbnails must be 0 or more")
    summary = report.summarize(args.root, thumbnails=0 if args.no_html else args.thumbnails)
    print(report.format_text(summary))
    if not args.no_html:
        path = report.write_html(summary, args.html)
        print(f"\nHTML report: {path}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from gbif_dl import demo, report

    result = demo.run_demo(
        args.root,
        size=args.size,
        nb_samples=args.nb_samples,
        n_hosts=args.hosts,
        seed=args.seed,
        progress=False if args.quiet else None,
    )
    print(report.format_text(result.summary))
    print()
    print(f"Dataset: {result.root}")
    print(f"HTML report: {result.report_path}")
    print(f"Done in {result.seconds:.1f} s. Open the report in a browser, or train on the folders.")
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
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


def _stop_on_sigterm() -> Any:
    """Make SIGTERM stop the simulator cleanly, like Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


# --- entry point ------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gbif-dl`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Example:
        >>> main(["report", "/nonexistent"])  # one line on stderr, exit code 1
        1
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    verbosity = -1 if args.quiet else args.verbose
    restore_logging = configure_logging(verbosity, debug=args.debug)
    try:
        return _run(parser, args)
    finally:
        restore_logging()


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        logger.warning("interrupted; finished files are kept, run the same command again to resume")
        return EXIT_INTERRUPTED
    except (ConfigError, MissingExtraError) as exc:
        _report_error(exc, args.debug)
        return EXIT_USAGE
    except GbifDlError as exc:
        _report_error(exc, args.debug)
        return EXIT_FAILURES
    except (OSError, asyncio.TimeoutError) as exc:
        _report_error(exc, args.debug, prefix=f"{type(exc).__name__}: ")
        return EXIT_FAILURES
    except Exception as exc:  # a bug: one line, and how to get the details
        _report_error(
            exc,
            args.debug,
            prefix="internal error: ",
            suffix="" if args.debug else " (run again with --debug for the traceback)",
        )
        return EXIT_FAILURES


def _report_error(exc: BaseException, debug: bool, *, prefix: str = "", suffix: str = "") -> None:
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"gbif-dl: error: {prefix}{_one_line(exc)}{suffix}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``gbif-dl`` argument parser: one sub-command per task, each with an example.

Example:
    >>> build_parser().parse_args(["report", "data"]).command
    'report'
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gbif_dl._version import __version__
from gbif_dl.cli.commands import cmd_demo, cmd_download, cmd_plan, cmd_report, cmd_simulate
from gbif_dl.cli.dwca_commands import cmd_dwca_fetch, cmd_dwca_request, cmd_dwca_status
from gbif_dl.cli.exits import EXIT_USAGE
from gbif_dl.config import OUTPUT_LAYOUTS, RUNNER_NAMES

__all__ = ["build_parser"]


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
  gbif-dl download examples/query.toml --runner dask --workers 8 --per-host 4 -o data
  gbif-dl download examples/query.toml --runner dask --scheduler tcp://10.0.0.5:8786 \\
      -o /shared/data
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
  gbif-dl demo                          # into the user's data folder (printed)
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
    group.add_argument(
        "--api-url",
        help="GBIF API base URL (default: $GBIF_API_URL, else https://api.gbif.org/v1)",
    )


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
    group.add_argument(
        "--mediatype",
        help="media type: StillImage (default), MovingImage, Sound; --query mediaType=... too",
    )
    group.add_argument(
        "--all-media",
        action="store_true",
        default=None,
        help="all media of an occurrence, not only the first",
    )
    group.add_argument(
        "--spares",
        type=float,
        metavar="FRACTION",
        help="with a quota, spare records per stream as a share of its quota (default 0.25, "
        "at least 2; 0: none): fetched only to replace failed images, so streams end exact",
    )


def _processes(text: str) -> int | str:
    """``--processes``: a positive number or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', got {text!r}")
    return value


def _add_content(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("duplicates (one photo stored once, in one split)")
    group.add_argument(
        "--content-hashes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store each photo once and in one split: the same bytes under another URL is a "
        "duplicate, a resized or re-encoded copy goes to its original's split, and one image "
        "behind many occurrences (a placeholder) is excluded (default: on with --splits)",
    )
    group.add_argument(
        "--near-duplicate-distance",
        type=int,
        metavar="BITS",
        help="with --content-hashes: dHash bits (of 64) within which two images are one photo "
        "(default 6)",
    )
    group.add_argument(
        "--drop-near-duplicates",
        action="store_true",
        default=None,
        help="with --content-hashes: do not store resized or re-encoded copies at all",
    )
    group.add_argument(
        "--placeholder-occurrences",
        type=int,
        metavar="N",
        help="with --content-hashes: an image behind N occurrences is a placeholder (default "
        "3; 0 keeps placeholders)",
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
        "--allow-private",
        action="store_true",
        default=None,
        help="let media URLs reach private, loopback and link-local addresses (a local mirror; "
        "refused by default, also allowed by GBIF_DL_ALLOW_PRIVATE=1)",
    )
    group.add_argument(
        "--no-renditions",
        dest="renditions",
        action="store_false",
        default=None,
        help="with --max-size, always fetch the record's own URL (by default known hosts, "
        "iNaturalist and Flickr, are asked for a smaller size first)",
    )
    group.add_argument(
        "--fail-threshold",
        type=float,
        metavar="FRACTION",
        help="exit with 1 when more than this share of images failed (default 0.1)",
    )
    group.add_argument(
        "--retry-failed",
        action="store_true",
        default=None,
        help="request again the images that failed for good in an earlier run into --root "
        "(404, not an image, ...); by default a rerun retries only transient failures",
    )
    group.add_argument(
        "--short-streams",
        choices=("trim", "keep"),
        help="when a stream runs dry below its quota: trim the other streams to it or keep "
        "them (default: trim for --nb-samples -1, else keep)",
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
    _add_storage_option(group)
    group.add_argument(
        "--work-dir",
        metavar="DIR",
        help="object-store --root: local folder for the run's state (default: one per root "
        "under ~/.cache/gbif-dl/stores)",
    )
    _add_runner(parser)


def _add_runner(parser: argparse.ArgumentParser) -> None:
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
        help="local: processes; dask: workers of the local cluster started for the run (when "
        "no --scheduler is given)",
    )
    group.add_argument(
        "--processes",
        type=_processes,
        metavar="N|auto",
        help="without --runner: processes fetching on this machine (default auto: one per "
        "CPU for 5,000 records or more, in shards; 1: one streaming process)",
    )
    group.add_argument(
        "--scheduler",
        "--dask-address",
        dest="dask_address",
        metavar="tcp://HOST:PORT",
        help="scheduler of a running Dask cluster (with --runner dask), e.g. the address a "
        "dask-jobqueue SLURMCluster or `dask scheduler` prints",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``gbif-dl`` argument parser, with one sub-command per task.

    Example:
        >>> build_parser().parse_args(["plan", "q.toml"]).command
        'plan'
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
    _add_dataset_commands(commands)
    _add_dwca_commands(commands)
    _add_tool_commands(commands)
    return parser


def _sub(parent: Any, name: str, help_text: str, key: str | None = None) -> argparse.ArgumentParser:
    """A sub-command with its description, its example epilog and the common flags."""
    p: argparse.ArgumentParser = parent.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=_EXAMPLES.get(key or name, ""),
        formatter_class=_Formatter,
    )
    _add_common(p, sub=True)
    return p


def _add_dataset_commands(commands: Any) -> None:
    """``download`` and ``plan``."""
    p = _sub(
        commands, "download", "download a dataset from a query file, flags, a DwC-A or a URL list"
    )
    _add_source(p)
    p.add_argument("--dwca", metavar="KEY|DOI|PATH", help="records from a GBIF download / zip")
    p.add_argument("--dwca-dir", help="where a fetched archive is kept (default: a cache folder)")
    p.add_argument("--urls", metavar="FILE", help="records from a file of URLs (txt or csv)")
    _add_sampling(p)
    _add_download(p)
    _add_content(p)
    p.set_defaults(handler=cmd_download)

    p = _sub(commands, "plan", "dry run: streams, counts, quotas and estimates; downloads nothing")
    _add_source(p)
    _add_sampling(p)
    p.add_argument(
        "-o",
        "--root",
        help="a dataset folder (default: data) whose manifest's failures estimate the spares",
    )
    p.set_defaults(handler=cmd_plan)


def _add_waiting(q: argparse.ArgumentParser) -> None:
    q.add_argument(
        "--poll-interval",
        type=float,
        default=15.0,
        help="seconds between polls (default: %(default)s)",
    )
    q.add_argument("--timeout", type=float, help="give up waiting after this many seconds")


def _add_dwca_commands(commands: Any) -> None:
    """``dwca request``, ``dwca status`` and ``dwca fetch``."""
    p = _sub(
        commands, "dwca", "GBIF occurrence downloads (Darwin Core Archives): request, status, fetch"
    )
    p.set_defaults(handler=lambda args, dwca_parser=p: _usage(dwca_parser))
    actions = p.add_subparsers(dest="dwca_command", metavar="ACTION", parser_class=_Parser)
    q = _sub(
        actions,
        "request",
        "ask GBIF to prepare a DwC-A download (needs GBIF_USER, GBIF_PWD)",
        "dwca request",
    )
    _add_source(q)
    q.add_argument("--format", default="DWCA", help="GBIF download format (default: %(default)s)")
    q.add_argument("--wait", action="store_true", help="wait until GBIF has prepared it")
    _add_waiting(q)
    q.set_defaults(handler=cmd_dwca_request)
    q = _sub(actions, "status", "show a download's status, size and DOI", "dwca status")
    q.add_argument("identifier", metavar="KEY|DOI")
    q.add_argument("--api-url", help="GBIF API base URL")
    q.set_defaults(handler=cmd_dwca_status)
    q = _sub(
        actions,
        "fetch",
        "fetch a prepared download's zip file (resumes a partial file)",
        "dwca fetch",
    )
    q.add_argument("identifier", metavar="KEY|DOI")
    q.add_argument(
        "-o",
        "--output",
        default=".",
        help="folder (or .zip file name) to save to (default: %(default)s)",
    )
    q.add_argument("--wait", action="store_true", help="wait while GBIF still prepares it")
    _add_waiting(q)
    q.add_argument("--api-url", help="GBIF API base URL")
    q.set_defaults(handler=cmd_dwca_fetch)


def _add_storage_option(group: Any) -> None:
    group.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        help="object-store --root (s3://bucket/ds): an fsspec storage option, repeatable, e.g. "
        "key=..., secret=..., client_kwargs.endpoint_url=http://localhost:9000",
    )


def _add_tool_commands(commands: Any) -> None:
    """``report``, ``demo`` and ``simulate``."""
    p = _sub(
        commands, "report", "summarise a downloaded dataset in the terminal and as one HTML page"
    )
    p.add_argument("root", metavar="ROOT", help="the dataset folder (holds manifest.parquet)")
    p.add_argument(
        "--html", metavar="FILE", help="where to write the page (default ROOT/report.html)"
    )
    p.add_argument("--no-html", action="store_true", help="terminal report only")
    _add_storage_option(p)
    p.add_argument(
        "--thumbnails",
        type=int,
        default=48,
        help="sample images in the page (default: %(default)s)",
    )
    p.set_defaults(handler=cmd_report)

    p = _sub(commands, "demo", "the whole pipeline offline against the built-in simulator")
    p.add_argument(
        "--root",
        help="output folder (default: gbif-dl/demo in the user's data folder, such as "
        "~/.local/share/gbif-dl/demo; the demo prints it)",
    )
    p.add_argument(
        "--nb-samples", type=int, default=400, help="images to download (default: %(default)s)"
    )
    _world_arguments(p, size=3000, hosts=3, seed_help="seed of the simulated world and sampling")
    p.set_defaults(handler=cmd_demo)

    p = _sub(commands, "simulate", "serve a simulated GBIF API and image hosts on this machine")
    p.add_argument("--port", type=int, required=True, help="port of the simulated API")
    _world_arguments(p, size=10_000, hosts=2, seed_help="seed of the simulated world")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.set_defaults(handler=cmd_simulate)


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

"""The entry point: parse, configure logging, run the command, map what happened to an exit code.

Errors print as one line with the fix (in the command's words, see
:func:`gbif_dl.cli.messages.cli_message`); ``--debug`` adds the traceback. A reader that goes
away (``gbif-dl plan | head``) ends the command quietly.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    gbif-dl ...
    0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Sequence

from gbif_dl.cli.exits import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from gbif_dl.cli.logs import configure_logging, logger
from gbif_dl.cli.messages import cli_message
from gbif_dl.cli.parser import build_parser
from gbif_dl.errors import ConfigError, GbifDlError, MissingExtraError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gbif-dl`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Example:
        >>> main(["report", "/nonexistent"])  # one line on stderr: a usage error
        2
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
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
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


def _silence_stdout() -> None:
    """The reader of stdout is gone: send what is left (and the final flush) to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured output)
        pass


def _one_line(exc: BaseException) -> str:
    from gbif_dl.report.text import printable  # a message may quote a server: no raw escapes

    return printable(cli_message(" ".join(str(exc).split()) or type(exc).__name__))


def _report_error(exc: BaseException, debug: bool, *, prefix: str = "", suffix: str = "") -> None:
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"gbif-dl: error: {prefix}{_one_line(exc)}{suffix}", file=sys.stderr)

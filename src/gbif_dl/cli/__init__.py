"""The ``gbif-dl`` command: argument parsing, logging, progress and exit codes; nothing else.

Every command delegates to the library (:mod:`gbif_dl.api`, :mod:`gbif_dl.dwca`,
:mod:`gbif_dl.io`, :mod:`gbif_dl.estimate`, :mod:`gbif_dl.report`, :mod:`gbif_dl.demo`).

::

    parser.py         the argument parser (one sub-command per task, each with an example)
    settings.py       query file + flags -> RunConfig, sampling options, the source's records
    commands.py       download, plan, report, demo, simulate
    dwca_commands.py  dwca request, status, fetch
    messages.py       library messages in the command's words
    logs.py           one stderr handler, one line per message
    exits.py          the exit codes
    main.py           main(): parse, log, run, map errors to exit codes

Exit codes:

* ``0`` success (also when the reader of the output went away, as in ``gbif-dl plan | head``);
* ``1`` more images failed than ``--fail-threshold`` allows, or GBIF / the network / the disk
  failed (the message says which);
* ``2`` usage or configuration error (bad flag, unknown key in a query file, missing
  credentials, a folder that does not exist), detected before any download;
* ``130`` interrupted with Ctrl-C; finished images are kept and the next run resumes.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    gbif-dl ...
    0
"""

from __future__ import annotations

from gbif_dl.cli.exits import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from gbif_dl.cli.logs import configure_logging
from gbif_dl.cli.main import main
from gbif_dl.cli.parser import build_parser

__all__ = [
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "configure_logging",
    "main",
]

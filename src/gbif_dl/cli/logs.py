"""The command's logging: one stderr handler on the ``gbif_dl`` logger, one line per message.

Example:
    >>> restore = configure_logging(1)
    >>> logging.getLogger("gbif_dl").level == logging.INFO
    True
    >>> restore()
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["configure_logging", "logger"]

#: The command's own logger (its lines carry no ``[module]`` prefix).
logger = logging.getLogger("gbif_dl.cli")

#: Loggers whose INFO lines are the command's own: no ``[module]`` prefix.
_OWN_LOGGERS = ("gbif_dl.cli", "gbif_dl.progress")
_HANDLER_TAG = "_gbif_dl_cli_handler"


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
        if record.name not in _OWN_LOGGERS and record.levelno < logging.WARNING:
            text = f"[{record.name.removeprefix('gbif_dl.')}] {text}"
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        return f"gbif-dl: {text}"


def _levels(verbosity: int, debug: bool) -> tuple[int, int]:
    """(level of the library, level of the command's own lines)."""
    if debug or verbosity >= 2:
        return logging.DEBUG, logging.DEBUG
    if verbosity == 1:
        return logging.INFO, logging.INFO
    if verbosity == 0:
        return logging.WARNING, logging.INFO
    return logging.WARNING, logging.WARNING


def configure_logging(verbosity: int = 0, *, debug: bool = False) -> Callable[[], None]:
    """Install the command's one stderr handler on the ``gbif_dl`` logger.

    ``verbosity`` -1 (``-q``): warnings only; 0: the command's own progress lines; 1 (``-v``):
    the library's INFO lines too; 2 (``-vv``) or ``debug``: everything. Returns a function that
    restores the previous logging state (so ``main()`` can run inside a larger program).

    Example:
        >>> restore = configure_logging(-1)
        >>> logging.getLogger("gbif_dl.cli").level == logging.WARNING
        True
        >>> restore()
    """
    package = logging.getLogger("gbif_dl")
    progress = logging.getLogger("gbif_dl.progress")  # the periodic progress lines
    saved = (package.level, package.propagate, logger.level, list(package.handlers), progress.level)
    for handler in list(package.handlers):
        if getattr(handler, _HANDLER_TAG, False):
            package.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _HANDLER_TAG, True)
    handler.setFormatter(_CliFormatter())
    package.addHandler(handler)
    package.propagate = False
    library_level, own_level = _levels(verbosity, debug)
    package.setLevel(library_level)
    logger.setLevel(own_level)
    progress.setLevel(own_level)

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

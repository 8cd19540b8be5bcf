"""The exit codes of the ``gbif-dl`` command (as the README states them).

Example:
    >>> EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED
    (0, 1, 2, 130)
"""

from __future__ import annotations

__all__ = ["EXIT_FAILURES", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE"]

#: Success (also when the reader of the output went away, as in ``gbif-dl plan | head``).
EXIT_OK = 0
#: More images failed than ``--fail-threshold`` allows, or GBIF, the network or the disk failed.
EXIT_FAILURES = 1
#: Usage or configuration error, detected before any download.
EXIT_USAGE = 2
#: Interrupted with Ctrl-C; finished images are kept and the next run resumes.
EXIT_INTERRUPTED = 130

"""The run's journal, written in batches: when enough rows wait, or shortly after the first.

A killed run loses at most the waiting rows, whose files a rerun adopts without a request. An
error while writing is kept and raised at the end of the run (:meth:`BatchedJournal.close`),
except when the disk is full, which the run reports itself.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> journal = BatchedJournal(root, ".journal.jsonl", on_error=lambda exc: None)
    >>> journal.append({"url": "http://h/a.jpg", "status": "success"})
    >>> journal.close()
    >>> len((root / ".journal.jsonl").read_text().splitlines())
    1
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gbif_dl.errors import OutputError
from gbif_dl.manifest import Journal

__all__ = ["JOURNAL_BATCH", "JOURNAL_FLUSH_S", "BatchedJournal"]

#: Rows written at once at most, and how long the first waiting row waits.
JOURNAL_BATCH = 256
JOURNAL_FLUSH_S = 0.1


class BatchedJournal:
    """Append rows to ``root/name`` in batches (see the module docstring).

    Args:
        root, name: the journal file.
        on_error: called with an :class:`OSError` of a write before it is turned into an
            :class:`~gbif_dl.errors.OutputError`; returns True when the run handles it (a full
            disk), so no OutputError is raised or kept for it.
        on_late_error: called (no arguments) when a timed flush failed: the run should stop.
    """

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        on_error: Callable[[OSError], bool | None],
        on_late_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.root = root
        self.journal = Journal(root, name)
        self.on_error = on_error
        self.on_late_error = on_late_error
        self.timer: asyncio.TimerHandle | None = None
        self.error: OutputError | None = None

    def append(self, row: dict[str, Any]) -> None:
        """Queue one row (its file is in place already); flush when the batch is full."""
        self.journal.append(row, flush=False)
        if self.journal.buffered >= JOURNAL_BATCH:
            self.flush()
        elif self.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                self.timer = loop.call_later(JOURNAL_FLUSH_S, self._flush_later)

    def flush(self) -> None:
        """Write the waiting rows; OutputError when that fails (and the run does not handle it)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        try:
            self.journal.flush()
        except OSError as exc:
            if not self.on_error(exc):
                raise OutputError(
                    f"cannot append to the journal in {str(self.root)!r}: {exc}; "
                    "check the output folder"
                ) from exc

    def _flush_later(self) -> None:
        self.timer = None
        try:
            self.flush()
        except OutputError as exc:  # a timer callback: stop the run, raise at its end
            self.error = self.error or exc
            self.on_late_error()

    def close(self) -> None:
        """Write the waiting rows and close; a failure is kept in :attr:`error`."""
        try:
            self.flush()
        except OutputError as exc:
            self.error = self.error or exc
        finally:
            with contextlib.suppress(OSError):
                self.journal.close()

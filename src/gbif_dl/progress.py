"""Download progress: a tqdm bar on a terminal, periodic INFO log lines otherwise.

The library never prints: without a terminal (a job log, a notebook capturing stderr, CI) the
same numbers go to ``logging`` every few seconds.

Example:
    >>> progress = Progress(total=2, mode=False)
    >>> progress.update("success", nbytes=100)
    >>> progress.update("failed")
    >>> progress.counts["success"], progress.counts["failed"], progress.bytes
    (1, 1, 100)
    >>> progress.close()
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["Progress", "format_bytes"]

logger = logging.getLogger(__name__)


def format_bytes(n: float) -> str:
    """Human-readable byte count.

    Example:
        >>> format_bytes(1536), format_bytes(12)
        ('1.5 KiB', '12 B')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


class Progress:
    """Count finished items and show them.

    Args:
        total: number of items, when known.
        mode: ``None`` = a bar when stderr is a terminal, log lines otherwise; ``True`` = a bar;
            ``False`` = no bar, log lines only at DEBUG level.
        log_every_s: seconds between log lines when there is no bar.
        desc: the bar's label.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        mode: bool | None = None,
        log_every_s: float = 10.0,
        desc: str = "gbif-dl",
    ) -> None:
        self.total = total
        self.counts = {"success": 0, "failed": 0, "skipped": 0}
        self.bytes = 0
        self.started = time.monotonic()
        self.log_every_s = log_every_s
        self._last_log = self.started
        self._last_postfix = 0.0
        self._log_level = logging.DEBUG if mode is False else logging.INFO
        use_bar = mode if mode is not None else _stderr_is_terminal()
        self._bar: Any = None
        if use_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=" img", smoothing=0.05, leave=True)

    @property
    def done(self) -> int:
        """Items finished so far (any status)."""
        return sum(self.counts.values())

    def update(self, status: str, nbytes: int = 0) -> None:
        """Count one finished item (``status`` is success, failed or skipped)."""
        self.counts[status] = self.counts.get(status, 0) + 1
        self.bytes += nbytes
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(1)
            if now - self._last_postfix >= 0.5:
                self._last_postfix = now
                self._bar.set_postfix_str(self._summary(), refresh=False)
        elif now - self._last_log >= self.log_every_s:
            self._last_log = now
            self._log()

    def _summary(self) -> str:
        c = self.counts
        return (
            f"ok={c['success']} failed={c['failed']} skipped={c['skipped']} "
            f"{format_bytes(self.bytes)}"
        )

    def _log(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        of_total = f"/{self.total}" if self.total is not None else ""
        logger.log(
            self._log_level,
            "%d%s items (%.1f/s): %s",
            self.done,
            of_total,
            self.done / elapsed,
            self._summary(),
        )

    def close(self) -> None:
        """Close the bar (or log a last line)."""
        if self._bar is not None:
            self._bar.set_postfix_str(self._summary(), refresh=True)
            self._bar.close()
            self._bar = None
        else:
            self._log()


def _stderr_is_terminal() -> bool:
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False

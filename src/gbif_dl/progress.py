"""Progress displays: a tqdm bar on a terminal, periodic INFO log lines otherwise.

The library never prints: without a terminal (a job log, a notebook capturing stderr, CI) the
same numbers go to ``logging`` every few seconds. Two displays share one ticker:

* :class:`Progress` counts finished downloads by status (what :func:`gbif_dl.io.download` shows);
* :class:`Meter` counts the units of one long step (records read, bytes of an archive fetched).

Both show the total, the rate and the time left whenever the total is known. A caller that knows
how many items a run will take, but hands them over as a generator, announces the number with
:func:`expected_total`.

Example:
    >>> progress = Progress(total=2, mode=False)
    >>> progress.update("success", nbytes=100)
    >>> progress.update("failed")
    >>> progress.counts["success"], progress.counts["failed"], progress.bytes
    (1, 1, 100)
    >>> progress.close()
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "Meter",
    "Progress",
    "counted",
    "expected_total",
    "format_bytes",
    "format_duration",
    "stderr_is_terminal",
]

logger = logging.getLogger(__name__)

_EXPECTED_TOTAL: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "gbif_dl_expected_total", default=None
)


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


def format_duration(seconds: float) -> str:
    """A rough, human-readable duration.

    Example:
        >>> format_duration(42), format_duration(600), format_duration(9000)
        ('42 s', '10 min', '2.5 h')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stderr_is_terminal() -> bool:
    """True when ``sys.stderr`` is an interactive terminal (where bars make sense).

    Example:
        >>> isinstance(stderr_is_terminal(), bool)
        True
    """
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def expected_total(total: int | None) -> Iterator[None]:
    """Announce how many items the displays created inside the block will count.

    For a run fed by a generator the downloader cannot know the total; the caller that does
    (the command line knows ``nb_samples``) says it here, so bars and log lines show a total,
    a percentage and the time left. Negative or zero totals are ignored.

    Example:
        >>> with expected_total(5):
        ...     Progress(mode=False).total
        5
    """
    token = _EXPECTED_TOTAL.set(total if total is not None and total > 0 else None)
    try:
        yield
    finally:
        _EXPECTED_TOTAL.reset(token)


class _Ticker:
    """What both displays share: the bar or the timed log lines, the rate and the time left."""

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str,
        use_bar: bool,
        log_every_s: float,
        scale_bytes: bool = False,
    ) -> None:
        self.total = total if total is not None and total > 0 else None
        self.desc = desc
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self.log_every_s = log_every_s
        self.scale_bytes = scale_bytes
        self._last_log = self.started
        self.bar: Any = None
        if use_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                desc=desc,
                unit=unit,
                unit_scale=scale_bytes,
                unit_divisor=1024 if scale_bytes else 1000,
                smoothing=0.05,
                file=sys.stderr,
                leave=True,
            )

    def set_total(self, total: int | None) -> None:
        self.total = total if total is not None and total > 0 else None
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def advance(self, n: int) -> bool:
        """Count ``n``; True when a log line is due (no bar, and the interval has passed)."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return False
        now = time.monotonic()
        if now - self._last_log >= self.log_every_s:
            self._last_log = now
            return True
        return False

    def amount(self, n: float) -> str:
        return format_bytes(n) if self.scale_bytes else f"{int(n):,}"

    def position(self, joiner: str = " of ", unit: str | None = None) -> str:
        """``"120 of 400 img (12.0/s, 30%, 23 s left)"``; without a total no share or time left."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        name = self.unit if unit is None else unit
        unit_text = "" if self.scale_bytes else f" {name}"
        rate_text = f"{format_bytes(rate)}/s" if self.scale_bytes else f"{rate:.1f}/s"
        if not self.total:
            return f"{self.amount(self.done)}{unit_text} ({rate_text})"
        share = 100.0 * self.done / self.total
        left = max(self.total - self.done, 0)
        eta = f", {format_duration(left / rate)} left" if rate > 0 and left else ""
        return (
            f"{self.amount(self.done)}{joiner}{self.amount(self.total)}{unit_text} "
            f"({rate_text}, {share:.0f}%{eta})"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Progress:
    """Count finished downloads by status and show them.

    Args:
        total: number of items, when known (else the one announced with :func:`expected_total`).
        mode: ``None`` = a bar when stderr is a terminal, log lines otherwise; ``True`` = a bar;
            ``False`` = no bar, log lines only at DEBUG level.
        log_every_s: seconds between log lines when there is no bar.
        desc: the bar's label.

    Example:
        >>> Progress(total=3, mode=False).total
        3
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        mode: bool | None = None,
        log_every_s: float = 10.0,
        desc: str = "gbif-dl",
    ) -> None:
        total = total if total is not None else _EXPECTED_TOTAL.get()
        self.counts = {"success": 0, "failed": 0, "skipped": 0}
        self.bytes = 0
        self._last_postfix = 0.0
        self._log_level = logging.DEBUG if mode is False else logging.INFO
        use_bar = mode if mode is not None else stderr_is_terminal()
        self._ticker = _Ticker(
            total, desc=desc, unit="img", use_bar=bool(use_bar), log_every_s=log_every_s
        )

    @property
    def total(self) -> int | None:
        """The expected number of items, if known."""
        return self._ticker.total

    @property
    def started(self) -> float:
        """``time.monotonic()`` when counting started."""
        return self._ticker.started

    @property
    def done(self) -> int:
        """Items finished so far (any status)."""
        return sum(self.counts.values())

    def update(self, status: str, nbytes: int = 0) -> None:
        """Count one finished item (``status`` is success, failed or skipped)."""
        self.counts[status] = self.counts.get(status, 0) + 1
        self.bytes += nbytes
        ticker = self._ticker
        if ticker.advance(1):
            self._log()
        elif ticker.bar is not None:
            now = time.monotonic()
            if now - self._last_postfix >= 0.5:
                self._last_postfix = now
                ticker.bar.set_postfix_str(self._summary(), refresh=False)

    def _summary(self) -> str:
        c = self.counts
        return (
            f"ok={c['success']} failed={c['failed']} skipped={c['skipped']} "
            f"{format_bytes(self.bytes)}"
        )

    def _log(self) -> None:
        logger.log(self._log_level, "%s: %s", self._ticker.position("/", "items"), self._summary())

    def close(self) -> None:
        """Close the bar (or log a last line)."""
        bar = self._ticker.bar
        if bar is not None:
            bar.set_postfix_str(self._summary(), refresh=True)
            self._ticker.close()
        else:
            self._log()


class Meter:
    """Progress of one long step: a tqdm bar on a terminal, a log line every few seconds otherwise.

    Args:
        desc: what is counted, the start of each line (``"records"``, ``"archive KEY"``).
        total: the expected count, when known (zero or negative: unknown).
        unit: the unit's name.
        bar: ``None`` = a bar on a terminal when INFO lines are shown; ``True``/``False`` force.
        log_every_s: seconds between log lines when there is no bar.
        scale_bytes: the units are bytes (shown as KiB, MiB...).

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
        use_bar = stderr_is_terminal() and logger.isEnabledFor(logging.INFO) if bar is None else bar
        self._ticker = _Ticker(
            total,
            desc=desc,
            unit=unit,
            use_bar=use_bar,
            log_every_s=log_every_s,
            scale_bytes=scale_bytes,
        )

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def done(self) -> int:
        """Units counted so far."""
        return self._ticker.done

    @property
    def total(self) -> int | None:
        """The expected count, if known."""
        return self._ticker.total

    def set_total(self, total: int | None) -> None:
        """Set (or correct) the expected total."""
        self._ticker.set_total(total)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units."""
        if self._ticker.advance(n):
            self._log()

    def set_done(self, done: int, total: int | None = None) -> None:
        """Set the absolute count (for callbacks that report totals, like byte transfers)."""
        if total is not None and total != self.total:
            self.set_total(total)
        self.update(done - self.done)

    def _log(self) -> None:
        logger.info("%s: %s", self._ticker.desc, self._ticker.position())

    def close(self) -> None:
        """Finish the bar, or log the last line."""
        if self._ticker.bar is not None:
            self._ticker.close()
        elif self.done:
            self._log()


def counted(items: Iterable[Any], meter: Meter) -> Iterator[Any]:
    """Pass items through, counting them on ``meter`` (closed, with ``items``, at the end);
    spare items (``spare: True``, :mod:`gbif_dl.sampling.spares`) pass uncounted: the meter
    counts the sample.

    Example:
        >>> list(counted([1, 2], Meter("records", bar=False)))
        [1, 2]
    """
    try:
        for item in items:
            if not (isinstance(item, dict) and item.get("spare")):
                meter.update()
            yield item
    finally:
        meter.close()
        close = getattr(items, "close", None)
        if close is not None:
            close()

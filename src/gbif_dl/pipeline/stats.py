"""What a run did: :class:`Counters` while it runs, :class:`DownloadStats` once it is over.

One stats type for every path: a streaming run, one shard, and a sharded job (the shards'
stats combined with :meth:`DownloadStats.combine` or ``+``). Stats are built from counters in
one place (:meth:`Counters.stats`), and the ``fail_threshold`` rule is written once
(:meth:`Counters.over_threshold`).

Example:
    >>> counters = Counters()
    >>> counters.count("success", nbytes=10); counters.count("failed", reason="timeout")
    >>> one = counters.stats()
    >>> (one + DownloadStats(skipped=3)).skipped, (one + one).reasons
    (3, {'timeout': 2})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gbif_dl.errors import ConfigError

__all__ = ["MIN_ITEMS_FOR_THRESHOLD", "Counters", "DownloadStats", "check_fail_threshold"]

#: ``fail_threshold`` is judged only once this many items were fetched.
MIN_ITEMS_FOR_THRESHOLD = 50


def check_fail_threshold(value: float | None) -> float | None:
    """``value`` if it is a valid ``fail_threshold`` (None, or a share between 0 and 1).

    Example:
        >>> check_fail_threshold(0.1), check_fail_threshold(None)
        (0.1, None)
        >>> check_fail_threshold(2)
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: fail_threshold is the largest tolerated share of failures, \
between 0 and 1; got 2
    """
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0
    ):
        raise ConfigError(
            f"fail_threshold is the largest tolerated share of failures, between 0 and 1; "
            f"got {value!r}"
        )
    return value


@dataclasses.dataclass(frozen=True)
class DownloadStats(Mapping[str, Any]):
    """What a :func:`~gbif_dl.io.download` run did; also a read-only mapping (``stats["success"]``).

    Attributes:
        success: images fetched and stored by this run.
        failed: items that failed in this run (see ``reasons``), including ``not_retried``.
        not_retried: items that failed for good in an earlier run (a 404, an HTML page, ...)
            and were not requested again (``retry_failed=True`` requests them).
        skipped: items already done before this run (no request made).
        reasons: failure counts by :class:`~gbif_dl.fetch.result.Reason` value.
        bytes: bytes of the images stored by this run.
        elapsed_s: wall time of the run.
        manifest: path of ``manifest.parquet``.
        root: the output root.
        aborted: True when the run stopped early (``fail_threshold``).
        not_retried: failures of an earlier run not requested again (part of ``failed``).
        streams: for items that carry a quota (``nb_samples`` sampling, see
            :mod:`gbif_dl.sampling.spares`), per stream: ``requested``, ``delivered``,
            ``spares_used``, ``failed``, ``ran_dry``, ``trimmed``; empty otherwise.

    Example:
        >>> stats = DownloadStats(success=2, failed=1, skipped=0, reasons={"timeout": 1})
        >>> stats["success"], dict(stats)["reasons"]
        (2, {'timeout': 1})
    """

    success: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes: int = 0
    elapsed_s: float = 0.0
    manifest: str = ""
    root: str = ""
    aborted: bool = False
    not_retried: int = 0
    streams: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key in STAT_KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(STAT_KEYS)

    def __len__(self) -> int:
        return len(STAT_KEYS)

    def __add__(self, other: DownloadStats) -> DownloadStats:
        if not isinstance(other, DownloadStats):
            return NotImplemented
        return DownloadStats.combine([self, other])

    @staticmethod
    def combine(parts: Iterable[DownloadStats], **fields: Any) -> DownloadStats:
        """The sum of ``parts`` (counts, reasons and bytes added, ``aborted`` if any part was);
        ``fields`` set the others (``elapsed_s``, ``manifest``, ``root``, ...).

        Example:
            >>> DownloadStats.combine([DownloadStats(success=1), DownloadStats(success=2)],
            ...                       root="data").success
            3
        """
        total = Counters()
        for part in parts:
            total.success += part.success
            total.failed += part.failed
            total.skipped += part.skipped
            total.not_retried += part.not_retried
            total.bytes += part.bytes
            total.aborted = total.aborted or part.aborted
            for reason, count in part.reasons.items():
                total.reasons[reason] = total.reasons.get(reason, 0) + count
        return total.stats(**fields)


STAT_KEYS = tuple(f.name for f in dataclasses.fields(DownloadStats))


@dataclasses.dataclass
class Counters:
    """The running counts of a run (mutable; :meth:`stats` freezes them).

    Example:
        >>> counters = Counters()
        >>> counters.count("skipped")
        >>> counters.stats(root="data").skipped
        1
    """

    success: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    aborted: bool = False
    not_retried: int = 0  # failed for good in an earlier run, not requested (part of failed)
    not_stored: int = 0  # duplicates and placeholders (part of failed, not judged: see below)

    def count(self, outcome: str, *, reason: str | None = None, nbytes: int = 0) -> None:
        """Count one item: ``outcome`` is ``"success"``, ``"failed"`` or ``"skipped"``.

        Example:
            >>> counters = Counters()
            >>> counters.count("failed", reason="timeout")
            >>> counters.failed, counters.reasons
            (1, {'timeout': 1})
        """
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.bytes += nbytes
        if reason is not None:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def over_threshold(self, fail_threshold: float | None) -> bool:
        """True when more than ``fail_threshold`` of the fetched items failed (judged from
        :data:`MIN_ITEMS_FOR_THRESHOLD` fetched items on).

        Example:
            >>> Counters(success=40, failed=20).over_threshold(0.25)
            True
            >>> Counters(success=4, failed=20).over_threshold(0.25)
            False
        """
        if fail_threshold is None:
            return False
        # earlier runs' failures are not judged again, nor copies of stored photos
        failed = self.failed - self.not_retried - self.not_stored
        fetched = self.success + failed
        return fetched >= MIN_ITEMS_FOR_THRESHOLD and failed > fail_threshold * fetched

    def stats(self, **fields: Any) -> DownloadStats:
        """The counts as :class:`DownloadStats`; ``fields`` set the others (``elapsed_s``, ...).

        Example:
            >>> Counters(success=2).stats(elapsed_s=1.0).success
            2
        """
        return DownloadStats(
            success=self.success,
            failed=self.failed,
            skipped=self.skipped,
            reasons=dict(self.reasons),
            bytes=self.bytes,
            aborted=self.aborted,
            not_retried=self.not_retried,
            **fields,
        )

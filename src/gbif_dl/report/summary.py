"""The numbers of a dataset report, computed from ``ROOT/manifest.parquet`` in one streaming pass.

:func:`summarize` reads the manifest through :mod:`gbif_dl.manifest` in batches and keeps only
aggregates (counts per class and split, per licence, per failure reason, per host) and a bounded
sample of thumbnail candidates, so its memory does not grow with the number of rows.

A row's ``status`` is one the manifest writes (:data:`~gbif_dl.manifest.table.SUCCESS`, or
:data:`~gbif_dl.manifest.table.FAILED`; a row without status counts as failed). A row with any
other status (another tool's, or a later version's) is neither an image nor a failure: it is
counted in :attr:`DatasetSummary.n_skipped` and left out of every other number.

Example:
    >>> import tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> root = Path(tempfile.mkdtemp())
    >>> pq.write_table(pa.table({"url": ["http://h/a.jpg"], "label": ["bee"],
    ...     "status": ["success"], "license": ["CC_BY_4_0"]}), root / "manifest.parquet")
    >>> summary = summarize(root)
    >>> summary.n_success, summary.classes[0].label, summary.hosts[0].host
    (1, 'bee', 'h')
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.errors import OutputError
from gbif_dl.manifest.table import (
    FAILED,
    MANIFEST_NAME,
    NOT_STORED,
    SUCCESS,
    iter_manifest,
    url_host,
)
from gbif_dl.pipeline.shortfall import stream_outcomes
from gbif_dl.records import license_code_of
from gbif_dl.report.duplicates import DuplicateGroup, DuplicateTally
from gbif_dl.report.thumbnails import DEFAULT_THUMBNAILS, Thumbnail, ThumbnailSampler
from gbif_dl.writers.attribution import ATTRIBUTION_NAME, CITATION_NAME

__all__ = [
    "NO_LABEL",
    "NO_SPLIT",
    "ClassCount",
    "DatasetSummary",
    "HostSummary",
    "license_name",
    "summarize",
]

#: The split name of images without a subset.
NO_SPLIT = "(none)"
#: The class name of rows without a label.
NO_LABEL = "(no label)"
#: The host name of rows whose url has no usable host.
NO_HOST = "(no host)"
#: The manifest columns the report reads.
_COLUMNS = (
    "url",
    "path",
    "label",
    "subset",
    "license",
    "license_code",
    "status",
    "reason",
    "http_status",
    "bytes",
    "attempts",
    "host",
    "elapsed_s",
    "duplicate_of",
)


@dataclass(frozen=True)
class ClassCount:
    """Images on disk for one class, per split.

    Example:
        >>> ClassCount("bee", {"train": 3, "test": 1}, failed=2).total
        4
    """

    label: str
    per_split: Mapping[str, int]
    failed: int = 0

    @property
    def total(self) -> int:
        """Successful images of this class, over all splits."""
        return sum(self.per_split.values())


@dataclass(frozen=True)
class HostSummary:
    """Requests, failures and (when the manifest records it) mean duration for one host.

    Example:
        >>> HostSummary("img.example.org", requests=10, failed=5).failure_rate
        0.5
    """

    host: str
    requests: int
    failed: int
    mean_seconds: float | None = None
    mean_attempts: float | None = None

    @property
    def failure_rate(self) -> float:
        """Share of this host's requests that failed."""
        return self.failed / self.requests if self.requests else 0.0


@dataclass
class DatasetSummary:
    """Everything the reports show, computed once from the manifest.

    Build it with :func:`summarize`. Example:
        >>> DatasetSummary(root=Path("."), n_rows=0).n_success
        0
    """

    root: Path
    n_rows: int
    n_success: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    total_bytes: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    classes: list[ClassCount] = field(default_factory=list)
    licenses: dict[str, int] = field(default_factory=dict)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    hosts: list[HostSummary] = field(default_factory=list)
    host_timing: bool = False
    thumbnails: list[Thumbnail] = field(default_factory=list)
    has_attribution: bool = False
    has_citation: bool = False
    #: per stream of quota'd items (gbif_dl.pipeline.shortfall.stream_outcomes); {} otherwise
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    duplicate_groups: list[DuplicateGroup] = field(default_factory=list)


def license_name(value: str | None) -> str:
    """How the report names a licence: its normalised code, else the text as published (cut to
    60 characters), else ``"unknown"``.

    Example:
        >>> license_name("http://creativecommons.org/licenses/by/4.0/"), license_name(" ")
        ('CC_BY_4_0', 'unknown')
    """
    text = (value or "").strip()
    if not text:
        return "unknown"
    return license_code_of(text) or text[:60]


def _counts(table: pa.Table, keys: list[str]) -> list[tuple[Any, ...]]:
    """``(key values..., rows)`` for each distinct combination of ``keys`` in ``table``."""
    grouped = table.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    columns = [grouped[k].to_pylist() for k in keys] + [grouped["count_all"].to_pylist()]
    return list(zip(*columns, strict=True))


def _texts(column: pa.ChunkedArray, default: str) -> pa.ChunkedArray:
    """``column`` with nulls and empty strings replaced by ``default``."""
    filled = pc.fill_null(column, default)
    return pc.if_else(pc.equal(filled, ""), default, filled)


@dataclass
class _Tally:
    """The aggregates of the rows seen so far (each a batch at a time)."""

    rows: int = 0
    success: int = 0
    failed: int = 0
    other: int = 0
    total_bytes: int = 0
    per_class: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    failed_per_class: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    licenses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    hosts: dict[str, list[float]] = field(default_factory=dict)  # 6 sums per host, see _add_hosts

    def add(self, batch: pa.Table, sampler: ThumbnailSampler) -> None:
        self.rows += batch.num_rows
        status = batch["status"]
        success = pc.fill_null(pc.equal(status, SUCCESS), False)
        # a duplicate, near duplicate or placeholder is a fetched image not stored: failed
        failed = pc.or_kleene(pc.is_null(status), pc.is_in(status, pa.array([FAILED, *NOT_STORED])))
        fetched = pc.or_(success, failed)
        n_fetched = pc.sum(fetched).as_py() or 0
        self.other += batch.num_rows - n_fetched
        if n_fetched < batch.num_rows:
            batch, success = batch.filter(fetched), success.filter(fetched)
        batch = batch.set_column(
            batch.schema.get_field_index("label"), "label", pc.fill_null(batch["label"], NO_LABEL)
        )
        self._add_hosts(batch, success)
        good = batch.filter(success)
        self._add_success(good, sampler)
        self._add_failed(batch.filter(pc.invert(success)))

    def _add_success(self, good: pa.Table, sampler: ThumbnailSampler) -> None:
        self.success += good.num_rows
        self.total_bytes += pc.sum(good["bytes"]).as_py() or 0
        subset = _texts(good["subset"], NO_SPLIT)
        for label, split, n in _counts(pa.table({"l": good["label"], "s": subset}), ["l", "s"]):
            self.per_class[str(label)][str(split)] += int(n)
            self.splits[str(split)] += int(n)
        code = good["license_code"]
        licence = pc.coalesce(pc.if_else(pc.equal(code, ""), None, code), good["license"])
        for value, n in _counts(pa.table({"v": licence}), ["v"]):
            self.licenses[license_name(value)] += int(n)
        shown = pc.fill_null(pc.not_equal(good["path"], ""), False)
        labels, paths, licences = (a.filter(shown) for a in (good["label"], good["path"], licence))
        sampler.offer_batch(labels, paths, licences)

    def _add_failed(self, bad: pa.Table) -> None:
        self.failed += bad.num_rows
        for label, n in _counts(bad.select(["label"]), ["label"]):
            self.failed_per_class[str(label)] += int(n)
        reasons = pa.table({"r": _texts(bad["reason"], "unknown"), "h": bad["http_status"]})
        for reason, http_status, n in _counts(reasons, ["r", "h"]):
            text = f"{reason} (HTTP {http_status})" if (http_status or 0) > 0 else reason
            self.reasons[text] += int(n)

    def _add_hosts(self, batch: pa.Table, success: pa.ChunkedArray) -> None:
        """Per host: requests, failures, the sum and count of elapsed seconds, the sum and
        count of attempts (rows with at least one)."""
        host = batch["host"]
        if pc.any(pc.fill_null(pc.equal(host, ""), True)).as_py():  # rows of older manifests
            host = pa.array(
                [
                    h or url_host(u or "") or NO_HOST
                    for h, u in zip(host.to_pylist(), batch["url"].to_pylist(), strict=True)
                ],
                pa.string(),
            )
        elapsed = pc.if_else(pc.is_nan(batch["elapsed_s"]), None, batch["elapsed_s"])
        attempts = pc.if_else(pc.greater(batch["attempts"], 0), batch["attempts"], None)
        table = pa.table(
            {
                "host": host,
                "failed": pc.cast(pc.invert(success), pa.int64()),
                "elapsed": elapsed,
                "attempts": pc.cast(attempts, pa.int64()),
            }
        )
        grouped = table.group_by("host", use_threads=False).aggregate(
            [
                ([], "count_all"),
                ("failed", "sum"),
                ("elapsed", "sum"),
                ("elapsed", "count"),
                ("attempts", "sum"),
                ("attempts", "count"),
            ]
        )
        names = ["count_all", "failed_sum", "elapsed_sum", "elapsed_count"]
        names += ["attempts_sum", "attempts_count"]
        columns = [grouped[n].to_pylist() for n in names]
        for host_name, *values in zip(grouped["host"].to_pylist(), *columns, strict=True):
            sums = self.hosts.setdefault(host_name, [0.0] * len(names))
            for i, value in enumerate(values):
                sums[i] += value or 0

    def host_summaries(self) -> list[HostSummary]:
        hosts = [
            HostSummary(
                host,
                requests=int(n),
                failed=int(failed),
                mean_seconds=seconds / timed if timed else None,
                mean_attempts=attempts / tried if tried else None,
            )
            for host, (n, failed, seconds, timed, attempts, tried) in self.hosts.items()
        ]
        hosts.sort(
            key=lambda h: (
                -(h.mean_seconds or 0.0),
                -h.failure_rate,
                -(h.mean_attempts or 0.0),
                -h.requests,
                h.host,
            )
        )
        return hosts


def summarize(
    root: str | os.PathLike[str], *, thumbnails: int = DEFAULT_THUMBNAILS
) -> DatasetSummary:
    """Read ``root/manifest.parquet`` and compute the report's numbers and thumbnails.

    The manifest streams past in batches: memory holds the aggregates and a bounded sample of
    thumbnail candidates, whatever the number of rows.

    Args:
        root: the dataset root written by ``gbif-dl download`` / :func:`gbif_dl.io.download`.
        thumbnails: how many sample images to embed (spread over the classes); 0 for none.

    Raises:
        OutputError: when there is no readable manifest at ``root``.

    Example:
        >>> summarize("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        gbif_dl.errors.OutputError: no manifest at /nonexistent/manifest.parquet
    """
    root_path = Path(root)
    path = root_path / MANIFEST_NAME
    if not path.is_file():
        raise OutputError(
            f"no manifest at {path}; is {root_path} a gbif-dl dataset? "
            "Run `gbif-dl download` first, or pass the folder that holds manifest.parquet."
        )
    tally = _Tally()
    sampler = ThumbnailSampler(thumbnails, root_path)
    copies = DuplicateTally()
    try:
        for batch in iter_manifest(path, _COLUMNS):
            copies.add(batch)
            tally.add(batch, sampler)
    except (pa.ArrowException, OSError) as exc:
        raise OutputError(
            f"cannot read {path}: {exc}; the file is damaged, re-run the download to rebuild it"
        ) from exc
    summary = _summary(root_path, tally, sampler)
    summary.duplicates = dict(copies.by_kind)
    summary.duplicate_groups = copies.groups(root_path, thumbnails=thumbnails > 0)
    return summary


_SPLIT_RANK = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2, NO_SPLIT: 9}


def _split_order(item: tuple[str, int]) -> tuple[int, str]:
    return (_SPLIT_RANK.get(item[0], 5), item[0])


def _summary(root: Path, tally: _Tally, sampler: ThumbnailSampler) -> DatasetSummary:
    labels = set(tally.per_class) | set(tally.failed_per_class)
    classes = (
        ClassCount(label, dict(tally.per_class[label]), tally.failed_per_class[label])
        for label in labels
    )
    return DatasetSummary(
        root=root,
        n_rows=tally.rows,
        n_success=tally.success,
        n_failed=tally.failed,
        n_skipped=tally.other,
        total_bytes=int(tally.total_bytes),
        splits=dict(sorted(tally.splits.items(), key=_split_order)),
        classes=sorted(classes, key=lambda c: (-c.total, c.label)),
        licenses=dict(tally.licenses.most_common()),
        failure_reasons=dict(tally.reasons.most_common()),
        hosts=tally.host_summaries(),
        host_timing=any(sums[3] for sums in tally.hosts.values()),
        thumbnails=sampler.thumbnails(license_name),
        has_attribution=(root / ATTRIBUTION_NAME).is_file(),
        has_citation=(root / CITATION_NAME).is_file(),
        streams=stream_outcomes(root),
    )

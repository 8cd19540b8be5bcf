"""After the spare rounds: what each stream delivered, streams that ran dry, and the trim.

A stream *ran dry* when it ends with fewer stored items than its quota although every
candidate it had (spares included) was tried. What happens to the other streams then is
``short_streams``: ``"keep"`` leaves them full; ``"trim"`` (the default for
``nb_samples=-1``, whose promise is the largest total every stream can deliver equally) cuts
every stream to the driest one's count: the surplus files are removed through the writer and
their manifest rows become :data:`~gbif_dl.manifest.table.TRIMMED` (reason ``trimmed``). The
surplus removed is the spares first, then the primaries, each in the fixed order of their URL
digests, so a rerun removes the same files. A layout whose files cannot be removed one by one
(WebDataset tars) keeps them and says so.

Example:
    >>> import tempfile
    >>> from gbif_dl.writers.imagefolder import ImageFolderWriter
    >>> root = Path(tempfile.mkdtemp())
    >>> settle_streams(root, [], ImageFolderWriter(root), trim=True)
    {}
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gbif_dl.manifest import (
    FAILED,
    JOURNAL_NAME,
    MANIFEST_NAME,
    SUCCESS,
    TRIMMED,
    Journal,
    manifest_row,
)
from gbif_dl.manifest.table import TableSource
from gbif_dl.pipeline.quotas import stream_rows, stream_sources
from gbif_dl.records import url_digest
from gbif_dl.writers.base import Writer

__all__ = ["StreamOutcome", "remove_unused", "settle_streams", "stream_outcomes"]

logger = logging.getLogger(__name__)


@dataclass
class StreamOutcome:
    """What one stream asked for and got.

    Attributes:
        requested: its quota.
        delivered: items stored at the end (after a trim).
        spares_used: stored items that were drawn as spares.
        failed: candidates that failed (404, not an image, ...).
        ran_dry: it has fewer stored items than its quota and no candidate left.
        trimmed: stored items removed to match a stream that ran dry.

    Example:
        >>> StreamOutcome(requested=3, delivered=3).as_dict()["ran_dry"]
        False
    """

    requested: int = 0
    delivered: int = 0
    spares_used: int = 0
    failed: int = 0
    ran_dry: bool = False
    trimmed: int = 0
    _stored: list[tuple[bool, int, dict[str, Any]]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The public fields as a dict (what ``DownloadStats.streams`` holds)."""
        values = asdict(self)
        values.pop("_stored")
        return values


def _outcomes(
    sources: Iterable[TableSource], targets: Mapping[str, int] | None, *, by_updated: bool
) -> dict[str, StreamOutcome]:
    outcomes: dict[str, StreamOutcome] = {}
    for table in stream_rows(sources, by_updated=by_updated):
        for row in table.to_pylist():
            outcome = outcomes.setdefault(row["stream"], StreamOutcome())
            outcome.requested = max(outcome.requested, int(row["quota"] or 0))
            status = row["status"]
            if status == SUCCESS:
                outcome.delivered += 1
                outcome.spares_used += bool(row["spare"])
                outcome._stored.append((bool(row["spare"]), url_digest(row["url"]), row))
            elif status == TRIMMED:
                outcome.trimmed += 1
            elif status == FAILED:
                outcome.failed += 1
    for name, outcome in outcomes.items():
        if targets is not None and name in targets:
            outcome.requested = targets[name]
        outcome.ran_dry = outcome.delivered + outcome.trimmed < outcome.requested
    return outcomes


def stream_outcomes(root: Path) -> dict[str, dict[str, Any]]:
    """Per stream of ``root/manifest.parquet`` (quota'd rows only): requested, delivered,
    spares used, failed, ran dry, trimmed; what the report shows. Reads the quota columns.

    Example:
        >>> import tempfile
        >>> stream_outcomes(Path(tempfile.mkdtemp()))
        {}
    """
    sources = stream_sources(Path(root), [(MANIFEST_NAME, None)])
    outcomes = _outcomes(sources, None, by_updated=False)
    return {name: outcomes[name].as_dict() for name in sorted(outcomes)}


def _trim(
    root: Path, outcomes: Mapping[str, StreamOutcome], writer: Writer, journal_name: str
) -> None:
    """Cut every stream to the driest one's count (see the module docstring)."""
    dry = sorted(name for name, outcome in outcomes.items() if outcome.ran_dry)
    level = min(outcome.delivered for outcome in outcomes.values())
    with Journal(root, journal_name) as journal:
        for name, outcome in sorted(outcomes.items()):
            surplus = outcome.delivered - level
            if surplus <= 0:
                continue
            # spares first, then primaries; within each the fixed order of the url digests
            cut = sorted(outcome._stored, key=lambda s: (not s[0], -s[1]))[:surplus]
            for _, _, row in cut:
                with contextlib.suppress(FileNotFoundError):
                    writer.remove_stored(row["path"])
                record = {k: row[k] for k in ("url", "label", "subset", "stream", "quota")}
                record["spare"] = row["spare"]
                journal.append(
                    manifest_row(
                        record,
                        status=TRIMMED,
                        reason="trimmed",
                        detail=f"trimmed to {level} per stream: {', '.join(dry)} ran dry",
                    ),
                    flush=False,
                )
            outcome.delivered -= surplus
            outcome.spares_used -= sum(spare for spare, _, _ in cut)
            outcome.trimmed += surplus
            logger.info("stream %s: %d stored files trimmed to %d", name, surplus, level)


def settle_streams(
    root: Path,
    sources: Iterable[TableSource],
    writer: Writer,
    *,
    trim: bool,
    targets: Mapping[str, int] | None = None,
    journal_name: str = JOURNAL_NAME,
    by_updated: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per stream of the rows of ``sources``: requested, delivered, spares used, failed, ran
    dry, trimmed. ``targets`` are the counts each stream should end with (default: the quota
    its rows say; a run given fewer primaries than the quota aims at those); with ``trim``,
    cut the others to a stream that ran dry (trimmed rows go to
    ``journal_name``, for the caller's merge).

    Example:
        >>> settle_streams(Path("data"), [], Writer("data"), trim=False)
        {}
    """
    sources = list(sources)
    outcomes = _outcomes(sources, targets, by_updated=by_updated)
    dry = [name for name, outcome in outcomes.items() if outcome.ran_dry]
    for name in dry:
        outcome = outcomes[name]
        logger.warning(
            "stream %s ran dry: %d of %d stored (%d candidates failed)",
            name,
            outcome.delivered,
            outcome.requested,
            outcome.failed,
        )
    if dry and trim:
        if writer.removable:
            _trim(root, outcomes, writer, journal_name)
        else:
            logger.warning(
                "%s cannot remove stored files: the other streams keep their items "
                "(short_streams='keep')",
                type(writer).__name__,
            )
    return {name: outcomes[name].as_dict() for name in sorted(outcomes)}


def remove_unused(
    writer: Writer, records: Iterable[Mapping[str, Any]], stored: Iterable[str] = ()
) -> int:
    """Remove the files a killed run stored for candidates that were not needed in the end
    (no manifest row names them: a stream filled up with others); return how many.
    ``stored`` are the urls whose rows say success (left alone).

    Example:
        >>> remove_unused(Writer("data"), [])
        0
    """
    if not writer.removable:
        return 0
    keep = set(stored)
    removed = 0
    for record in records:
        if record.get("url") in keep:
            continue
        path = writer.find_existing(record)
        if path is not None:
            writer.remove_stored(path)
            removed += 1
    if removed:
        logger.info("removed %d files of candidates their streams did not need", removed)
    return removed

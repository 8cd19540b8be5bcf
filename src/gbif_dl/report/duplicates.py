"""The duplicate part of the report: groups of copies, near copies and placeholders.

Streams with the rest of the report (:func:`gbif_dl.report.summary.summarize`): each batch adds
its ``duplicate_of`` counts; only one counter entry per kept file is held.

Example:
    >>> import pyarrow as pa
    >>> tally = DuplicateTally()
    >>> tally.add(pa.table({"status": ["duplicate", "duplicate", "placeholder"],
    ...                     "duplicate_of": ["a.jpg", "a.jpg", "p.jpg"]}))
    >>> [(g.kind, g.kept, g.copies) for g in tally.groups(Path("."), thumbnails=False)]
    [('duplicate', 'a.jpg', 2), ('placeholder', 'p.jpg', 1)]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.manifest.table import DUPLICATE, NEAR_DUPLICATE, PLACEHOLDER, SUCCESS
from gbif_dl.report.thumbnails import image_path, thumbnail_uri

__all__ = ["DuplicateGroup", "DuplicateTally"]

#: Groups listed in a report (the largest).
MAX_GROUPS = 24
#: ``duplicate_of`` on a stored row: a near copy kept in its neighbour's split.
NEAR_KEPT = "near (kept)"
_KINDS = (DUPLICATE, NEAR_DUPLICATE, PLACEHOLDER, SUCCESS)


@dataclass(frozen=True)
class DuplicateGroup:
    """One kept file and the rows that duplicate it (``kind``: duplicate, near_duplicate,
    placeholder, or :data:`NEAR_KEPT`), with a thumbnail of the kept file when it is there."""

    kind: str
    kept: str
    copies: int
    thumbnail: str | None = None


class DuplicateTally:
    """Counts of ``(status, duplicate_of)`` over the manifest's batches."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.by_kind: Counter[str] = Counter()

    def add(self, batch: pa.Table) -> None:
        """Count the rows of ``batch`` that name a kept file."""
        if "duplicate_of" not in batch.column_names:
            return
        named = pc.fill_null(pc.is_valid(batch["duplicate_of"]), False)
        if not pc.any(named).as_py():
            return
        rows = batch.filter(named)
        for status, kept in zip(
            rows["status"].to_pylist(), rows["duplicate_of"].to_pylist(), strict=True
        ):
            if status in _KINDS:
                kind = NEAR_KEPT if status == SUCCESS else status
                self.counts[(kind, kept)] += 1
                self.by_kind[kind] += 1

    def groups(self, root: Path, *, thumbnails: bool = True) -> list[DuplicateGroup]:
        """The largest groups, each with a thumbnail of its kept file (when still stored)."""
        out = []
        for (kind, kept), copies in self.counts.most_common(MAX_GROUPS):
            uri = thumbnail_uri(image_path(root, kept)) if thumbnails else None
            out.append(DuplicateGroup(kind, kept, copies, uri))
        return out

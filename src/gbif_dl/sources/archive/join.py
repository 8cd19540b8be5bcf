"""The streaming join: both data files read side by side, records built as the rows stream by.

GBIF writes the multimedia rows in the order of their occurrences, so each batch of candidate
media rows is joined to the occurrences read so far (looking ahead a little in the occurrence
file, read by a worker process for big archives, see :mod:`~gbif_dl.sources.archive.worker`),
decided by the shared :mod:`~gbif_dl.sources.archive.rules` and turned into records at once.
Memory grows by 8 bytes per media (the URL set) and per occurrence (the set of occurrences
whose rows went by). An archive not in that order raises :class:`OutOfOrder` before any
record of the offending rows is yielded; the three passes then do the rest.

Example:
    >>> join = StreamingJoin(reader, core, multimedia, rules, stats)  # doctest: +SKIP
    >>> for records in join.groups(archive, wanted, RowBits()):        # doctest: +SKIP
    ...     print(sum(1 for _ in records))
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from gbif_dl.records import MediaRecord
from gbif_dl.sources.archive.build import MEDIA_FIELDS, RECORD_MEDIA_FIELDS, RecordBuilder
from gbif_dl.sources.archive.columns import (
    Codes,
    MediaPositions,
    RowBits,
    SortedSet,
    arrow_int64,
    concat_batches,
    numpy_view,
    pick,
    take_column,
    trim,
)
from gbif_dl.sources.archive.members import MemberReader
from gbif_dl.sources.archive.meta import DataFileSpec
from gbif_dl.sources.archive.occurrences import Window
from gbif_dl.sources.archive.rules import ArchiveRules, CheckedMedia, check_media
from gbif_dl.sources.archive.worker import WorkerProcess, open_occurrence_feed

if TYPE_CHECKING:
    from gbif_dl.sources.archive.source import ArchiveStats

__all__ = ["OutOfOrder", "ParsedMedia", "StreamingJoin"]

#: Columns of the candidate media rows the streaming join decides on (the other record
#: fields are taken from the parsed batches for the rows it keeps).
_CANDIDATE_COLUMNS = ("row", "key", "position", "identifier", "license")
#: Occurrence rows the streaming join reads ahead looking for an occurrence before it gives up
#: on file order (about 44 bytes each).
LOOKAHEAD_ROWS = 1 << 20


class OutOfOrder(Exception):
    """The archive's multimedia rows do not follow the order of their occurrences."""


class ParsedMedia:
    """The parsed multimedia batches that still hold candidate rows not joined yet.

    The streaming join decides on a few columns of the candidate rows; the other record
    fields are taken from these batches for the rows it keeps only (not copied along with
    every candidate).

    Example:
        >>> parsed = ParsedMedia(); parsed.add(0, pa.record_batch({"creator": ["a", "b"]}))
        >>> parsed.columns(np.array([1]), ["creator"])["creator"].to_pylist()
        ['b']
    """

    __slots__ = ("batches", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []  # the file row number of each batch's first row
        self.batches: list[pa.RecordBatch] = []

    def add(self, row0: int, batch: pa.RecordBatch) -> None:
        """Hold ``batch``, whose first row is file row ``row0``."""
        self.starts.append(row0)
        self.batches.append(batch)

    def forget_before(self, row: int) -> None:
        """Drop the batches that end at or before file row ``row``."""
        while self.batches and self.starts[0] + self.batches[0].num_rows <= row:
            del self.starts[0], self.batches[0]

    def columns(self, rows: np.ndarray, names: Sequence[str]) -> dict[str, pa.Array]:
        """Columns ``names`` of the file rows ``rows`` (ascending, in the batches held)."""
        cuts = np.searchsorted(rows, self.starts[1:]).tolist()
        pieces = [
            (batch, arrow_int64(part - start))
            for start, batch, part in zip(
                self.starts, self.batches, np.split(rows, cuts), strict=True
            )
            if part.size
        ]
        out = {}
        for name in names:
            parts = [take_column(batch, name, take) for batch, take in pieces]
            out[name] = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        return out


class StreamingJoin:
    """The one-pass reader of one archive (see the module docstring).

    Attributes:
        process: the worker process of the last join (``None``: read in this process).
    """

    def __init__(
        self,
        reader: MemberReader,
        core: DataFileSpec,
        multimedia: DataFileSpec,
        rules: ArchiveRules,
        stats: ArchiveStats,
        *,
        worker_min_bytes: int,
        worker_start: Literal["auto", "fork", "spawn"] = "auto",
    ) -> None:
        self.reader = reader
        self.core = core
        self.multimedia = multimedia
        self.rules = rules
        self.stats = stats
        self.worker_min_bytes = worker_min_bytes
        self.worker_start = worker_start
        self.process: WorkerProcess | None = None
        self._window = Window([], Codes())
        self._build = RecordBuilder(self._window.occ, license_info=True)
        self._feed: Iterator[dict[str, Any]] = iter(())
        self._seen = SortedSet()
        self._parsed = ParsedMedia()
        self._yielded = RowBits()

    def groups(
        self, archive: zipfile.ZipFile, wanted: Sequence[str], yielded: RowBits
    ) -> Iterator[Iterator[MediaRecord]]:
        """The records, group by group (whole occurrences); ``yielded`` learns the rows
        that became records (for the three passes after an :class:`OutOfOrder`)."""
        self._window = Window(wanted, Codes())
        self._build = RecordBuilder(
            self._window.occ, license_info=self.rules.options.license_info, stats=self.stats
        )
        self._seen, self._parsed, self._yielded = SortedSet(), ParsedMedia(), yielded
        places = MediaPositions(keep_runs=False)
        names = ("type", "identifier", *MEDIA_FIELDS)
        carry: pa.RecordBatch | None = None
        row0 = 0
        with open_occurrence_feed(
            self.reader,
            archive,
            self.core,
            wanted,
            min_bytes=self.worker_min_bytes,
            start=self.worker_start,
        ) as feed:
            self.process, self._feed = feed.process, feed.messages
            media = self.reader.batches(
                archive, self.multimedia, names, "invalid_row", use_threads=True,
                skipped=self.stats.skipped,
            )  # fmt: skip
            for batch in media:
                checked = check_media(batch, self.rules.options.mediatype, self.stats, places)
                if checked.repeated:
                    raise OutOfOrder("the media rows of an occurrence are not all together")
                if checked.index.size:
                    self._parsed.add(row0, batch)
                    fresh = _candidates(batch, row0, checked)
                    carry, groups = _cut(carry, fresh)
                    yield from map(self._join, groups)
                    if carry is not None:
                        self._parsed.forget_before(carry.column("row")[0].as_py())
                row0 += batch.num_rows
            if carry is not None:
                yield self._join(carry)
            for message in self._feed:  # the rest of the file, for the statistics
                if not self._window.receive(message, self.stats):
                    break

    def _read_until(self, last: int) -> None:
        """Read occurrence messages until occurrence ``last`` is among those not passed."""
        window = self._window
        pending = window.occ.keys.size - window.start
        found = bool(np.any(window.occ.keys[window.start :] == last))
        while not found and not window.done:  # read on until the batch's last occurrence
            if pending > LOOKAHEAD_ROWS:
                raise OutOfOrder(f"no occurrence {last} within {LOOKAHEAD_ROWS} rows")
            message = next(self._feed, None)
            if message is None or not window.receive(message, self.stats):
                window.done = True
                break
            pending += window.append(message)
            found = bool(np.any(message["keys"] == last))

    def _join(self, rows: pa.RecordBatch) -> Iterator[MediaRecord]:
        """Decide one batch of candidate media rows (whole occurrences): their records."""
        skipped = self.stats.skipped
        rules, window = self.rules, self._window
        keys = numpy_view(rows.column("key"))
        self._read_until(int(keys[-1]))
        pos = window.locate(keys)
        if (pos < 0).any():
            missing = int(keys[np.flatnonzero(pos < 0)[0]])
            raise OutOfOrder(f"the media of occurrence {missing} are not in occurrence order")
        occ = window.occ
        keep = np.ones(keys.size, dtype=bool)
        rules.drop_unlabelled(keep, occ, pos, skipped)
        media_licenses = window.licenses.encode(trim(rows.column("license")))
        license_of = rules.license_codes(media_licenses, occ.codes["license"][pos])
        rules.drop_unlicensed(keep, license_of, window.licenses, skipped)
        index = np.flatnonzero(keep)
        urls = rows.column("identifier").take(arrow_int64(index)).to_pylist()
        url_hash = np.fromiter(map(hash, urls), dtype=np.int64, count=index.size)
        first = rules.first_urls(url_hash, self._seen)
        if not first.all():
            skipped["duplicate_url"] += int(index.size - np.count_nonzero(first))
        kept = np.flatnonzero(first)  # positions in ``urls``
        candidates = index[kept]
        positions = numpy_view(rows.column("position"))
        rank = rules.media_ranks(keys[candidates], positions[candidates])
        chosen = rules.one_per_occurrence(pos[candidates], rank)
        if chosen.size < kept.size:
            skipped["other_media_of_occurrence"] += int(kept.size - chosen.size)
            kept = kept[chosen]
        window.start = max(window.start, int(pos.max()))
        if not kept.size:
            return iter(())
        index = index[kept]
        row_numbers = numpy_view(rows.column("row"))[index]
        media: dict[str, Any] = {"identifier": pick(urls, kept)}
        for name, values in self._parsed.columns(row_numbers, RECORD_MEDIA_FIELDS).items():
            media[name] = trim(values)
        o = pos[index]
        labels = self._build.values(rules.options.label or "", o)
        self._yielded.add(row_numbers)
        return self._build.records(media, o, license_of[index], labels)


def _candidates(batch: pa.RecordBatch, row0: int, checked: CheckedMedia) -> pa.RecordBatch:
    """The candidate rows of a parsed batch, as the few columns the join decides on."""
    index = checked.index
    take = arrow_int64(index)
    columns = [
        arrow_int64(index + row0),
        arrow_int64(checked.keys),
        arrow_int64(checked.positions),
        checked.urls.take(take),
        take_column(batch, "license", take),
    ]
    return pa.RecordBatch.from_arrays(columns, names=_CANDIDATE_COLUMNS)


def _cut(
    carry: pa.RecordBatch | None, fresh: pa.RecordBatch
) -> tuple[pa.RecordBatch | None, list[pa.RecordBatch]]:
    """The groups of whole occurrences ready to join, and the rows to carry over: the last
    occurrence's media may go on in the next batch (``carry`` are the last batch's)."""
    groups: list[pa.RecordBatch] = []
    keys = numpy_view(fresh.column("key"))
    if carry is not None:  # the carried occurrence's media continued?
        other = np.flatnonzero(keys != carry.column("key")[0].as_py())
        cut = int(other[0]) if other.size else keys.size
        group = concat_batches([carry, fresh.slice(0, cut)])
        if cut == keys.size:
            return group, groups
        groups.append(group)
        fresh, keys = fresh.slice(cut), keys[cut:]
    other = np.flatnonzero(keys != keys[-1])
    cut = int(other[-1]) + 1 if other.size else 0
    if cut:
        groups.append(fresh.slice(0, cut))
    return fresh.slice(cut), groups

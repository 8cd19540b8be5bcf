"""Darwin Core Archive source: a local GBIF download zip, streamed as MediaRecords.

One pass (:mod:`~gbif_dl.sources.archive.join`) when a label column is asked for and there are
no quotas; three passes (:mod:`~gbif_dl.sources.archive.passes`) otherwise, and for the rest of
an archive found out of order, without repeating a record. Both decide every row alike, by the
shared :mod:`~gbif_dl.sources.archive.rules`: the same checks, the first of repeated URLs in
file order, the same seeded choice per occurrence (the one the occurrence search makes),
records in multimedia file order.

Messy rows (missing identifier or type, wrong column count, stray whitespace in ids) are
skipped or repaired and counted in :class:`ArchiveStats`, never fatal.

Example:
    >>> src = ArchiveSource("tests/data/dwca-0022697-200613084148143.zip")  # doctest: +SKIP
    >>> recs = list(src.records(label="speciesKey"))                        # doctest: +SKIP
    >>> src.stats.records == len(recs)                                        # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gbif_dl.errors import ArchiveError, ConfigError
from gbif_dl.options import SamplingOptions
from gbif_dl.records import MediaRecord
from gbif_dl.sources.archive.build import OCCURRENCE_FIELDS
from gbif_dl.sources.archive.columns import RowBits
from gbif_dl.sources.archive.join import OutOfOrder, StreamingJoin
from gbif_dl.sources.archive.members import DEFAULT_BATCH_ROWS, DEFAULT_BLOCK_SIZE, MemberReader
from gbif_dl.sources.archive.meta import open_zip
from gbif_dl.sources.archive.passes import ThreePasses
from gbif_dl.sources.archive.rules import ArchiveRules
from gbif_dl.sources.archive.worker import WorkerProcess

__all__ = ["WORKER_MIN_BYTES", "ArchiveSource", "ArchiveStats"]

logger = logging.getLogger(__name__)

#: Occurrence files at least this large (uncompressed bytes) are read by a worker process
#: while the main one reads the multimedia file (below, starting a process costs more).
WORKER_MIN_BYTES = 64 << 20


@dataclass
class ArchiveStats:
    """What a pass over an archive saw.

    Attributes:
        occurrences: occurrence rows read.
        media_rows: multimedia rows read.
        records: records yielded.
        id_whitespace: ids with stray whitespace, stripped and joined anyway.
        skipped: why media rows or occurrences did not become records, by reason
            (``invalid_row``, ``missing_id``, ``missing_identifier``, ``missing_type``,
            ``other_type``, ``invalid_url``, ``no_occurrence``, ``missing_label``,
            ``missing_split_value``, ``license``, ``duplicate_url``, ``other_media_of_occurrence``,
            ``sampled_out``, ``invalid_occurrence_row``).

    Example:
        >>> ArchiveStats().skipped["license"]
        0
    """

    occurrences: int = 0
    media_rows: int = 0
    records: int = 0
    id_whitespace: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


class ArchiveSource:
    """A local GBIF Darwin Core Archive zip, read as a stream of MediaRecords.

    Opening validates the zip (central directory, member names, ``meta.xml``, the multimedia
    extension); :meth:`records` then streams the media with bounded memory.

    Raises:
        ArchiveError: not a zip, corrupt, a SIMPLE_CSV / SIMPLE_PARQUET download (no media
            URLs), no multimedia extension, or member names that try to escape.

    Example:
        >>> src = ArchiveSource("tests/data/dwca-0022697-200613084148143.zip")  # doctest: +SKIP
        >>> next(iter(src.records(label="scientificName")))["label"]            # doctest: +SKIP
        'Coccinella septempunctata Linnaeus, 1758'
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        self.path = Path(path)
        self.reader = MemberReader(self.path, block_size=block_size, batch_rows=batch_rows)
        self.stats = ArchiveStats()
        #: One pass with the streaming join when the options allow it (no quotas, a label).
        self.streaming = True
        #: Occurrence files at least this large (uncompressed) are read in a worker process.
        self.worker_min_bytes = WORKER_MIN_BYTES
        #: How the worker starts: ``"auto"`` forks this process where that is safe (Linux,
        #: no other Python thread) and starts a new interpreter elsewhere; ``"fork"`` or
        #: ``"spawn"`` choose (a fork that cannot happen falls back to a new interpreter).
        self.worker_start: Literal["auto", "fork", "spawn"] = "auto"
        self._occurrence_process: WorkerProcess | None = None  # the last worker
        self._where = str(self.path)
        self.core, self.multimedia = self.reader.read_meta()

    @property
    def block_size(self) -> int:
        """A quarter of the text inflated and parsed at a time."""
        return self.reader.block_size

    @property
    def batch_rows(self) -> int:
        """Rows processed together."""
        return self.reader.batch_rows

    @property
    def columns(self) -> list[str]:
        """The occurrence columns a label or ``split_streams_by`` may name.

        Example:
            >>> "speciesKey" in ArchiveSource(path).columns  # doctest: +SKIP
            True
        """
        return sorted(self.core.columns, key=self.core.columns.__getitem__)

    def records(
        self, options: SamplingOptions | None = None, **keywords: Any
    ) -> Iterator[MediaRecord]:
        """Stream the archive's media as MediaRecords.

        Args:
            options: the sampling settings (:class:`~gbif_dl.options.SamplingOptions`); its
                ``label`` is the occurrence column used as label (``speciesKey``,
                ``scientificName``, ``family``...), ``None`` putting the whole occurrence row
                (a dict of short term names to strings) in ``label``, as gbif-dl 0.1 did;
                ``mediatype`` the multimedia ``type`` to keep (``None`` keeps every type).
                ``subset_streams`` does not apply to archives.
            keywords: instead of ``options``, its fields as keywords (``label`` defaults to
                ``"speciesKey"`` here).

        Raises:
            ConfigError: ``label`` or a split column is not an occurrence column, or both
                ``options`` and keywords are given.
            ArchiveError: the archive cannot be read.

        Example:
            >>> src = ArchiveSource(path)                                  # doctest: +SKIP
            >>> recs = src.records(label="family", nb_samples=10, seed=1)  # doctest: +SKIP
        """
        if options is None:
            options = SamplingOptions(**{"label": "speciesKey", **keywords})
        elif keywords:
            raise ConfigError(
                "give ArchiveSource.records either a SamplingOptions or keywords, not both "
                f"(got {', '.join(sorted(keywords))})"
            )
        self._check(options)
        return self._records(ArchiveRules(options))

    def _check(self, options: SamplingOptions) -> None:
        label = options.label
        for name in ([label] if label is not None else []) + list(options.split_streams_by):
            if name not in self.core.columns:
                raise ConfigError(
                    f"{name!r} is not a column of the occurrence file of {self._where}; "
                    f"available columns: {', '.join(self.columns)}"
                )
        if options.mediatype is not None and "type" not in self.multimedia.columns:
            raise ArchiveError(
                f"the multimedia extension of {self._where} has no dc:type column; "
                "pass mediatype=None to keep every media",
                path=self._where,
            )

    def _records(self, rules: ArchiveRules) -> Iterator[MediaRecord]:
        self.stats = stats = ArchiveStats()
        options = rules.options
        label = options.label
        wanted = list(
            dict.fromkeys(
                [*([label] if label else []), *options.split_streams_by, *OCCURRENCE_FIELDS]
            )
        )
        streaming = (
            self.streaming
            and label is not None
            and options.nb_samples is None
            and options.nb_samples_per_stream is None
        )
        with open_zip(self.path) as archive:
            yielded = RowBits()
            if streaming:
                join = StreamingJoin(
                    self.reader,
                    self.core,
                    self.multimedia,
                    rules,
                    stats,
                    worker_min_bytes=self.worker_min_bytes,
                    worker_start=self.worker_start,
                )
                try:
                    for records in join.groups(archive, wanted, yielded):
                        self._occurrence_process = join.process
                        yield from records
                except OutOfOrder as exc:
                    logger.info(
                        "%s: %s; reading the rest in three passes (%d records so far)",
                        self._where,
                        exc,
                        stats.records,
                    )
                    self.stats = stats = ArchiveStats(records=stats.records)
                else:
                    self._log_stats()
                    return
                finally:
                    self._occurrence_process = join.process
            passes = ThreePasses(self.reader, self.core, self.multimedia, rules, stats)
            forced = yielded if yielded.any() else None
            yield from passes.records(archive, wanted, forced)
        self._log_stats()

    def _log_stats(self) -> None:
        stats = self.stats
        if stats.id_whitespace:
            logger.info(
                "%s: %d ids had stray whitespace (stripped)", self._where, stats.id_whitespace
            )
        if stats.skipped:
            logger.info(
                "%s: %d records; skipped: %s",
                self._where,
                stats.records,
                ", ".join(f"{k}={v}" for k, v in sorted(stats.skipped.items())),
            )

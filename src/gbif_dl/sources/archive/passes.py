"""The three-pass reader: every candidate first, then the decisions, then the records.

Used when quotas need every candidate first, when ``label=None`` emits whole occurrence rows,
and for the rest of an archive found out of order by the streaming join; the join does not
rely on file order:

1. multimedia pass: rows that pass the type, identifier and URL checks are kept as a few
   compact numpy columns (file row number, occurrence key, URL hash, licence code, position
   among the occurrence's rows);
2. occurrence pass: only occurrences that carry such media are kept, each needed column
   dictionary-encoded to ``int32`` codes;
3. join, licence filter, URL dedupe, one media per occurrence and stream quotas, all
   vectorised, by the shared :mod:`~gbif_dl.sources.archive.rules`;
4. emit pass: the multimedia file is streamed again and only the chosen rows become records,
   in file order (deterministic for a ``seed``).

Example:
    >>> passes = ThreePasses(reader, core, multimedia, rules, stats)  # doctest: +SKIP
    >>> records = list(passes.records(archive, wanted))                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl._memory import release_memory
from gbif_dl.records import MediaRecord
from gbif_dl.sampling.spares import spares_for, stream_key, tag
from gbif_dl.sources.archive.build import MEDIA_FIELDS, RecordBuilder
from gbif_dl.sources.archive.columns import (
    Codes,
    MediaPositions,
    RowBits,
    SortedSet,
    arrow_int64,
    sorted_unique,
    take_column,
    to_keys,
    trim,
)
from gbif_dl.sources.archive.members import MemberReader
from gbif_dl.sources.archive.meta import DataFileSpec
from gbif_dl.sources.archive.occurrences import Occurrences, occurrence_messages, scan_occurrences
from gbif_dl.sources.archive.rules import ArchiveRules, check_media

if TYPE_CHECKING:
    from gbif_dl.sources.archive.source import ArchiveStats

__all__ = ["Chosen", "ThreePasses"]

logger = logging.getLogger(__name__)

_EMPTY = np.empty(0, dtype=np.int64)


@dataclass
class _Media:
    """Compact columns of the multimedia rows that survived the row checks."""

    rows: np.ndarray  # int64 row number in the parsed multimedia file
    keys: np.ndarray  # int64 occurrence key
    url_hash: np.ndarray  # int64 hash() of the URL: compared within one run only
    license: np.ndarray  # int32 code into the licence dictionary
    positions: np.ndarray  # int64 place among the occurrence's multimedia rows


@dataclass
class Chosen:
    """The media rows that become records: file rows (ascending), their occurrences'
    positions and their licence codes."""

    rows: np.ndarray
    occurrences: np.ndarray
    licenses: np.ndarray

    def subset(self, keep: np.ndarray) -> Chosen:
        """The rows at ``keep`` (a mask or positions)."""
        return Chosen(self.rows[keep], self.occurrences[keep], self.licenses[keep])


@dataclass
class _Streams:
    """The streams of a sampled read: names, quotas, each primary's stream and the spares.

    ``stream`` is aligned with the chosen rows (file order); ``spares`` are the spare rows
    sorted by file row, ``spare_stream`` their streams and ``spare_order`` the place of each
    in the yield order (round-robin across streams, seeded rank order within one)."""

    names: list[str]
    quota: np.ndarray
    stream: np.ndarray
    spares: Chosen
    spare_stream: np.ndarray
    spare_order: np.ndarray
    balanced: bool


class ThreePasses:
    """The three-pass reader of one archive (see the module docstring)."""

    def __init__(
        self,
        reader: MemberReader,
        core: DataFileSpec,
        multimedia: DataFileSpec,
        rules: ArchiveRules,
        stats: ArchiveStats,
    ) -> None:
        self.reader = reader
        self.core = core
        self.multimedia = multimedia
        self.rules = rules
        self.stats = stats
        self.streams: _Streams | None = None  # set by select() when the options sample

    def records(
        self, archive: zipfile.ZipFile, wanted: Sequence[str], forced: RowBits | None = None
    ) -> Iterator[MediaRecord]:
        """The records, in multimedia file order (occurrence order for ``label=None``);
        ``forced`` rows were yielded already (by the streaming join) and are not again."""
        licenses = Codes()
        media = self.scan_media(archive, licenses)
        media_keys = sorted_unique(media.keys)
        release_memory()
        messages = occurrence_messages(self.reader, archive, self.core, wanted)
        occ = scan_occurrences(messages, wanted, media_keys, licenses, self.stats)
        del media_keys
        release_memory()
        chosen = self.select(media, occ, licenses, forced)
        del media
        release_memory()
        if self.rules.options.label is None:
            yield from self.emit_with_rows(archive, chosen, occ)
        else:
            yield from self.emit(archive, chosen, occ)
            yield from self.emit_spares(archive, occ)

    def scan_media(self, archive: zipfile.ZipFile, licenses: Codes) -> _Media:
        """Pass 1: the multimedia rows that can become records, as compact numpy columns."""
        chunks: list[tuple[np.ndarray, ...]] = []
        runs: list[np.ndarray] = []
        places = MediaPositions(keep_runs=True)
        row0 = 0
        wanted = ("type", "identifier", "license")
        skipped = self.stats.skipped
        batches = self.reader.batches(
            archive, self.multimedia, wanted, "invalid_row", skipped=skipped
        )
        for batch in batches:
            checked = check_media(batch, self.rules.options.mediatype, self.stats, places)
            index = checked.index
            if index.size:
                take = arrow_int64(index)
                kept_urls = checked.urls.take(take).to_pylist()
                url_hash = np.fromiter(map(hash, kept_urls), dtype=np.int64, count=index.size)
                del kept_urls
                media_licenses = licenses.encode(trim(batch.column("license").take(take)))
                chunks.append(
                    (index + row0, checked.keys, url_hash, media_licenses, checked.positions)
                )
                runs.append(checked.runs)
            row0 += batch.num_rows
        if not chunks:
            return _Media(_EMPTY, _EMPTY, _EMPTY, np.empty(0, dtype=np.int32), _EMPTY)
        release_memory()
        columns = []
        for k in range(5):  # one column at a time: the peak is the total plus one column
            columns.append(np.concatenate([chunk[k] for chunk in chunks]))
            chunks = [(*chunk[:k], _EMPTY, *chunk[k + 1 :]) for chunk in chunks]
        base = places.finish()  # occurrences whose rows came back after another's
        if base is not None:
            columns[4] += base[np.concatenate(runs)]
        return _Media(*columns)

    def select(
        self,
        media: _Media,
        occ: Occurrences,
        licenses: Codes,
        forced: RowBits | None = None,
    ) -> Chosen:
        """Decide which media rows become records.

        Consumes ``media``. ``forced`` rows were yielded already (by the streaming join):
        they stay chosen, win over later and earlier copies of their URL and over the other
        media of their occurrence, and are left out of the result.
        """
        skipped = self.stats.skipped
        rules = self.rules
        n_occ = occ.keys.size
        if n_occ == 0:
            skipped["no_occurrence"] += int(media.rows.size)
            return Chosen(_EMPTY, _EMPTY.astype(np.int32), np.empty(0, dtype=np.int32))
        found = np.minimum(np.searchsorted(occ.keys, media.keys), n_occ - 1)
        pos = found.astype(np.int32)
        keep = occ.keys[found] == media.keys
        del found
        orphans = int(keep.size - np.count_nonzero(keep))
        if orphans:
            skipped["no_occurrence"] += orphans
        rules.drop_unlabelled(keep, occ, pos, skipped)
        license_of = rules.license_codes(media.license, occ.codes["license"][pos])
        rules.drop_unlicensed(keep, license_of, licenses, skipped)
        index = np.flatnonzero(keep)
        del keep
        chosen = Chosen(media.rows[index], pos[index], license_of[index])
        keys, positions, url_hash = media.keys[index], media.positions[index], media.url_hash[index]
        media.rows = media.keys = media.url_hash = media.positions = _EMPTY
        done = forced.contains(chosen.rows) if forced is not None else None
        first = rules.first_urls(url_hash, SortedSet(), done)
        del url_hash
        if not first.all():
            skipped["duplicate_url"] += int(first.size - np.count_nonzero(first))
            chosen, keys, positions = chosen.subset(first), keys[first], positions[first]
            done = None if done is None else done[first]
        rank = rules.media_ranks(keys, positions)
        if done is not None:
            rank[done] = 0
        kept = rules.one_per_occurrence(chosen.occurrences, rank)
        if kept.size < rank.size:
            skipped["other_media_of_occurrence"] += int(rank.size - kept.size)
            chosen, rank = chosen.subset(kept), rank[kept]
            done = None if done is None else done[kept]
        sampled = self._apply_quotas(rank, chosen.occurrences, occ)
        if sampled is not None:
            if self.streams is not None:  # the spares are rows of the candidates too
                self.streams.spares = chosen.subset(self.streams.spares.rows)
            chosen = chosen.subset(sampled)
            done = None if done is None else done[sampled]
        return chosen if done is None else chosen.subset(~done)

    def _apply_quotas(
        self, rank: np.ndarray, pos: np.ndarray, occ: Occurrences
    ) -> np.ndarray | None:
        """Positions to keep: per stream, the quota of items with the smallest seeded rank.

        ``None`` when there is no sampling (keep everything).
        """
        options = self.rules.options
        if options.nb_samples is None and options.nb_samples_per_stream is None:
            return None
        from gbif_dl.sampling.balance import allocate

        split = options.split_streams_by
        if split:
            stacked = np.stack([occ.codes[name][pos] for name in split], axis=1)
            combos, stream = np.unique(stacked, axis=0, return_inverse=True)
            stream = stream.reshape(-1)
        else:
            combos = np.zeros((1, 0), dtype=np.int32)
            stream = np.zeros(rank.size, dtype=np.int64)
        counts = np.bincount(stream, minlength=len(combos))
        names = [
            tuple(
                occ.dictionaries[name].values[c]
                for name, c in zip(split, combo.tolist(), strict=True)
            )
            for combo in combos
        ]
        quotas = allocate(
            {name: int(count) for name, count in zip(names, counts.tolist(), strict=True)},
            options.nb_samples,
            cap=options.nb_samples_per_stream,
            weighted=options.weighted_streams,
        )
        quota = np.array([quotas.get(name, 0) for name in names], dtype=np.int64)
        order = np.lexsort((self.rules.sample_ranks(rank), stream))
        sorted_stream = stream[order]
        starts = np.searchsorted(sorted_stream, np.arange(len(combos)))
        position = np.arange(order.size) - starts[sorted_stream]
        chosen = np.sort(order[position < quota[sorted_stream]])
        self._keep_spares(order, sorted_stream, position, quota, names, stream[chosen])
        if chosen.size < rank.size:
            self.stats.skipped["sampled_out"] += int(rank.size - chosen.size)
        if len(combos) > 1:
            logger.info(
                "%d streams; quotas: %s", len(combos), dict(zip(names, quota.tolist(), strict=True))
            )
        return chosen

    def _keep_spares(
        self,
        order: np.ndarray,
        sorted_stream: np.ndarray,
        position: np.ndarray,
        quota: np.ndarray,
        names: list[tuple[Any, ...]],
        chosen_stream: np.ndarray,
    ) -> None:
        """Note the streams and pick the spares: per stream the next
        :func:`~gbif_dl.sampling.spares.spares_for` candidates after its quota, by rank.
        ``self.streams.spares.rows`` holds candidate positions until :meth:`select` maps them."""
        options = self.rules.options
        counts = np.array([spares_for(int(q), options.spares) for q in quota.tolist()], np.int64)
        extra = position - quota[sorted_stream]
        is_spare = (extra >= 0) & (extra < counts[sorted_stream])
        spare_at, spare_stream, spare_extra = (
            order[is_spare],
            sorted_stream[is_spare],
            extra[is_spare],
        )
        by_row = np.argsort(spare_at, kind="stable")
        # yield order: round r of every stream (in stream order) before round r + 1
        rank_of = np.empty(spare_at.size, dtype=np.int64)
        rank_of[np.lexsort((spare_stream, spare_extra))] = np.arange(spare_at.size)
        split = options.split_streams_by
        self.streams = _Streams(
            names=[stream_key(zip(split, map(str, name), strict=True)) for name in names],
            quota=quota,
            stream=chosen_stream,
            spares=Chosen(spare_at[by_row], _EMPTY, _EMPTY),
            spare_stream=spare_stream[by_row],
            spare_order=rank_of[by_row],
            balanced=options.nb_samples == -1,
        )

    def _tag(self, records: Iterator[MediaRecord], streams: np.ndarray, *, spare: bool) -> None:
        """Add the quota keys (:mod:`gbif_dl.sampling.spares`) to ``records`` in place."""
        info = self.streams
        if info is None:
            return
        for record, i in zip(records, streams.tolist(), strict=True):
            tag(record, info.names[i], int(info.quota[i]), spare=spare, balanced=info.balanced)

    def emit_spares(self, archive: zipfile.ZipFile, occ: Occurrences) -> Iterator[MediaRecord]:
        """The spares, after every primary: built in one more pass over the multimedia file
        (their rows only), yielded round-robin across streams in seeded rank order."""
        info = self.streams
        if info is None or not info.spares.rows.size:
            return
        build = RecordBuilder(occ, license_info=self.rules.options.license_info, stats=None)
        label = self.rules.options.label or ""
        ordered: list[MediaRecord | None] = [None] * info.spares.rows.size
        for positions, columns in self._media_batches(archive, info.spares.rows):
            o = info.spares.occurrences[positions]
            records = list(
                build.records(columns, o, info.spares.licenses[positions], build.values(label, o))
            )
            self._tag(iter(records), info.spare_stream[positions], spare=True)
            for record, place in zip(records, info.spare_order[positions].tolist(), strict=True):
                ordered[place] = record
        for spare in ordered:
            if spare is not None:
                yield spare

    def _media_batches(
        self, archive: zipfile.ZipFile, rows: np.ndarray
    ) -> Iterator[tuple[np.ndarray, dict[str, pa.Array]]]:
        """The chosen multimedia rows in file order: (positions into ``rows``, trimmed
        columns)."""
        row0 = 0
        names = ("identifier", *MEDIA_FIELDS)
        batches = self.reader.batches(
            archive, self.multimedia, names, "invalid_row", use_threads=True, skipped=Counter()
        )
        for batch in batches:
            n = batch.num_rows
            lo, hi = np.searchsorted(rows, [row0, row0 + n]).tolist()
            row0 += n
            if hi <= lo:
                continue
            take = arrow_int64(rows[lo:hi] - (row0 - n))
            columns = {name: trim(take_column(batch, name, take)) for name in names}
            yield np.arange(lo, hi), columns

    def emit(
        self, archive: zipfile.ZipFile, chosen: Chosen, occ: Occurrences
    ) -> Iterator[MediaRecord]:
        """Pass 3: build the records of the chosen rows, batch by batch, in file order."""
        build = RecordBuilder(occ, license_info=self.rules.options.license_info, stats=self.stats)
        label = self.rules.options.label or ""
        for positions, columns in self._media_batches(archive, chosen.rows):
            o = chosen.occurrences[positions]
            labels = build.values(label, o)
            records = build.records(columns, o, chosen.licenses[positions], labels)
            if self.streams is None:
                yield from records
                continue
            batch = list(records)
            self._tag(iter(batch), self.streams.stream[positions], spare=False)
            yield from batch

    def emit_with_rows(
        self, archive: zipfile.ZipFile, chosen: Chosen, occ: Occurrences
    ) -> Iterator[MediaRecord]:
        """``label=None``: the whole occurrence row is the label, so emit in occurrence order.

        The chosen media's records are held in memory until their occurrence row streams by.
        """
        build = RecordBuilder(occ, license_info=self.rules.options.license_info)
        pending: dict[int, list[MediaRecord]] = {}
        for positions, columns in self._media_batches(archive, chosen.rows):
            o = chosen.occurrences[positions]
            labels: list[Any] = [None] * len(positions)
            records = list(build.records(columns, o, chosen.licenses[positions], labels))
            if self.streams is not None:
                self._tag(iter(records), self.streams.stream[positions], spare=False)
            for p, record in zip(o.tolist(), records, strict=True):
                pending.setdefault(p, []).append(record)
        names = sorted(self.core.columns, key=self.core.columns.__getitem__)
        batches = self.reader.batches(archive, self.core, names, "invalid_row", skipped=Counter())
        for batch in batches:
            ids = trim(batch.column("_id"))
            valid = pc.greater(pc.utf8_length(ids), 0)
            keys = to_keys(pc.if_else(valid, ids, "0"))
            pos = np.minimum(np.searchsorted(occ.keys, keys), max(occ.keys.size - 1, 0))
            hit = (occ.keys[pos] == keys) if occ.keys.size else np.zeros(keys.size, dtype=bool)
            rows_hit = [i for i in np.flatnonzero(hit).tolist() if int(pos[i]) in pending]
            if not rows_hit:
                continue
            present = [name for name in names if name in batch.schema.names]
            table = batch.select(present).take(arrow_int64(np.array(rows_hit, dtype=np.int64)))
            for i, row in zip(rows_hit, table.to_pylist(), strict=True):
                for record in pending.pop(int(pos[i]), []):
                    record["label"] = row
                    self.stats.records += 1
                    yield record

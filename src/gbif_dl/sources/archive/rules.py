"""The decisions the streaming join and the three-pass reader share, written once.

A media row becomes a record when its occurrence has a label (and a value for each split
column), its licence (the media's, else the occurrence's, by
:data:`gbif_dl.records.ATTRIBUTION_RULES`) passes the allow-list, its URL was not yielded
before (the first in file order wins), and, with one media per occurrence, it has the lowest
seeded rank (:func:`gbif_dl.sampling.ranks.media_ranks`) of its occurrence's remaining media.
Both paths call these functions on their columns, so they decide every row alike.

Example:
    >>> rules = ArchiveRules(SamplingOptions(label="speciesKey", seed=1))
    >>> first_present("license", {"media": {"license": np.array([0, 3])},
    ...                           "occurrence": {"license": np.array([2, 2])}}).tolist()
    [2, 3]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.options import SamplingOptions
from gbif_dl.records import ATTRIBUTION_RULES, is_http_url
from gbif_dl.sampling.filters import LicenseFilter
from gbif_dl.sampling.ranks import media_ranks, seed_value, splitmix64
from gbif_dl.sources.archive.columns import (
    Codes,
    MediaPositions,
    SortedSet,
    arrow_int64,
    drop,
    equals,
    lengths,
    lowest_per_group,
    simple_urls,
    to_keys,
    trim,
    trim_ids,
)
from gbif_dl.sources.archive.occurrences import Occurrences

if TYPE_CHECKING:
    from gbif_dl.sources.archive.source import ArchiveStats

__all__ = ["ArchiveRules", "CheckedMedia", "check_media", "first_present", "present"]

#: The salt of the stream quota ranks (the media ranks use their own, in ``sampling.ranks``).
_SAMPLE_SALT = 2


def present(values: pa.Array) -> pa.Array:
    """A string column with its empty strings as nulls (an empty value counts as missing).

    Example:
        >>> present(pa.array(["a", ""])).to_pylist()
        ['a', None]
    """
    if not len(values):
        return values
    if values.null_count or not isinstance(values, pa.StringArray):
        return pc.if_else(pc.greater(pc.binary_length(values), 0), values, pa.nulls(1)[0])
    # the same offsets and data, with a validity bitmap of the non-empty values (no copy)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset :]
    filled = offsets[1 : len(values) + 1] != offsets[: len(values)]
    validity = pa.py_buffer(np.packbits(filled, bitorder="little"))
    offsets_buffer = pa.py_buffer(np.ascontiguousarray(offsets[: len(values) + 1]))
    return pa.Array.from_buffers(
        pa.string(), len(values), [validity, offsets_buffer, values.buffers()[2]]
    )


def first_present(name: str, sides: Mapping[str, Mapping[str, Any]]) -> Any:
    """Record field ``name`` by :data:`gbif_dl.records.ATTRIBUTION_RULES`, over whole columns.

    ``sides`` maps ``"media"`` and ``"occurrence"`` to their columns by Darwin Core term:
    numpy dictionary codes of one shared dictionary (0 is the empty string), or arrow string
    arrays. The result takes, row by row, the first non-empty of the rule's columns: codes
    (0 where none), or strings (null where none).

    Example:
        >>> first_present("rightsHolder", {
        ...     "media": {"rightsHolder": pa.array(["", ""]), "creator": pa.array(["C", ""])},
        ...     "occurrence": {"rightsHolder": pa.array(["O", "O"])}}).to_pylist()
        ['C', 'O']
    """
    columns = [sides[side][term] for side, term in ATTRIBUTION_RULES[name]]
    if isinstance(columns[0], np.ndarray):
        out = np.array(columns[-1], copy=True)
        for column in reversed(columns[:-1]):
            np.copyto(out, column, where=column != 0)
        return out
    return pc.coalesce(*map(present, columns))


class ArchiveRules:
    """The sampling options, as the archive reader decides rows with them.

    Example:
        >>> ArchiveRules(SamplingOptions(licenses=["CC0_1_0"])).license_filter is not None
        True
    """

    def __init__(self, options: SamplingOptions) -> None:
        self.options = options
        self.license_filter = (
            None
            if options.licenses is None
            else LicenseFilter(options.licenses, keep_unknown=options.keep_unknown_licenses)
        )

    def drop_unlabelled(
        self, keep: np.ndarray, occ: Occurrences, pos: np.ndarray, skipped: Counter[str]
    ) -> None:
        """Clear ``keep`` for media whose occurrence (at ``pos``) has no label or misses a
        split value (counted as ``missing_label``, ``missing_split_value``).

        Example:
            >>> occ = Occurrences(np.array([1, 2]), {"family": np.array([0, 3])}, {}, {})
            >>> keep, skipped = np.ones(2, bool), Counter()
            >>> ArchiveRules(SamplingOptions(label="family")).drop_unlabelled(
            ...     keep, occ, np.array([0, 1]), skipped)
            >>> keep.tolist(), skipped["missing_label"]
            ([False, True], 1)
        """
        label = self.options.label
        if label is not None:
            drop(keep, occ.codes[label][pos] == 0, skipped, "missing_label")
        for name in self.options.split_streams_by:
            drop(keep, occ.codes[name][pos] == 0, skipped, "missing_split_value")

    @staticmethod
    def license_codes(media: np.ndarray, occurrence: np.ndarray) -> np.ndarray:
        """Each media's licence code: its own, else its occurrence's (one dictionary).

        Example:
            >>> ArchiveRules.license_codes(np.array([0, 5]), np.array([2, 2])).tolist()
            [2, 5]
        """
        codes: np.ndarray = first_present(
            "license", {"media": {"license": media}, "occurrence": {"license": occurrence}}
        )
        return codes

    def drop_unlicensed(
        self, keep: np.ndarray, license_of: np.ndarray, licenses: Codes, skipped: Counter[str]
    ) -> None:
        """Clear ``keep`` for licences the allow-list refuses (counted as ``license``).

        Example:
            >>> licenses = Codes(); _ = licenses.code("CC0_1_0"); _ = licenses.code("CC_BY_4_0")
            >>> keep, skipped = np.ones(2, bool), Counter()
            >>> ArchiveRules(SamplingOptions(licenses=["CC0_1_0"])).drop_unlicensed(
            ...     keep, np.array([1, 2]), licenses, skipped)
            >>> keep.tolist()
            [True, False]
        """
        accept = self.license_filter
        if accept is not None:
            allowed = np.array([accept(value) for value in licenses.values], dtype=bool)
            drop(keep, ~allowed[license_of], skipped, "license")

    def first_urls(
        self, url_hash: np.ndarray, seen: SortedSet, done: np.ndarray | None = None
    ) -> np.ndarray:
        """Which media keep their URL: not in ``seen`` and the first of their URL here (in the
        order given, file order); with ``done`` (rows yielded already), those win first.
        Everything is True without dedupe.

        Example:
            >>> rules, seen = ArchiveRules(SamplingOptions()), SortedSet()
            >>> rules.first_urls(np.array([7, 8, 7]), seen).tolist()
            [True, True, False]
            >>> rules.first_urls(np.array([8, 9]), seen).tolist()
            [False, True]
        """
        if not self.options.dedupe or not url_hash.size:
            return np.ones(url_hash.size, dtype=bool)
        if done is None or not done.any():
            return seen.add(url_hash)
        first = np.ones(url_hash.size, dtype=bool)
        first[done] = seen.add(url_hash[done])
        first[~done] = seen.add(url_hash[~done])
        return first

    def media_ranks(self, keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The seeded rank (uint64) of each media from its occurrence key and its position
        among the occurrence's multimedia rows (the search source ranks the same way).

        Example:
            >>> from gbif_dl.sampling.ranks import media_rank
            >>> rank = ArchiveRules(SamplingOptions(seed=3)).media_ranks(
            ...     np.array([42]), np.array([1]))
            >>> int(rank[0]) == media_rank(3, 42, 1)
            True
        """
        return media_ranks(self.options.seed, keys, positions)

    def one_per_occurrence(self, groups: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """Positions (ascending) of the media kept: all, or with one media per occurrence the
        lowest rank of each occurrence (``groups``; of equal ranks, the first).

        Example:
            >>> ArchiveRules(SamplingOptions()).one_per_occurrence(
            ...     np.array([0, 0, 1]), np.array([9, 4, 7], dtype=np.uint64)).tolist()
            [1, 2]
        """
        if not self.options.one_media_per_occurrence or not groups.size:
            return np.arange(groups.size)
        return lowest_per_group(groups, rank)

    def sample_ranks(self, rank: np.ndarray) -> np.ndarray:
        """The seeded order in which a stream's media fill its quota.

        Example:
            >>> ArchiveRules(SamplingOptions(seed=1)).sample_ranks(np.array([5], np.uint64)).dtype
            dtype('uint64')
        """
        return splitmix64(rank ^ np.uint64(seed_value(self.options.seed, _SAMPLE_SALT)))


@dataclass
class CheckedMedia:
    """The rows of a multimedia batch that can become records (see :func:`check_media`).

    Attributes:
        index: the rows kept (int64, ascending, positions in the batch).
        keys: their occurrence keys (int64).
        positions: their places among their occurrence's rows (int64, see ``MediaPositions``).
        runs: their run numbers (for ``MediaPositions.finish``).
        urls: the whole batch's identifiers, trimmed.
        repeated: an occurrence's rows came back after another's (see ``MediaPositions``).
    """

    index: np.ndarray
    keys: np.ndarray
    positions: np.ndarray
    runs: np.ndarray
    urls: pa.Array
    repeated: bool


def check_media(
    batch: pa.RecordBatch,
    mediatype: str | None,
    stats: ArchiveStats,
    places: MediaPositions,
) -> CheckedMedia:
    """The rows of a multimedia batch with an id, an identifier, the media type and a valid
    http(s) URL; the others are counted in ``stats`` by reason. Every row with an id counts
    in ``places`` (the media positions count all of an occurrence's rows).

    Example:
        >>> checked = check_media(batch, "StillImage", stats, places)  # doctest: +SKIP
    """
    skipped = stats.skipped
    n = batch.num_rows
    stats.media_rows += n
    ids, ws = trim_ids(batch.column("_id"))
    stats.id_whitespace += ws
    urls = trim(batch.column("identifier"))
    has_id = lengths(ids) > 0
    keep = has_id.copy()
    if not keep.all():
        skipped["missing_id"] += int(n - np.count_nonzero(keep))
    drop(keep, lengths(urls) == 0, skipped, "missing_identifier")
    if mediatype is not None:
        types = trim(batch.column("type"))
        drop(keep, lengths(types) == 0, skipped, "missing_type")
        drop(keep, ~equals(types, mediatype), skipped, "other_type")
    simple = simple_urls(urls)
    for i in np.flatnonzero(keep & ~simple).tolist():  # rare: check the odd ones exactly
        if not is_http_url(urls[i].as_py()):
            keep[i] = False
            skipped["invalid_url"] += 1
    index = np.flatnonzero(keep)
    if has_id.all():
        keys = to_keys(ids)
        chosen = index
    else:
        id_rows = np.flatnonzero(has_id)
        keys = to_keys(ids.take(arrow_int64(id_rows)))
        chosen = np.searchsorted(id_rows, index)
    positions, runs, repeated = places.add(keys)
    return CheckedMedia(index, keys[chosen], positions[chosen], runs[chosen], urls, repeated)

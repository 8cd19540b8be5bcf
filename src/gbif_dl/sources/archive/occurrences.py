"""The occurrence file as compact messages: int64 keys and int32 dictionary codes per column.

Both the three-pass reader (:func:`scan_occurrences`) and the streaming join (through a
:class:`Window`, the messages possibly coming from a worker process) consume the messages of
:func:`occurrence_messages`.

Example:
    >>> first = next(occurrence_messages(reader, zf, core, ["speciesKey"]))  # doctest: +SKIP
    >>> sorted(first)                                                        # doctest: +SKIP
    ['codes', 'keys', 'new', 'odd', 'rows', 'ws']
"""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.sources.archive.columns import (
    Codes,
    arrow_int64,
    lengths,
    mask,
    to_keys,
    trim,
    trim_ids,
)
from gbif_dl.sources.archive.members import MemberReader

if TYPE_CHECKING:
    from gbif_dl.sources.archive.meta import DataFileSpec
    from gbif_dl.sources.archive.source import ArchiveStats

__all__ = ["Occurrences", "Window", "occurrence_messages", "scan_occurrences"]

EMPTY = np.empty(0, dtype=np.int64)


@dataclass
class Occurrences:
    """Occurrences that carry candidate media, columns as int32 codes into ``dictionaries``.

    Attributes:
        keys: int64 occurrence keys (sorted by key after the three-pass scan).
        codes: column name -> int32 codes, one per occurrence.
        dictionaries: column name -> its :class:`Codes`.
        odd_ids: key -> id text, for ids that are not plain integers.
    """

    keys: np.ndarray
    codes: dict[str, np.ndarray]
    dictionaries: dict[str, Codes]
    odd_ids: dict[int, str]


def _message(
    batch: pa.RecordBatch, wanted: Sequence[str], dictionaries: dict[str, Codes]
) -> dict[str, Any]:
    n = batch.num_rows
    ids, ws = trim_ids(batch.column("_id"))
    valid = lengths(ids) > 0
    if not valid.all():
        take = arrow_int64(np.flatnonzero(valid))
        batch, ids = batch.take(take), ids.take(take)
    keys = to_keys(ids)
    odd: dict[int, str] = {}
    canonical = pc.equal(arrow_int64(keys).cast(pa.string()), ids)
    if not pc.all(canonical).as_py():  # ids that are not plain integers: keep the text
        for k in np.flatnonzero(~mask(canonical)).tolist():
            odd[int(keys[k])] = ids[k].as_py()
    codes: dict[str, np.ndarray] = {}
    new: dict[str, list[str]] = {}
    for name in wanted:
        dictionary = dictionaries[name]
        before = len(dictionary.values)
        if name in batch.schema.names:
            codes[name] = dictionary.encode(trim(batch.column(name)))
        else:
            codes[name] = np.zeros(keys.size, dtype=np.int32)
        new[name] = dictionary.values[before:]
    return {"keys": keys, "codes": codes, "new": new, "odd": odd, "rows": n, "ws": ws}


def occurrence_messages(
    reader: MemberReader, archive: zipfile.ZipFile, core: DataFileSpec, wanted: Sequence[str]
) -> Generator[dict[str, Any], None, None]:
    """The occurrence rows with an id, batch by batch, as compact messages.

    Each message has the rows' ``keys`` (int64), the ``codes`` (int32) of each ``wanted``
    column, the dictionary values ``new`` in this batch (codes are positions in the
    dictionary grown message by message, 0 is ``""``), the text of ``odd`` ids (not plain
    integers), the ``rows`` read and the ids with stray whitespace (``ws``). The last
    message is ``{"end": True, "skipped": {...}}``.

    Example:
        >>> messages = occurrence_messages(reader, zf, core, ["speciesKey"])  # doctest: +SKIP
    """
    dictionaries = {name: Codes() for name in wanted}
    skipped: Counter[str] = Counter()
    batches = reader.batches(archive, core, wanted, "invalid_occurrence_row", skipped=skipped)
    for batch in batches:
        yield _message(batch, wanted, dictionaries)
    yield {"end": True, "skipped": dict(skipped)}


class Window:
    """Occurrence messages as one growing :class:`Occurrences`.

    The feed's dictionaries are mirrored; licence codes are translated into the licence
    dictionary shared with the multimedia rows, so the two licences compare as codes. The
    streaming join keeps only the occurrences it has not passed yet (from ``start`` on).

    Example:
        >>> window = Window(["license"], Codes())
        >>> window.occ.keys.size, window.done
        (0, False)
    """

    def __init__(self, wanted: Sequence[str], licenses: Codes) -> None:
        self.licenses = licenses
        dictionaries = {name: (licenses if name == "license" else Codes()) for name in wanted}
        codes = {name: np.empty(0, dtype=np.int32) for name in wanted}
        self.occ = Occurrences(EMPTY, codes, dictionaries, {})
        self._license_map = np.zeros(1, dtype=np.int32)
        self.start = 0
        self.done = False

    def receive(self, message: Mapping[str, Any], stats: ArchiveStats) -> bool:
        """Count ``message`` and grow the dictionaries; ``False`` for the end of the feed."""
        if message.get("end"):
            stats.skipped.update(message["skipped"])
            self.done = True
            return False
        stats.occurrences += message["rows"]
        stats.id_whitespace += message["ws"]
        for name, values in message["new"].items():
            if name == "license":
                codes = np.fromiter(map(self.licenses.code, values), np.int32, len(values))
                self._license_map = np.concatenate([self._license_map, codes])
            else:
                self.occ.dictionaries[name].extend(values)
        self.occ.odd_ids.update(message["odd"])
        return True

    def translate(self, name: str, codes: np.ndarray) -> np.ndarray:
        """A message's codes of column ``name`` as codes of this window's dictionary."""
        return self._license_map[codes] if name == "license" else codes

    def append(self, message: Mapping[str, Any]) -> int:
        """Add a received message's occurrences after the ones not passed yet; their count."""
        occ, start = self.occ, self.start
        occ.keys = np.concatenate([occ.keys[start:], message["keys"]])
        for name, codes in message["codes"].items():
            occ.codes[name] = np.concatenate([occ.codes[name][start:], self.translate(name, codes)])
        self.start = 0
        return int(message["keys"].size)

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """Positions of ``keys`` among the occurrences not passed yet (-1: not there)."""
        pending = self.occ.keys[self.start :]
        order = np.argsort(pending, kind="stable")  # equal keys: the first in file order
        ordered = pending[order]
        if not ordered.size:
            return np.full(keys.size, -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(ordered, keys), ordered.size - 1)
        return np.where(ordered[at] == keys, order[at] + self.start, -1)


def scan_occurrences(
    messages: Generator[dict[str, Any], None, None],
    wanted: Sequence[str],
    media_keys: np.ndarray,
    licenses: Codes,
    stats: ArchiveStats,
) -> Occurrences:
    """Pass 2: the occurrences that carry candidate media (``media_keys``, sorted), by key.

    Example:
        >>> occ = scan_occurrences(messages, ["license"], keys, Codes(), stats)  # doctest: +SKIP
    """
    wanted = list(dict.fromkeys(wanted))
    window = Window(wanted, licenses)
    key_parts: list[np.ndarray] = []
    code_parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    for message in messages:
        if not window.receive(message, stats):
            break
        keys = message["keys"]
        if media_keys.size:
            at = np.minimum(np.searchsorted(media_keys, keys), media_keys.size - 1)
            keep = media_keys[at] == keys
        else:
            keep = np.zeros(keys.size, dtype=bool)
        if not keep.any():
            continue
        key_parts.append(keys[keep])
        for name in wanted:
            code_parts[name].append(window.translate(name, message["codes"][name])[keep])
    occ = window.occ
    if not key_parts:
        occ.codes = {name: np.empty(0, np.int32) for name in wanted}
        return occ
    keys = np.concatenate(key_parts)
    del key_parts
    # GBIF writes occurrences in key order: then there is nothing to sort
    order = None if bool(np.all(keys[1:] >= keys[:-1])) else np.argsort(keys, kind="stable")
    for name in wanted:
        column = np.concatenate(code_parts.pop(name))
        occ.codes[name] = column if order is None else column[order]
    occ.keys = keys if order is None else keys[order]
    return occ

"""Records of the chosen media rows: the one record rule, applied to whole columns.

The attribution fields follow :data:`gbif_dl.records.ATTRIBUTION_RULES` (through
:func:`~gbif_dl.sources.archive.rules.first_present`), the keys are
:data:`gbif_dl.records.RECORD_FIELDS` (without :data:`~gbif_dl.records.LICENSE_FIELDS` when
``license_info=False``): the records equal those :func:`gbif_dl.records.media_record` gives for
the same media and occurrence.

Example:
    >>> builder = RecordBuilder(occ, license_info=True)          # doctest: +SKIP
    >>> records = builder.records(media, o, license_of, labels)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.records import (
    LICENSE_FIELDS,
    RECORD_FIELDS,
    MediaRecord,
    license_code_of,
    url_basename,
)
from gbif_dl.sources.archive.columns import arrow_int64, mask, numpy_view, pick
from gbif_dl.sources.archive.occurrences import Occurrences
from gbif_dl.sources.archive.rules import first_present, present

if TYPE_CHECKING:
    from gbif_dl.sources.archive.source import ArchiveStats

__all__ = ["MEDIA_FIELDS", "OCCURRENCE_FIELDS", "RecordBuilder", "python_strings"]

#: Occurrence columns copied into every record (besides the label and split columns).
OCCURRENCE_FIELDS = (
    "datasetKey",
    "scientificName",
    "speciesKey",
    "taxonKey",
    "license",
    "rightsHolder",
    "publisher",
)
#: The multimedia columns records are built from (besides the identifier).
MEDIA_FIELDS = ("format", "references", "creator", "publisher", "license", "rightsHolder")
#: The multimedia columns taken from the rows (the licence comes as a dictionary code).
RECORD_MEDIA_FIELDS = tuple(name for name in MEDIA_FIELDS if name != "license")
_INT_FIELDS = ("speciesKey", "taxonKey")
#: Columns this long with at most a quarter distinct values convert through their dictionary.
_DICTIONARY_MIN_ROWS = 256


def python_strings(values: pa.Array) -> list[Any]:
    """A string column (nulls allowed) as Python values; a column with few distinct values
    (format, publisher, licence holder...) is decoded through its dictionary, one string
    object per distinct value.

    Example:
        >>> python_strings(pa.array(["a", None]))
        ['a', None]
    """
    if len(values) >= _DICTIONARY_MIN_ROWS:
        decoded = _through_dictionary(values)
        if decoded is not None:
            return decoded
    strings: list[Any] = values.to_pylist()
    return strings


def _through_dictionary(values: pa.Array) -> list[Any] | None:
    """``values`` decoded through their dictionary, or None when over a quarter are distinct."""
    encoded = pc.dictionary_encode(values)
    if len(encoded.dictionary) * 4 > len(values):
        return None
    distinct = [*encoded.dictionary.to_pylist(), None]
    index = numpy_view(encoded.indices)
    if encoded.indices.null_count:  # nulls: the None after the distinct values
        index = np.where(mask(pc.is_null(encoded.indices)), len(distinct) - 1, index)
    return pick(distinct, index)


def _int_or_none(text: str) -> int | str | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


class RecordBuilder:
    """Turns chosen media rows plus their occurrence codes into MediaRecords.

    Example:
        >>> records = RecordBuilder(occ, license_info=False).records(  # doctest: +SKIP
        ...     media, o, license_of, labels)
    """

    def __init__(
        self, occ: Occurrences, *, license_info: bool, stats: ArchiveStats | None = None
    ) -> None:
        self.occ = occ
        self.stats = stats  # counts the records yielded, if given
        self.license_info = license_info
        self.licenses: list[str | None] = []  # by licence code: the text, None for ""
        self.license_codes: list[str | None] = []  # by licence code: the normalised licence
        self.texts: dict[str, list[str | None]] = {}  # by column: the text, None for ""
        self.ints: dict[str, list[Any]] = {name: [] for name in _INT_FIELDS}

    def _sync(self) -> None:
        """Extend the per-code tables to values the dictionaries gained since last time."""
        licenses = self.occ.dictionaries["license"].values
        for value in licenses[len(self.licenses) :]:
            self.licenses.append(value or None)
            self.license_codes.append(license_code_of(value or None))
        for name, table in self.ints.items():
            values = self.occ.dictionaries[name].values
            table.extend(_int_or_none(value) for value in values[len(table) :])

    def values(self, name: str, o: np.ndarray) -> list[Any]:
        """Occurrence column ``name`` for occurrence positions ``o`` (None where empty).

        Example:
            >>> builder.values("datasetKey", np.array([0]))  # doctest: +SKIP
            ['50c9509d-22c7-4a22-a47d-8c48425ef4a7']
        """
        if not name:
            return [None] * o.size
        values = self.occ.dictionaries[name].values
        table = self.texts.setdefault(name, [])
        table.extend(value or None for value in values[len(table) :])
        return pick(table, self.occ.codes[name][o])

    def _gbif_ids(self, o: np.ndarray) -> list[str]:
        keys = self.occ.keys[o]
        odd = self.occ.odd_ids
        if odd:
            return [odd.get(k) or str(k) for k in keys.tolist()]
        ids: list[str] = pc.cast(arrow_int64(keys), pa.string()).to_pylist()  # faster than str()
        return ids

    def _attribution(self, media: Mapping[str, pa.Array], o: np.ndarray) -> dict[str, list[Any]]:
        """``publisher`` and ``rightsHolder`` of each media by ATTRIBUTION_RULES."""
        occ = self.occ
        occurrence = {
            name: occ.dictionaries[name].arrow(occ.codes[name][o])
            for name in ("publisher", "rightsHolder")
        }
        sides = {"media": media, "occurrence": occurrence}
        return {
            name: python_strings(first_present(name, sides))
            for name in ("publisher", "rightsHolder")
        }

    def records(
        self,
        media: Mapping[str, Any],
        o: np.ndarray,
        license_of: np.ndarray,
        labels: Sequence[Any],
    ) -> Iterator[MediaRecord]:
        """One record per chosen media, in the order given.

        ``media`` has the rows' trimmed ``identifier`` (arrow, or a list of str) and
        :data:`RECORD_MEDIA_FIELDS` columns (arrow, trimmed); ``o`` their occurrences'
        positions, ``license_of`` their licence codes (the rule applied), ``labels`` theirs.
        """
        self._sync()
        identifiers = media["identifier"]
        urls: list[str] = (
            identifiers.to_pylist() if isinstance(identifiers, pa.Array) else list(identifiers)
        )
        columns: dict[str, Any] = {
            "url": urls,
            "basename": map(url_basename, urls),
            "label": labels,
            "subset": [None] * len(urls),
            "creator": python_strings(present(media["creator"])),
            "references": python_strings(present(media["references"])),
            "format": python_strings(present(media["format"])),
            "gbifID": self._gbif_ids(o),
            "datasetKey": self.values("datasetKey", o),
            "speciesKey": pick(self.ints["speciesKey"], self.occ.codes["speciesKey"][o]),
            "taxonKey": pick(self.ints["taxonKey"], self.occ.codes["taxonKey"][o]),
            "scientificName": self.values("scientificName", o),
        }
        if self.license_info:
            columns.update(self._attribution(media, o))
            codes = license_of.tolist()
            columns["license"] = [self.licenses[c] for c in codes]
            columns["license_code"] = [self.license_codes[c] for c in codes]
        else:
            columns.update(dict.fromkeys(LICENSE_FIELDS, columns["url"]))  # dropped below
        return self._rows(zip(*(columns[name] for name in RECORD_FIELDS), strict=True))

    def _rows(self, rows: Iterator[tuple[Any, ...]]) -> Iterator[MediaRecord]:
        """The records of ``rows`` (values in :data:`~gbif_dl.records.RECORD_FIELDS` order;
        a dict display builds a record several times faster than ``dict(zip(...))``)."""
        strip = not self.license_info
        n = 0  # records handed out, counted even when the consumer stops early
        try:
            for (url, basename, label, subset, publisher, license, rights_holder, creator,
                 references, media_format, gbif_id, dataset_key, species_key, taxon_key,
                 scientific_name, license_code) in rows:  # fmt: skip
                n += 1
                record = {
                    "url": url,
                    "basename": basename,
                    "label": label,
                    "subset": subset,
                    "publisher": publisher,
                    "license": license,
                    "rightsHolder": rights_holder,
                    "creator": creator,
                    "references": references,
                    "format": media_format,
                    "gbifID": gbif_id,
                    "datasetKey": dataset_key,
                    "speciesKey": species_key,
                    "taxonKey": taxon_key,
                    "scientificName": scientific_name,
                    "license_code": license_code,
                }
                if strip:  # license_info=False
                    for key in LICENSE_FIELDS:
                        del record[key]
                yield record
        finally:
            if self.stats is not None:
                self.stats.records += n

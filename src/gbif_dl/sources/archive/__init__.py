"""Darwin Core Archive source: fetch a GBIF download and stream its media as MediaRecords.

The reader, one room per job:

- :mod:`.inflate`: every zip member (``meta.xml`` too, any compression method) read through
  one bounded stream;
- :mod:`.meta`: ``meta.xml`` (the occurrence core, the multimedia extension, their columns);
- :mod:`.members`: a data member cut at line ends, parsed by arrow;
- :mod:`.columns`: vectorised column helpers (keys, trimming, sets, media positions);
- :mod:`.occurrences`: the occurrence file as compact messages; :mod:`.worker` reads them in
  a worker process for big archives;
- :mod:`.rules`: the decisions both readers share (labels, licences, URL dedupe, seeded ranks);
- :mod:`.build`: records by the one record rule of :mod:`gbif_dl.records`;
- :mod:`.join`: the one-pass streaming join; :mod:`.passes`: the three-pass reader;
- :mod:`.source`: :class:`ArchiveSource` and :class:`ArchiveStats`;
- :mod:`.resolve`: download key / DOI / URL / path to a local zip, and new downloads.

Example:
    >>> src = ArchiveSource("tests/data/dwca-0022697-200613084148143.zip")  # doctest: +SKIP
    >>> recs = list(src.records(label="speciesKey"))                        # doctest: +SKIP
"""

from gbif_dl.sources.archive.inflate import MAX_COMPRESSION_RATIO
from gbif_dl.sources.archive.members import DEFAULT_BATCH_ROWS, DEFAULT_BLOCK_SIZE
from gbif_dl.sources.archive.meta import MULTIMEDIA_ROW_TYPE, OCCURRENCE_ROW_TYPE, DataFileSpec
from gbif_dl.sources.archive.resolve import (
    MEDIALESS_FORMATS,
    ResolvedArchive,
    create_download,
    default_cache_dir,
    resolve_archive,
)
from gbif_dl.sources.archive.source import WORKER_MIN_BYTES, ArchiveSource, ArchiveStats

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_BLOCK_SIZE",
    "MAX_COMPRESSION_RATIO",
    "MEDIALESS_FORMATS",
    "MULTIMEDIA_ROW_TYPE",
    "OCCURRENCE_ROW_TYPE",
    "WORKER_MIN_BYTES",
    "ArchiveSource",
    "ArchiveStats",
    "DataFileSpec",
    "ResolvedArchive",
    "create_download",
    "default_cache_dir",
    "resolve_archive",
]

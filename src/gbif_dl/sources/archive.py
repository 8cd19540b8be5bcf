"""Darwin Core Archive source: fetch a GBIF download and stream its media as MediaRecords.

The parser reads ``meta.xml`` to find the occurrence core, the GBIF multimedia extension and
their columns (never positions assumed), and streams both files straight out of the zip with
``pyarrow.csv`` (tab separated, *no* quote character: GBIF values contain literal ``"``), deflated
members inflated by ISA-L where installed. Memory stays bounded whatever the archive size.

One pass, when a label column is asked for and there are no quotas: GBIF writes the multimedia
rows in the order of their occurrences, so both files stream side by side (the occurrence file,
the big one, parsed by a worker process for big archives, see ``_occurrence_worker``) and each
batch of media rows is joined to the occurrences read so far, checked, deduplicated by URL, one
media chosen per occurrence, and turned into records at once. Memory grows by 8 bytes per media
(the URL set).

Three passes otherwise (quotas need every candidate first; ``label=None`` emits whole occurrence
rows; an archive found out of order hands over to them midway, without repeating a record); the
join does not rely on file order:

1. multimedia pass: rows that pass the type, identifier and URL checks are kept as a few compact
   numpy columns (file row number, occurrence key, URL hash, licence code);
2. occurrence pass: only occurrences that carry such media are kept, each needed column
   dictionary-encoded to ``int32`` codes;
3. join, licence filter, URL dedupe, one media per occurrence and stream quotas, all vectorised;
4. emit pass: the multimedia file is streamed again and only the chosen rows become records,
   in file order (deterministic for a ``seed``).

Both decide every row alike: the same checks, the first of repeated URLs in file order, the same
seeded choice per occurrence, records in multimedia file order.

Messy rows (missing identifier or type, wrong column count, stray whitespace in ids) are
skipped or repaired and counted in :class:`ArchiveStats`, never fatal.

Example:
    >>> src = ArchiveSource("tests/data/dwca-0022697-200613084148143.zip")  # doctest: +SKIP
    >>> recs = list(src.records(label="speciesKey"))                        # doctest: +SKIP
    >>> src.stats.records == len(recs)                                        # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import math
import os
import queue
import re
import struct
import sys
import threading
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gbif_dl._memory import jemalloc_pool, release_memory
from gbif_dl.errors import ArchiveError, ConfigError
from gbif_dl.records import MediaRecord, is_http_url, normalize_license, safe_component
from gbif_dl.sampling.filters import LicenseFilter

if TYPE_CHECKING:
    from gbif_dl.sources._occurrence_worker import _Process

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_BLOCK_SIZE",
    "ArchiveSource",
    "ArchiveStats",
    "DataFileSpec",
    "ResolvedArchive",
    "default_cache_dir",
    "resolve_archive",
]

logger = logging.getLogger(__name__)

#: What inflates deflated members: ``isal_zlib`` or ``zlib`` (same API).
_INFLATE: Any
try:  # ISA-L: the same API as zlib, several times faster to inflate
    from isal import isal_zlib as _INFLATE
except ImportError:  # pragma: no cover - isal is a dependency; zlib where it cannot install
    _INFLATE = zlib

OCCURRENCE_ROW_TYPE = "http://rs.tdwg.org/dwc/terms/Occurrence"
MULTIMEDIA_ROW_TYPE = "http://rs.gbif.org/terms/1.0/Multimedia"

#: A quarter of the CSV text inflated and parsed at a time (a chunk of ``4 * block_size``
#: bytes, cut at a line end, which arrow parses in two blocks).
DEFAULT_BLOCK_SIZE = 1 << 18
#: Rows processed together (of the few columns kept); larger is faster, smaller leaner.
DEFAULT_BATCH_ROWS = 1 << 14
#: Occurrence files at least this large (uncompressed bytes) are read by a worker process
#: while the main one reads the multimedia file (below, starting a process costs more).
WORKER_MIN_BYTES = 64 << 20
#: Batches between two hand-backs of freed memory to the OS (see ``release_memory``): every
#: 64 rather than 16 is 2% faster on the 1,000,000-occurrence benchmark at the same peak RSS.
_RELEASE_EVERY = 64
#: A member whose declared size exceeds its compressed size this many times is refused.
MAX_COMPRESSION_RATIO = 1000
_MAX_META_BYTES = 16 << 20
#: A data file line longer than this is refused (GBIF rows are a few KiB).
_MAX_LINE_BYTES = 64 << 20
#: Record fields that carry licence and attribution; ``license_info=False`` drops them.
LICENSE_FIELDS = ("publisher", "license", "rightsHolder", "license_code")
#: Occurrence columns copied into every record (besides the label and split columns).
_OCCURRENCE_FIELDS = (
    "datasetKey",
    "scientificName",
    "speciesKey",
    "taxonKey",
    "license",
    "rightsHolder",
    "publisher",
)
_MEDIA_FIELDS = ("format", "references", "creator", "publisher", "license", "rightsHolder")
#: The multimedia columns copied into records (the licence goes through its dictionary).
_RECORD_MEDIA_FIELDS = tuple(name for name in _MEDIA_FIELDS if name != "license")
#: Batches this small convert value by value (see ``_RecordBuilder.strings``).
_DICTIONARY_MIN_ROWS = 256
#: A column is judged varied for good only on a batch at least this large: a small batch
#: (an occurrence's media carried over, the file's last rows) has few repeats by chance.
_VARIED_MIN_ROWS = 4096
#: Columns of the candidate media rows the streaming join decides on (the other record
#: fields are taken from the parsed batches for the rows it keeps).
_CANDIDATE_COLUMNS = ("row", "key", "identifier", "license")
#: Occurrence rows the streaming join reads ahead looking for an occurrence before it gives up
#: on file order (about 44 bytes each).
_LOOKAHEAD_ROWS = 1 << 20
_INT_FIELDS = frozenset({"speciesKey", "taxonKey"})
# URLs that are certainly valid http(s) URLs; the rest go through records.is_http_url.
_SIMPLE_URL = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9._-]+(:[0-9]{1,5})?([/?#][^\x00-\x1f\x7f]*)?$"
# The same without the scan for control characters, which ``_simple_urls`` does on the bytes.
_SIMPLE_URL_START = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9._-]+(:[0-9]{1,5})?([/?#]|$)"
# A URL's scheme, host and port up to the first "/": any URL starting with such a text
# matches ``_SIMPLE_URL_START`` (ASCII only: no case folding of other letters into the class).
_URL_START = re.compile(r"[hH][tT][tT][pP][sS]?://[A-Za-z0-9._-]+(:[0-9]{1,5})?/", re.ASCII)
_MASK64 = (1 << 64) - 1
#: Bits in the URL set's bitmap of low hash bits (4 MB).
_HASH_BITS = 1 << 25
#: Arrow parses a chunk (``4 * block_size`` bytes plus the line carried over from the one
#: before) in two blocks: on a 241-column occurrence file, measured 5% less parse time than
#: four blocks of ``block_size`` for about 4 MB more (one block: 8% less for 8 MB more).
_BLOCK_SLACK = 64 << 10
#: Compressed bytes read at a time from a deflated member.
_INFLATE_CHUNK = 1 << 18


def default_cache_dir() -> Path:
    """The user's cache directory for downloaded archives (kept between runs).

    ``$GBIF_DL_CACHE`` wins; otherwise ``%LOCALAPPDATA%\\gbif-dl\\dwca`` on Windows,
    ``~/Library/Caches/gbif-dl/dwca`` on macOS and ``$XDG_CACHE_HOME/gbif-dl/dwca`` (default
    ``~/.cache``) elsewhere.

    Example:
        >>> default_cache_dir().name
        'dwca'
    """
    env = os.environ.get("GBIF_DL_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gbif-dl" / "dwca"


# --- meta.xml -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFileSpec:
    """One data file of the archive as ``meta.xml`` describes it.

    Attributes:
        location: the zip member name.
        row_type: the rowType URI.
        id_index: the column of the core ``id`` or of the extension ``coreid``.
        columns: short term name (``"identifier"``, ``"speciesKey"``) -> column index.
        delimiter: the field separator (a single character).
        encoding: the text encoding.
        header_lines: lines to skip at the top.
    """

    location: str
    row_type: str
    id_index: int
    columns: dict[str, int]
    delimiter: str = "\t"
    encoding: str = "UTF-8"
    header_lines: int = 0


def _term_name(term: str) -> str:
    return term.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def _unescape(value: str | None, default: str) -> str:
    if value is None:
        return default
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")


def _parse_file_spec(element: ET.Element, ns: str, path: str) -> DataFileSpec:
    location_el = element.find(f"{ns}files/{ns}location")
    if location_el is None or not (location_el.text or "").strip():
        raise ArchiveError(f"meta.xml of {path} names a data file without <location>", path=path)
    location = (location_el.text or "").strip()
    id_el = element.find(f"{ns}id")
    if id_el is None:
        id_el = element.find(f"{ns}coreid")
    columns: dict[str, int] = {}
    for field_el in element.findall(f"{ns}field"):
        index, term = field_el.get("index"), field_el.get("term")
        if index is None or term is None:
            continue  # a constant (default=...) column: nothing to read
        try:
            columns.setdefault(_term_name(term), int(index))
        except ValueError as exc:
            raise ArchiveError(
                f"meta.xml of {path}: field {term!r} has a non-numeric index {index!r}", path=path
            ) from exc
    try:
        id_index = int(id_el.get("index", "0")) if id_el is not None else columns.get("gbifID", 0)
    except ValueError as exc:
        raise ArchiveError(
            f"meta.xml of {path}: the id column index is not a number", path=path
        ) from exc
    delimiter = _unescape(element.get("fieldsTerminatedBy"), "\t")
    quote = element.get("fieldsEnclosedBy") or ""
    if len(delimiter) != 1:
        raise ArchiveError(
            f"{location} in {path} uses the field separator {delimiter!r}; only single-character "
            "separators are supported (GBIF writes tabs)",
            path=path,
        )
    if quote not in ("", '"', "'"):
        logger.warning("%s: ignoring unusual fieldsEnclosedBy %r", location, quote)
    try:
        header_lines = int(element.get("ignoreHeaderLines") or 0)
    except ValueError:
        header_lines = 0
    return DataFileSpec(
        location=location,
        row_type=element.get("rowType", ""),
        id_index=id_index,
        columns=columns,
        delimiter=delimiter,
        encoding=element.get("encoding") or "UTF-8",
        header_lines=max(0, header_lines),
    )


def _is_safe_member(name: str) -> bool:
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return False
    parts = PurePosixPath(name).parts
    return ".." not in parts and not (parts and parts[0].endswith(":"))


# --- statistics -----------------------------------------------------------------------------


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


# --- small vectorised helpers ---------------------------------------------------------------


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array (a stable, well-spread hash)."""
    x = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-d integer array by sorting (numpy's hash-based unique is slower)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _seed_value(seed: int | str | None, salt: int) -> np.uint64:
    text = f"{seed!r}:{salt}".encode()
    value = 1469598103934665603
    for byte in text:  # FNV-1a: stable across processes, unlike hash()
        value = ((value ^ byte) * 1099511628211) & _MASK64
    return np.uint64(value)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _combine(tables: list[pa.Table], names: list[str]) -> pa.RecordBatch:
    """The rows of ``tables`` (string columns) as one batch with ``names``, each column copied
    once into one contiguous array; missing values (a column absent from a short file) are
    ``""``."""
    arrays = []
    for column in pa.concat_tables(tables).columns:
        array = column.combine_chunks()
        arrays.append(pc.fill_null(array, "") if array.null_count else array)
    return pa.RecordBatch.from_arrays(arrays, names=names)


_NUMPY_TYPES: dict[pa.DataType, np.dtype[Any]] = {
    pa.int64(): np.dtype(np.int64),
    pa.int32(): np.dtype(np.int32),
    pa.uint8(): np.dtype(np.uint8),
}


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-width arrow array without nulls as a zero-copy numpy view.

    (``Array.to_numpy`` would import pandas, when installed, for 40 MB and a fraction of a
    second; these arrays never need it.)
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    dtype = _NUMPY_TYPES[values.type]
    data = values.buffers()[1]
    if data is None:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(
        data, dtype=dtype, count=len(values), offset=values.offset * dtype.itemsize
    )


def _arrow(values: np.ndarray) -> pa.Array:
    """An int64 numpy array as an arrow array (zero-copy, without pandas, see ``_numpy``)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), values.size, [None, pa.py_buffer(values)])


def _take(batch: pa.RecordBatch, name: str, take: pa.Array) -> pa.Array:
    """Column ``name`` of ``batch`` at the rows ``take``; empty strings where the file has no
    such column."""
    if name in batch.schema.names:
        return batch.column(name).take(take)
    offsets = pa.py_buffer(np.zeros(len(take) + 1, dtype=np.int32))
    return pa.Array.from_buffers(pa.string(), len(take), [None, offsets, pa.py_buffer(b"")])


_T = TypeVar("_T")


def _read_ahead(items: Iterator[_T], depth: int = 2) -> Generator[_T, None, None]:
    """``items`` produced by a thread, up to ``depth`` ahead of the consumer.

    The producer here inflates and parses the chunks of a member (ISA-L, zlib and arrow's
    parser release the GIL), so that work overlaps the consumer's Python work. Closing this
    generator stops the thread and waits for it, so the stream it reads can be closed next.
    """
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((False, item)):
                    return
            put((True, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((True, exc))

    thread = threading.Thread(target=produce, name="gbif-dl-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            done, value = ready.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        if not sys.is_finalizing():  # at exit the thread may never run again: do not wait
            thread.join()


def _parse_chunk(
    chunk: memoryview,
    read_options: pacsv.ReadOptions,
    parse_options: pacsv.ParseOptions,
    convert_options: pacsv.ConvertOptions,
    bad_rows: list[int],
) -> pa.Table:
    """Parse one chunk of whole lines; a line longer than arrow's block (arrow cannot parse a
    line over more than two blocks) makes the whole chunk one block. ``bad_rows[0]`` counts
    the invalid rows of the parse that succeeded."""
    options = read_options
    for attempt in range(2):
        bad_rows[0] = 0
        try:
            return pacsv.read_csv(
                pa.py_buffer(chunk),
                read_options=options,
                parse_options=parse_options,
                convert_options=convert_options,
                memory_pool=jemalloc_pool(),
            )
        except pa.ArrowInvalid as exc:
            if attempt or "straddl" not in str(exc):
                raise
            options = copy.copy(read_options)
            options.block_size = len(chunk) + 1
    raise AssertionError("unreachable")


def _read_into(stream: io.RawIOBase, view: memoryview) -> int:
    """Fill ``view`` from ``stream``; fewer bytes only at the end of the stream."""
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def _trim(strings: pa.Array) -> pa.Array:
    """``pc.utf8_trim_whitespace``, skipped when no value can start or end with whitespace.

    A value can only if its first or last byte is an ASCII control or space, or not ASCII
    (every other whitespace character is multi-byte); most columns have none, and the check
    reads two bytes per value where the trim copies them all.
    """
    if not isinstance(strings, pa.StringArray) or strings.null_count or not len(strings):
        return pc.utf8_trim_whitespace(strings)
    offsets_buffer, data_buffer = strings.buffers()[1:3]
    if data_buffer is None or not data_buffer.size:
        return strings
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[strings.offset :][: len(strings) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    # the first and last byte of each value; an empty value reads a neighbour's byte, which
    # at worst sends the column through the real trim
    first = data[np.minimum(offsets[:-1], data.size - 1)]
    last = data[np.maximum(offsets[1:] - 1, 0)]
    # as uint8, ``byte - 0x21`` wraps the controls and space (<= 0x20) above 0xDE: one test
    # finds them and the non-ASCII bytes (>= 0x7F)
    if (first - np.uint8(0x21) >= 0x5E).any() or (last - np.uint8(0x21) >= 0x5E).any():
        return pc.utf8_trim_whitespace(strings)
    return strings


def _trim_ids(raw: pa.Array) -> tuple[pa.Array, int]:
    """Ids trimmed, and how many had stray whitespace."""
    ids = _trim(raw)
    return ids, 0 if ids is raw else len(raw) - int(pc.sum(pc.equal(raw, ids)).as_py() or 0)


def _mask(values: pa.Array) -> np.ndarray:
    """A boolean arrow array (no nulls) as numpy."""
    return _numpy(pc.cast(values, pa.uint8())).view(np.bool_)


def _lengths(strings: pa.Array) -> np.ndarray:
    """Character lengths of a string array (no nulls) as numpy."""
    return _numpy(pc.utf8_length(strings))


def _equals(strings: pa.Array, value: str) -> np.ndarray:
    """``strings == value`` as numpy, through the (few) distinct values."""
    encoded = pc.dictionary_encode(strings)
    distinct = encoded.dictionary.to_pylist()
    if value not in distinct:
        return np.zeros(len(strings), dtype=bool)
    return _numpy(encoded.indices) == distinct.index(value)


def _simple_urls(urls: pa.Array) -> np.ndarray:
    """Which URLs certainly are valid http(s) URLs (``_SIMPLE_URL``); the rest need a look.

    Control characters are looked for in the batch's bytes at once: almost never there.
    """
    data = urls.buffers()[2]
    if data is None:
        return np.zeros(len(urls), dtype=bool)
    raw = np.frombuffer(data, dtype=np.uint8)
    if np.any((raw < 0x20) | (raw == 0x7F)):
        return _mask(pc.match_substring_regex(urls, _SIMPLE_URL))
    # the URLs of a batch mostly share scheme and host: those that start like the first one
    # (its start checked here once) match without the regex, which the others go through
    simple = np.zeros(len(urls), dtype=bool)
    start = _URL_START.match(urls[0].as_py()) if len(urls) else None
    if start is not None:
        simple[:] = _mask(pc.starts_with(urls, start.group(0)))
    rest = np.flatnonzero(~simple)
    if rest.size:
        others = urls.take(_arrow(rest))
        simple[rest] = _mask(pc.match_substring_regex(others, _SIMPLE_URL_START))
    return simple


def _pick(table: list[Any], index: np.ndarray) -> list[Any]:
    """``table[i]`` for each ``i`` in ``index`` (numpy gathers the objects in one C loop)."""
    return _Lookup(table).pick(index)


class _Lookup:
    """The values of a growing list mirrored in a numpy object array, to pick many at once."""

    __slots__ = ("array", "size", "values")

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.array = np.empty(0, dtype=object)
        self.size = 0

    def pick(self, index: np.ndarray) -> list[Any]:
        """``values[i]`` for each ``i`` in ``index``; values appended since last time count."""
        n = len(self.values)
        if n != self.size:
            if n > self.array.size:  # doubling: each value is copied a bounded number of times
                grown = np.empty(max(n, 2 * self.array.size), dtype=object)
                grown[: self.size] = self.array[: self.size]
                self.array = grown
            self.array[self.size : n] = self.values[self.size : n]
            self.size = n
        picked: list[Any] = self.array[index].tolist()
        return picked


def _to_keys(ids: pa.Array) -> np.ndarray:
    """Occurrence ids -> int64 keys: the integer itself, or a stable 63-bit hash of the text."""
    try:
        return _numpy(pc.cast(ids, pa.int64()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    keys = np.empty(len(ids), dtype=np.int64)
    for i, text in enumerate(ids.to_pylist()):
        try:
            keys[i] = int(text)
        except (ValueError, OverflowError):
            value = 1469598103934665603
            for byte in text.encode("utf-8", "surrogatepass"):
                value = ((value ^ byte) * 1099511628211) & _MASK64
            keys[i] = -1 - (value >> 1)  # negative: never equal to a GBIF integer id
    return keys


class _Codes:
    """Global dictionary encoding of one string column, batch by batch (code 0 is ``""``)."""

    __slots__ = ("index", "values")

    def __init__(self) -> None:
        self.values: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def code(self, value: str) -> int:
        """The code of ``value``, added to the dictionary if it is new."""
        code = self.index.get(value)
        if code is None:
            code = self.index[value] = len(self.values)
            self.values.append(value)
        return code

    def extend(self, values: Iterable[str]) -> None:
        """Append ``values`` (new to this dictionary, in code order): a mirror of another."""
        for value in values:
            self.index[value] = len(self.values)
            self.values.append(value)

    def encode(self, column: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(column)
        uniques = encoded.dictionary.to_pylist()
        mapping = np.fromiter(map(self.code, uniques), dtype=np.int32, count=len(uniques))
        return mapping[_numpy(encoded.indices)]


class _HashSet:
    """A growing set of int64 hashes kept as a few sorted arrays, merged like a binary counter.

    Eight bytes per member and no Python object per member: a batch is sorted once (which
    also finds its own repeats). A bitmap of the members' low hash bits (4 MB) answers "not a
    member" for most values at once; only those whose bit is set are searched for in the
    sorted arrays, one ``searchsorted`` per array: a fraction ``1 - exp(-members / 2**25)``
    of new values (4% at 1.5 million members, 63% at 33 million), and every member.
    """

    __slots__ = ("bits", "levels")

    def __init__(self) -> None:
        self.levels: list[np.ndarray] = []
        self.bits = np.zeros(_HASH_BITS >> 6, dtype=np.uint64)

    def add(self, values: np.ndarray) -> np.ndarray:
        """Add ``values``; True where a value is new: not a member yet, and the first of
        its equal values in ``values``."""
        order = np.argsort(values, kind="stable")  # equal values keep their input order
        needles = values[order]
        new = np.ones(values.size, dtype=bool)
        np.not_equal(needles[1:], needles[:-1], out=new[1:])
        slot = needles.view(np.uint64) & np.uint64(_HASH_BITS - 1)
        word = (slot >> np.uint64(6)).astype(np.intp)
        bit = np.left_shift(np.uint64(1), slot & np.uint64(63))
        maybe = np.flatnonzero(self.bits[word] & bit)  # the others are certainly new
        if maybe.size and self.levels:
            some = needles[maybe]
            member = np.zeros(maybe.size, dtype=bool)
            for level in self.levels:
                at = np.minimum(np.searchsorted(level, some), level.size - 1)
                member |= level[at] == some
            new[maybe[member]] = False
        np.bitwise_or.at(self.bits, word[new], bit[new])
        merged = needles[new]  # sorted, distinct
        while self.levels and self.levels[-1].size <= 2 * merged.size:
            merged = np.concatenate([self.levels.pop(), merged])
            merged.sort(kind="stable")  # in place: two sorted runs, merged
        if merged.size:
            self.levels.append(merged)
        first = np.empty(values.size, dtype=bool)
        first[order] = new
        return first


class _RowBits:
    """A bitmap of multimedia row numbers (the rows already yielded as records)."""

    __slots__ = ("bits",)

    def __init__(self) -> None:
        self.bits = np.zeros(1 << 12, dtype=np.uint8)

    def add(self, rows: np.ndarray) -> None:
        if not rows.size:
            return
        need = int(rows.max() >> 3) + 1
        if need > self.bits.size:
            grown = np.zeros(max(need, 2 * self.bits.size), dtype=np.uint8)
            grown[: self.bits.size] = self.bits
            self.bits = grown
        np.bitwise_or.at(self.bits, rows >> 3, np.left_shift(1, rows & 7).astype(np.uint8))

    def contains(self, rows: np.ndarray) -> np.ndarray:
        byte = rows >> 3
        inside = byte < self.bits.size
        found = np.zeros(rows.size, dtype=bool)
        found[inside] = (self.bits[byte[inside]] >> (rows[inside] & 7).astype(np.uint8)) & 1 == 1
        return found

    def any(self) -> bool:
        return bool(self.bits.any())


class _BoundedReader(io.RawIOBase):
    """A zip member stream that refuses to produce more bytes than the member declares."""

    def __init__(self, raw: Any, limit: int, name: str, path: str) -> None:
        super().__init__()
        self._raw = raw
        self._limit = limit
        self._count = 0
        self._name = name
        self._path = path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = int(self._raw.readinto(buffer))
        self._count += n
        if self._count > self._limit:
            raise ArchiveError(
                f"{self._name} in {self._path} decompresses to more than its declared "
                f"{self._limit} bytes; the archive is corrupt or malicious, fetch it again",
                path=self._path,
            )
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class _InflateMember(io.RawIOBase):
    """A deflated zip member, inflated as it is read; its size and CRC-32 are checked.

    ISA-L (``isal``) inflates about four times as fast as zlib on one core; zlib is the
    fallback where it is missing. More bytes than the member declares (a zip bomb), a
    truncated member or a wrong CRC-32 raise :class:`ArchiveError`.
    """

    def __init__(self, path: Path, info: zipfile.ZipInfo, where: str) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self._file.seek(info.header_offset)
            header = self._file.read(30)
            if len(header) != 30 or header[:4] != b"PK\x03\x04":
                raise ArchiveError(
                    f"{info.filename} in {where} has no valid local header; the archive is "
                    "corrupt: delete it and fetch it again",
                    path=where,
                )
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            self._file.seek(info.header_offset + 30 + name_length + extra_length)
        except BaseException:
            self._file.close()
            raise
        self._info = info
        self._where = where
        self._left = info.compress_size
        self._inflater = _INFLATE.decompressobj(-15)
        self._input = b""
        self._crc = 0
        self._size = 0

    def readable(self) -> bool:
        return True

    def _corrupt(self, what: str) -> ArchiveError:
        return ArchiveError(
            f"{self._info.filename} in {self._where} {what}; the archive is corrupt or "
            "incomplete: delete it and fetch it again",
            path=self._where,
        )

    def readinto(self, buffer: Any) -> int:
        """Inflate into ``buffer`` as much as the next compressed chunk gives (0 at the end)."""
        view = memoryview(buffer).cast("B")
        while not self._inflater.eof:
            drained = False
            if not self._input:
                chunk = self._file.read(min(_INFLATE_CHUNK, self._left)) if self._left else b""
                self._left -= len(chunk)
                self._input = chunk
                drained = not chunk  # all read: only output held back by the inflater is left
            try:
                out = self._inflater.decompress(self._input, len(view))
            except (zlib.error, _INFLATE.error) as exc:
                raise self._corrupt(f"cannot be inflated ({exc})") from exc
            self._input = self._inflater.unconsumed_tail
            if drained and not out and not self._inflater.eof:
                raise self._corrupt("ends before its compressed data does (truncated)")
            if out:
                self._size += len(out)
                if self._size > self._info.file_size:
                    raise ArchiveError(
                        f"{self._info.filename} in {self._where} inflates to more than its "
                        f"declared {self._info.file_size} bytes; the archive is corrupt or "
                        "malicious, fetch it again",
                        path=self._where,
                    )
                self._crc = _INFLATE.crc32(out, self._crc)
                view[: len(out)] = out
                return len(out)
        if self._size != self._info.file_size or self._crc != self._info.CRC:
            raise self._corrupt("does not match its size or CRC-32")
        return 0

    def close(self) -> None:
        self._file.close()
        super().close()


# --- the source -----------------------------------------------------------------------------


_EMPTY = np.empty(0, dtype=np.int64)


class _OutOfOrder(Exception):
    """The archive's multimedia rows do not follow the order of their occurrences."""


@dataclass
class _Media:
    """Compact columns of the multimedia rows that survived the row checks."""

    rows: np.ndarray  # int64 row number in the parsed multimedia file
    keys: np.ndarray  # int64 occurrence key
    url_hash: np.ndarray  # int64 hash() of the URL: compared within one run only
    license: np.ndarray  # int32 code into the licence dictionary


@dataclass
class _Occurrences:
    """Occurrences that carry candidate media, sorted by key, columns as int32 codes."""

    keys: np.ndarray
    codes: dict[str, np.ndarray]
    dictionaries: dict[str, _Codes]
    odd_ids: dict[int, str]  # key -> id text, for ids that are not plain integers


class _Window:
    """Occurrence messages as one growing ``_Occurrences`` (see ``_occurrence_messages``).

    The feed's dictionaries are mirrored; licence codes are translated into the licence
    dictionary shared with the multimedia rows, so the two licences compare as codes. The
    streaming join keeps only the occurrences it has not passed yet (from ``start`` on).
    """

    def __init__(self, wanted: Sequence[str], licenses: _Codes) -> None:
        self.licenses = licenses
        dictionaries = {name: (licenses if name == "license" else _Codes()) for name in wanted}
        codes = {name: np.empty(0, dtype=np.int32) for name in wanted}
        self.occ = _Occurrences(_EMPTY, codes, dictionaries, {})
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
        self.block_size = block_size
        self.batch_rows = batch_rows
        self.stats = ArchiveStats()
        #: One pass with the streaming join when the options allow it (no quotas, a label).
        self.streaming = True
        #: Occurrence files at least this large (uncompressed) are read in a worker process.
        self.worker_min_bytes = WORKER_MIN_BYTES
        #: How the worker starts: ``"auto"`` forks this process where that is safe (Linux,
        #: no other Python thread) and starts a new interpreter elsewhere; ``"fork"`` or
        #: ``"spawn"`` choose (a fork that cannot happen falls back to a new interpreter).
        self.worker_start: Literal["auto", "fork", "spawn"] = "auto"
        self._occurrence_process: _Process | None = None  # the last worker
        self._where = str(self.path)
        self.core, self.multimedia = self._read_meta()

    # -- opening and validation ------------------------------------------------------------

    def _open_zip(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self.path)
        except FileNotFoundError as exc:
            raise ArchiveError(f"archive {self._where} does not exist", path=self._where) from exc
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ArchiveError(
                f"{self._where} is not a valid zip file ({exc}); the download is corrupt or "
                "incomplete: delete it and fetch it again",
                path=self._where,
            ) from exc

    def _read_meta(self) -> tuple[DataFileSpec, DataFileSpec]:
        with self._open_zip() as archive:
            names = archive.namelist()
            unsafe = [name for name in names if not _is_safe_member(name)]
            if unsafe:
                raise ArchiveError(
                    f"{self._where} contains member names that escape the archive "
                    f"({unsafe[0]!r}); refusing to read it",
                    path=self._where,
                )
            meta_name = next((n for n in names if n.lower() == "meta.xml"), None)
            if meta_name is None:
                raise self._not_dwca(names)
            info = archive.getinfo(meta_name)
            if info.file_size > _MAX_META_BYTES:
                raise ArchiveError(
                    f"meta.xml of {self._where} is implausibly large", path=self._where
                )
            if info.flag_bits & 0x1:
                raise ArchiveError(
                    f"meta.xml in {self._where} is encrypted; GBIF archives never are",
                    path=self._where,
                )
            try:
                root = ET.fromstring(archive.read(meta_name))
            except (
                ET.ParseError,
                zipfile.BadZipFile,
                OSError,
                EOFError,
                NotImplementedError,  # a compression method zipfile cannot read
                zlib.error,
            ) as exc:
                raise ArchiveError(
                    f"meta.xml of {self._where} cannot be read ({exc}); the archive is corrupt",
                    path=self._where,
                ) from exc
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        core_el = root.find(f"{ns}core")
        if core_el is None:
            raise ArchiveError(f"meta.xml of {self._where} declares no <core>", path=self._where)
        core = _parse_file_spec(core_el, ns, self._where)
        if core.row_type != OCCURRENCE_ROW_TYPE:
            raise ArchiveError(
                f"the core of {self._where} is {core.row_type or 'untyped'}, not occurrences; "
                "gbif-dl reads GBIF occurrence downloads (DWCA format)",
                path=self._where,
            )
        multimedia = None
        for ext_el in root.findall(f"{ns}extension"):
            if ext_el.get("rowType") == MULTIMEDIA_ROW_TYPE:
                multimedia = _parse_file_spec(ext_el, ns, self._where)
                break
        if multimedia is None:
            raise ArchiveError(
                f"{self._where} has no multimedia extension ({MULTIMEDIA_ROW_TYPE}), so it "
                "carries no media URLs; request the download again with the multimedia "
                "extension (GBIF includes it in DWCA downloads of records with media)",
                path=self._where,
            )
        for spec in (core, multimedia):
            if not _is_safe_member(spec.location) or spec.location not in names:
                raise ArchiveError(
                    f"meta.xml of {self._where} points to {spec.location!r}, which is not a "
                    "member of the archive",
                    path=self._where,
                )
        if "identifier" not in multimedia.columns:
            raise ArchiveError(
                f"the multimedia extension of {self._where} has no dc:identifier column, so "
                "it carries no media URLs",
                path=self._where,
            )
        return core, multimedia

    def _not_dwca(self, names: Sequence[str]) -> ArchiveError:
        lowered = [n.lower() for n in names]
        kind = None
        if any(n.endswith(".parquet") for n in lowered) or any("parquet" in n for n in lowered):
            kind = "SIMPLE_PARQUET"
        elif any(n.endswith((".csv", ".tsv")) for n in lowered):
            kind = "SIMPLE_CSV"
        if kind:
            return ArchiveError(
                f"{self._where} is a {kind} download: it has no multimedia extension and "
                "carries no media URLs; request a DWCA download instead "
                "(gbif_dl.dwca.request(...) or format=DWCA on gbif.org)",
                path=self._where,
            )
        return ArchiveError(
            f"{self._where} is not a Darwin Core Archive (no meta.xml); give a GBIF DWCA download",
            path=self._where,
        )

    @property
    def columns(self) -> list[str]:
        """The occurrence columns a label or ``split_streams_by`` may name.

        Example:
            >>> "speciesKey" in ArchiveSource(path).columns  # doctest: +SKIP
            True
        """
        return sorted(self.core.columns, key=self.core.columns.__getitem__)

    # -- streaming a member ----------------------------------------------------------------

    def _batches(
        self,
        archive: zipfile.ZipFile,
        spec: DataFileSpec,
        wanted: Iterable[str],
        counter: str,
        *,
        use_threads: bool = False,
        skipped: Counter[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``spec``'s rows as record batches of the ``wanted`` columns (all strings).

        The member is inflated here, in chunks cut at line ends, and arrow parses each chunk
        from memory (``use_threads``: its blocks in parallel). Arrow never reads the Python
        stream from its own threads, which could outlive an abandoned generator and abort the
        interpreter at exit.

        Column names in the batches are the short term names; ``"_id"`` is the id column.
        Rows with a wrong number of fields are skipped and counted under ``counter`` (in
        ``skipped``, by default the source's statistics).
        """
        wanted_index = {"_id": spec.id_index}
        for name in wanted:
            if name in spec.columns:
                wanted_index[name] = spec.columns[name]
        info = archive.getinfo(spec.location)
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) and (
            info.file_size > (64 << 20)
        ):
            raise ArchiveError(
                f"{spec.location} in {self._where} claims {info.file_size} bytes from "
                f"{info.compress_size} compressed bytes; refusing a likely zip bomb",
                path=self._where,
            )
        if info.flag_bits & 0x1:
            raise ArchiveError(
                f"{spec.location} in {self._where} is encrypted; GBIF archives never are",
                path=self._where,
            )
        invalid = self.stats.skipped if skipped is None else skipped
        bad_rows = [0]  # in the chunk being parsed (counted once the chunk parses)

        def on_invalid(row: Any) -> str:
            bad_rows[0] += 1
            return "skip"

        generated = {index: f"f{index}" for index in set(wanted_index.values())}
        parse_options = pacsv.ParseOptions(
            delimiter=spec.delimiter,
            quote_char=False,
            double_quote=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=True,
            invalid_row_handler=on_invalid,
        )
        convert_options = pacsv.ConvertOptions(
            include_columns=sorted(generated.values()),
            include_missing_columns=True,
            column_types={name: pa.string() for name in generated.values()},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=True,
        )
        stream: io.RawIOBase
        if info.compress_type == zipfile.ZIP_DEFLATED:
            stream = _InflateMember(self.path, info, self._where)
        else:
            try:
                member = archive.open(spec.location)
            except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
                raise ArchiveError(
                    f"cannot open {spec.location} in {self._where} ({exc}); the archive is "
                    "corrupt: delete it and fetch it again",
                    path=self._where,
                ) from exc
            stream = _BoundedReader(member, info.file_size, spec.location, self._where)
        names = list(wanted_index)
        columns = [generated[i] for i in wanted_index.values()]

        def parsed() -> Iterator[tuple[pa.RecordBatch | None, int]]:
            """Batches of about ``batch_rows`` rows and the invalid rows counted meanwhile."""
            read_options = None
            pending: list[pa.Table] = []
            rows = bad = 0
            for first_line, chunk in self._chunks(stream, spec):
                if read_options is None:  # the column count of the file, from its first line
                    fields = first_line.count(spec.delimiter.encode(spec.encoding)) + 1
                    read_options = pacsv.ReadOptions(
                        column_names=[f"f{i}" for i in range(fields)],
                        block_size=2 * self.block_size + _BLOCK_SLACK,  # a chunk: two blocks
                        encoding=spec.encoding,
                        use_threads=use_threads,
                    )
                table = _parse_chunk(chunk, read_options, parse_options, convert_options, bad_rows)
                bad += bad_rows[0]
                if table.num_rows:
                    pending.append(table.select(columns))  # only the wanted: cheap to gather
                    rows += table.num_rows
                if rows >= self.batch_rows:
                    yield _combine(pending, names), bad
                    pending, rows, bad = [], 0, 0
            if pending or bad:
                yield (_combine(pending, names) if pending else None), bad

        # inflating, parsing and gathering rows into batches (arrow and the inflaters release
        # the GIL) run ahead in a thread of their own
        batches = _read_ahead(parsed(), depth=1)
        yielded = 0
        try:
            for batch, bad in batches:
                if bad:
                    invalid[counter] += bad
                if batch is None:
                    continue
                yield batch
                yielded += 1
                if yielded % _RELEASE_EVERY == 0:
                    release_memory()
        except ArchiveError:
            raise
        except (pa.ArrowInvalid, zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ArchiveError(
                f"cannot read {spec.location} in {self._where} ({exc}); the archive is corrupt "
                "or not a GBIF download: delete it and fetch it again",
                path=self._where,
            ) from exc
        finally:
            batches.close()  # stops the read-ahead thread before its stream closes
            stream.close()

    def _chunks(
        self, stream: io.RawIOBase, spec: DataFileSpec
    ) -> Iterator[tuple[bytes, memoryview]]:
        """The member's data lines, about ``block_size * 4`` bytes at a time, each chunk
        ending at a line end; with the file's first line (header or first row). A chunk is
        only valid until the next one is asked for (they share one buffer)."""
        size = 4 * self.block_size
        rest = b""
        first_line = b""
        skip = spec.header_lines
        buffer = bytearray()
        while True:
            want = len(rest) + size
            if not want <= len(buffer) <= 4 * want:
                buffer = bytearray(want)
            # else the buffer is reused: the chunk it held was parsed (arrow copies the values)
            buffer[: len(rest)] = rest
            filled = len(rest) + _read_into(stream, memoryview(buffer)[len(rest) : want])
            end = filled == len(rest) or filled < want
            view = memoryview(buffer)[:filled]
            start = 0
            if not first_line:
                cut = buffer.find(b"\n", 0, filled)
                if cut >= 0 or end:
                    first_line = bytes(view[: cut if cut >= 0 else filled])
            while skip:  # header lines
                cut = buffer.find(b"\n", start, filled)
                if cut < 0:
                    break
                start, skip = cut + 1, skip - 1
            last = filled if end else buffer.rfind(b"\n", start, filled) + 1
            if not end and (skip or last <= start):  # a line longer than the buffer
                if filled > _MAX_LINE_BYTES:
                    raise ArchiveError(
                        f"{spec.location} in {self._where} has a line longer than "
                        f"{_MAX_LINE_BYTES} bytes; it is not a GBIF data file",
                        path=self._where,
                    )
                rest, size = bytes(view[start:]), 2 * size
                continue
            if last > start:
                yield first_line, view[start:last]
            if end:
                return
            rest, size = bytes(view[last:]), 4 * self.block_size

    # -- the passes ------------------------------------------------------------------------

    def _filter_media(
        self, batch: pa.RecordBatch, mediatype: str | None
    ) -> tuple[np.ndarray, pa.Array, pa.Array]:
        """The rows of a multimedia batch that can become records: (index, ids, urls).

        ``ids`` and ``urls`` are the whole batch's, trimmed; rows failing a check are counted.
        """
        stats = self.stats
        skipped = stats.skipped
        n = batch.num_rows
        stats.media_rows += n
        ids, ws = _trim_ids(batch.column("_id"))
        stats.id_whitespace += ws
        urls = _trim(batch.column("identifier"))
        keep = np.ones(n, dtype=bool)
        has_id = _lengths(ids) > 0
        _drop(keep, ~has_id, skipped, "missing_id")
        has_url = _lengths(urls) > 0
        _drop(keep, ~has_url, skipped, "missing_identifier")
        if mediatype is not None:
            types = _trim(batch.column("type"))
            has_type = _lengths(types) > 0
            _drop(keep, ~has_type, skipped, "missing_type")
            same = _equals(types, mediatype)
            _drop(keep, ~same, skipped, "other_type")
        simple = _simple_urls(urls)
        for i in np.flatnonzero(keep & ~simple).tolist():  # rare: check the odd ones exactly
            if not is_http_url(urls[i].as_py()):
                keep[i] = False
                skipped["invalid_url"] += 1
        return np.flatnonzero(keep), ids, urls

    def _scan_media(
        self, archive: zipfile.ZipFile, mediatype: str | None, licenses: _Codes
    ) -> _Media:
        """Pass 1: the multimedia rows that can become records, as compact numpy columns."""
        chunks: list[tuple[np.ndarray, ...]] = []
        row0 = 0
        wanted = ("type", "identifier", "license")
        for batch in self._batches(archive, self.multimedia, wanted, "invalid_row"):
            index, ids, urls = self._filter_media(batch, mediatype)
            if index.size:
                take = _arrow(index)
                kept_urls = urls.take(take).to_pylist()
                url_hash = np.fromiter(map(hash, kept_urls), dtype=np.int64, count=index.size)
                del kept_urls
                chunks.append(
                    (
                        index.astype(np.int64) + row0,
                        _to_keys(ids.take(take)),
                        url_hash,
                        licenses.encode(_trim(batch.column("license").take(take))),
                    )
                )
            row0 += batch.num_rows
        if not chunks:
            empty = np.empty(0, dtype=np.int64)
            return _Media(empty, empty, empty, np.empty(0, dtype=np.int32))
        release_memory()
        columns = []
        for k in range(4):  # one column at a time: the peak is the total plus one column
            columns.append(np.concatenate([chunk[k] for chunk in chunks]))
            chunks = [(*chunk[:k], np.empty(0), *chunk[k + 1 :]) for chunk in chunks]
        return _Media(*columns)

    def _occurrence_messages(
        self, archive: zipfile.ZipFile, wanted: Sequence[str]
    ) -> Generator[dict[str, Any], None, None]:
        """The occurrence rows with an id, batch by batch, as compact messages.

        Each message has the rows' ``keys`` (int64), the ``codes`` (int32) of each ``wanted``
        column, the dictionary values ``new`` in this batch (codes are positions in the
        dictionary grown message by message, 0 is ``""``), the text of ``odd`` ids (not plain
        integers), the ``rows`` read and the ids with stray whitespace (``ws``). The last
        message is ``{"end": True, "skipped": {...}}``. Both the three-pass scan and the
        streaming join (in a worker process, see ``_occurrence_worker``) consume these.
        """
        dictionaries = {name: _Codes() for name in wanted}
        skipped: Counter[str] = Counter()
        batches = self._batches(
            archive, self.core, wanted, "invalid_occurrence_row", skipped=skipped
        )
        for batch in batches:
            n = batch.num_rows
            ids, ws = _trim_ids(batch.column("_id"))
            valid = _lengths(ids) > 0
            if not valid.all():
                take = _arrow(np.flatnonzero(valid))
                batch, ids = batch.take(take), ids.take(take)
            keys = _to_keys(ids)
            odd: dict[int, str] = {}
            canonical = pc.equal(_arrow(keys).cast(pa.string()), ids)
            if not pc.all(canonical).as_py():  # ids that are not plain integers: keep the text
                for k in np.flatnonzero(~_mask(canonical)).tolist():
                    odd[int(keys[k])] = ids[k].as_py()
            codes: dict[str, np.ndarray] = {}
            new: dict[str, list[str]] = {}
            for name in wanted:
                dictionary = dictionaries[name]
                before = len(dictionary.values)
                if name in batch.schema.names:
                    column = _trim(batch.column(name))
                    codes[name] = dictionary.encode(column)
                else:
                    codes[name] = np.zeros(keys.size, dtype=np.int32)
                new[name] = dictionary.values[before:]
            yield {"keys": keys, "codes": codes, "new": new, "odd": odd, "rows": n, "ws": ws}
        yield {"end": True, "skipped": dict(skipped)}

    def _scan_occurrences(
        self,
        archive: zipfile.ZipFile,
        wanted: Sequence[str],
        media_keys: np.ndarray,
        licenses: _Codes,
    ) -> _Occurrences:
        """Pass 2: the occurrences that carry candidate media, sorted by key."""
        stats = self.stats
        wanted = list(dict.fromkeys(wanted))
        window = _Window(wanted, licenses)
        key_parts: list[np.ndarray] = []
        code_parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        for message in self._occurrence_messages(archive, wanted):
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

    # -- public ----------------------------------------------------------------------------

    def records(
        self,
        *,
        label: str | None = "speciesKey",
        mediatype: str | None = "StillImage",
        one_media_per_occurrence: bool = True,
        license_info: bool = True,
        split_streams_by: str | Sequence[str] | None = None,
        nb_samples: int | None = None,
        nb_samples_per_stream: int | None = None,
        weighted_streams: bool = False,
        seed: int | str | None = None,
        licenses: Iterable[str] | None = None,
        keep_unknown_licenses: bool = False,
        dedupe: bool = True,
    ) -> Iterator[MediaRecord]:
        """Stream the archive's media as MediaRecords.

        Args:
            label: the occurrence column used as label (``speciesKey``, ``scientificName``,
                ``family``...); ``None`` puts the whole occurrence row (a dict of short term
                names to strings) in ``label``, as gbif-dl 0.1 did.
            mediatype: the multimedia ``type`` to keep (``None`` keeps every type).
            one_media_per_occurrence: keep one media per occurrence, chosen from ``seed``.
            license_info: include the licence and attribution fields.
            split_streams_by: occurrence column(s) whose value combinations are the streams.
            nb_samples: total records (``-1``: the largest balanced total); ``None`` = all.
            nb_samples_per_stream: cap per stream.
            weighted_streams: quotas proportional to stream sizes instead of balanced.
            seed: makes the choice of media and samples reproducible (``None`` acts as 0).
            licenses: allowed licence codes (``CC_BY_4_0``...) or ``None`` for any licence.
            keep_unknown_licenses: with ``licenses``, also keep unrecognised licences.
            dedupe: yield each URL once (the first in file order).

        Raises:
            ConfigError: ``label`` or a split column is not an occurrence column.
            ArchiveError: the archive cannot be read.

        Example:
            >>> src = ArchiveSource(path)                                  # doctest: +SKIP
            >>> recs = src.records(label="family", nb_samples=10, seed=1)  # doctest: +SKIP
        """
        split = (
            [split_streams_by]
            if isinstance(split_streams_by, str)
            else list(split_streams_by or [])
        )
        for name in ([label] if label is not None else []) + split:
            if name not in self.core.columns:
                raise ConfigError(
                    f"{name!r} is not a column of the occurrence file of {self._where}; "
                    f"available columns: {', '.join(self.columns)}"
                )
        if mediatype is not None and "type" not in self.multimedia.columns:
            raise ArchiveError(
                f"the multimedia extension of {self._where} has no dc:type column; "
                "pass mediatype=None to keep every media",
                path=self._where,
            )
        options = _Options(
            label=label,
            mediatype=mediatype,
            one_media_per_occurrence=one_media_per_occurrence,
            license_info=license_info,
            split=split,
            nb_samples=nb_samples,
            nb_samples_per_stream=nb_samples_per_stream,
            weighted_streams=weighted_streams,
            seed=0 if seed is None else seed,
            licenses=None
            if licenses is None
            else LicenseFilter(licenses, keep_unknown=keep_unknown_licenses),
            dedupe=dedupe,
        )
        return self._records(options)

    def _records(self, options: _Options) -> Iterator[MediaRecord]:
        self.stats = stats = ArchiveStats()
        license_codes = _Codes()
        label = options.label
        wanted = list(
            dict.fromkeys([*([label] if label else []), *options.split, *_OCCURRENCE_FIELDS])
        )
        streaming = (
            self.streaming
            and label is not None
            and options.nb_samples is None
            and options.nb_samples_per_stream is None
        )
        with self._open_zip() as archive:
            yielded = _RowBits()
            if streaming:
                try:
                    for records in self._stream(archive, options, wanted, license_codes, yielded):
                        yield from records
                except _OutOfOrder as exc:
                    logger.info(
                        "%s: %s; reading the rest in three passes (%d records so far)",
                        self._where,
                        exc,
                        stats.records,
                    )
                    self.stats = stats = ArchiveStats(records=stats.records)
                    license_codes = _Codes()
                else:
                    self._log_stats()
                    return
            media = self._scan_media(archive, options.mediatype, license_codes)
            media_keys = _sorted_unique(media.keys)
            release_memory()
            occ = self._scan_occurrences(archive, wanted, media_keys, license_codes)
            del media_keys
            release_memory()
            forced = yielded if yielded.any() else None
            rows, occ_index, license_of = self._select(media, occ, options, license_codes, forced)
            del media
            release_memory()
            if label is None:
                yield from self._emit_with_rows(archive, rows, occ_index, license_of, occ, options)
            else:
                yield from self._emit(archive, rows, occ_index, license_of, occ, options)
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

    def _stream(
        self,
        archive: zipfile.ZipFile,
        options: _Options,
        wanted: Sequence[str],
        licenses: _Codes,
        yielded: _RowBits,
    ) -> Iterator[Iterator[MediaRecord]]:
        """One pass: both files read side by side, records built as the rows stream by (the
        records of each joined group in turn).

        GBIF writes the multimedia rows in the order of their occurrences, so the join only
        looks ahead a little in the occurrence file (read in a worker process for big
        archives). Rows are decided exactly as the three passes decide them (same checks, the
        first of repeated URLs in file order, the same seeded choice per occurrence); an
        occurrence's media that continue into the next batch wait for it. An archive that is
        not in that order raises ``_OutOfOrder`` before any record of the offending batch is
        yielded; ``yielded`` then tells the three passes which records are out already.
        """
        from gbif_dl.sources._occurrence_worker import open_occurrence_feed

        window = _Window(wanted, licenses)
        build = _RecordBuilder(window.occ, options, self.stats)
        seen = _HashSet()
        names = ("type", "identifier", *_MEDIA_FIELDS)
        parsed = _ParsedMedia()
        carry: pa.RecordBatch | None = None
        row0 = 0

        def join(rows: pa.RecordBatch) -> Iterator[MediaRecord]:
            return self._join(rows, parsed, window, feed, build, seen, options, yielded)

        with open_occurrence_feed(self, archive, wanted) as feed:
            media = self._batches(archive, self.multimedia, names, "invalid_row", use_threads=True)
            for batch in media:
                index, ids, urls = self._filter_media(batch, options.mediatype)
                if index.size:
                    parsed.add(row0, batch)
                    take = _arrow(index)
                    columns = [
                        _arrow(index + row0),
                        _arrow(_to_keys(ids.take(take))),
                        urls.take(take),
                        _take(batch, "license", take),
                    ]
                    fresh = pa.RecordBatch.from_arrays(columns, names=_CANDIDATE_COLUMNS)
                    keys = _numpy(fresh.column("key"))
                    if carry is not None:  # the carried occurrence's media continued?
                        other = np.flatnonzero(keys != carry.column("key")[0].as_py())
                        cut = int(other[0]) if other.size else keys.size
                        group = _concat([carry, fresh.slice(0, cut)])
                        if cut == keys.size:
                            carry = group
                            row0 += batch.num_rows
                            continue
                        yield join(group)
                        fresh, keys = fresh.slice(cut), keys[cut:]
                    # the last occurrence's media may go on in the next batch
                    other = np.flatnonzero(keys != keys[-1])
                    cut = int(other[-1]) + 1 if other.size else 0
                    carry = fresh.slice(cut)
                    if cut:
                        yield join(fresh.slice(0, cut))
                    parsed.forget_before(carry.column("row")[0].as_py())
                row0 += batch.num_rows
            if carry is not None:
                yield join(carry)
            for message in feed:  # the rest of the file, for the statistics
                if not window.receive(message, self.stats):
                    break

    def _join(
        self,
        rows: pa.RecordBatch,
        parsed: _ParsedMedia,
        window: _Window,
        feed: Iterator[dict[str, Any]],
        build: _RecordBuilder,
        seen: _HashSet,
        options: _Options,
        yielded: _RowBits,
    ) -> Iterator[MediaRecord]:
        """Decide one batch of candidate media rows (whole occurrences): their records."""
        stats = self.stats
        skipped = stats.skipped
        keys = _numpy(rows.column("key"))
        last = keys[-1]
        pending = window.occ.keys.size - window.start
        found = bool(np.any(window.occ.keys[window.start :] == last))
        while not found and not window.done:  # read on until the batch's last occurrence
            if pending > _LOOKAHEAD_ROWS:
                raise _OutOfOrder(f"no occurrence {last} within {_LOOKAHEAD_ROWS} rows")
            message = next(feed, None)
            if message is None or not window.receive(message, stats):
                window.done = True
                break
            pending += window.append(message)
            found = bool(np.any(message["keys"] == last))
        pos = window.locate(keys)
        if (pos < 0).any():
            missing = int(keys[np.flatnonzero(pos < 0)[0]])
            raise _OutOfOrder(f"the media of occurrence {missing} are not in occurrence order")
        occ = window.occ
        keep = np.ones(keys.size, dtype=bool)
        if options.label is not None:
            _drop(keep, occ.codes[options.label][pos] == 0, skipped, "missing_label")
        for name in options.split:
            _drop(keep, occ.codes[name][pos] == 0, skipped, "missing_split_value")
        license_of = window.licenses.encode(_trim(rows.column("license")))
        np.copyto(license_of, occ.codes["license"][pos], where=license_of == 0)
        if options.licenses is not None:
            accept = options.licenses
            allowed = np.array([accept(v) for v in window.licenses.values], dtype=bool)
            _drop(keep, ~allowed[license_of], skipped, "license")
        index = np.flatnonzero(keep)
        urls = rows.column("identifier").take(_arrow(index)).to_pylist()
        kept = np.arange(index.size)  # positions in ``urls``
        if options.dedupe and index.size:
            url_hash = np.fromiter(map(hash, urls), dtype=np.int64, count=index.size)
            first = seen.add(url_hash)  # the first in this batch, and not in an earlier one
            if not first.all():
                skipped["duplicate_url"] += int(index.size - np.count_nonzero(first))
                kept = kept[first]
        row_numbers = _numpy(rows.column("row"))
        if options.one_media_per_occurrence and kept.size:
            candidates = index[kept]
            rank = _mix(keys[candidates].view(np.uint64) ^ _seed_value(options.seed, 1))
            rank ^= row_numbers[candidates].view(np.uint64)
            rank = _mix(rank)
            chosen = _lowest_per_group(pos[candidates], rank)
            if chosen.size < kept.size:
                skipped["other_media_of_occurrence"] += int(kept.size - chosen.size)
                kept = kept[chosen]
        if kept.size:
            index = index[kept]
            o = pos[index]
            media = {"identifier": _pick(urls, kept)}
            for name, values in parsed.columns(row_numbers[index], _RECORD_MEDIA_FIELDS).items():
                media[name] = build.strings(name, values)
            labels = build.values(options.label or "", o)
            yielded.add(row_numbers[index])
            records = build.records(media, o, license_of[index], labels)
        else:
            records = iter(())
        window.start = max(window.start, int(pos.max()))
        return records

    def _select(
        self,
        media: _Media,
        occ: _Occurrences,
        options: _Options,
        license_codes: _Codes,
        forced: _RowBits | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decide which media rows become records: (rows, occurrence index, licence code).

        Consumes ``media`` (its arrays are released as soon as they are no longer needed) and
        keeps every temporary array one machine word per candidate at most. ``forced`` rows
        were yielded already (by the streaming join): they stay chosen, win over later and
        earlier copies of their URL and over the other media of their occurrence, and are
        left out of the result.
        """
        skipped = self.stats.skipped
        n_occ = occ.keys.size
        if n_occ == 0:
            skipped["no_occurrence"] += int(media.rows.size)
            empty = np.empty(0, dtype=np.int64)
            return empty, empty.astype(np.int32), np.empty(0, dtype=np.int32)
        found = np.searchsorted(occ.keys, media.keys)
        np.minimum(found, n_occ - 1, out=found)
        pos = found.astype(np.int32)
        keep = occ.keys[found] == media.keys
        del found
        media.keys = _EMPTY
        orphans = int(keep.size - np.count_nonzero(keep))
        if orphans:
            skipped["no_occurrence"] += orphans
        if options.label is not None:
            _drop(keep, occ.codes[options.label][pos] == 0, skipped, "missing_label")
        for name in options.split:
            _drop(keep, occ.codes[name][pos] == 0, skipped, "missing_split_value")
        # the media's own licence, else the occurrence's
        license_of = occ.codes["license"][pos]
        np.copyto(license_of, media.license, where=media.license != 0)
        media.license = _EMPTY
        if options.licenses is not None:
            accept = options.licenses
            allowed = np.array([accept(v) for v in license_codes.values], dtype=bool)
            _drop(keep, ~allowed[license_of], skipped, "license")
        index = np.flatnonzero(keep)
        del keep
        rows, pos, license_of = media.rows[index], pos[index], license_of[index]
        media.rows = _EMPTY
        url_hash = media.url_hash[index]
        media.url_hash = _EMPTY
        del index
        done = forced.contains(rows) if forced is not None else np.zeros(rows.size, dtype=bool)
        if options.dedupe and rows.size:
            # stable: a row already yielded, then the first in file order, wins
            order = (
                np.lexsort((~done, url_hash))
                if forced is not None
                else np.argsort(url_hash, kind="stable")
            )
            sorted_hash = url_hash[order]
            repeated = order[1:][sorted_hash[1:] == sorted_hash[:-1]]
            del order, sorted_hash
            if repeated.size:
                skipped["duplicate_url"] += int(repeated.size)
                unique = np.ones(rows.size, dtype=bool)
                unique[repeated] = False
                rows, pos, license_of = rows[unique], pos[unique], license_of[unique]
                done = done[unique]
            del repeated
        del url_hash
        # a seeded rank per media, reproducible for the same archive: (occurrence, row)
        rank = _mix(occ.keys[pos].view(np.uint64) ^ _seed_value(options.seed, 1))
        rank ^= rows.view(np.uint64)
        rank = _mix(rank)
        rank[done] = 0
        if options.one_media_per_occurrence and rows.size:
            best = np.full(n_occ, np.iinfo(np.uint64).max, dtype=np.uint64)
            np.minimum.at(best, pos, rank)
            chosen = rank == best[pos]
            del best
            n_chosen = int(np.count_nonzero(chosen))
            if _sorted_unique(pos[chosen]).size < n_chosen:  # equal ranks (astronomically rare)
                _, first = np.unique(pos[chosen], return_index=True)
                keep_first = np.zeros(n_chosen, dtype=bool)
                keep_first[first] = True
                chosen[np.flatnonzero(chosen)[~keep_first]] = False
            if n_chosen < rows.size:
                skipped["other_media_of_occurrence"] += int(rows.size - np.count_nonzero(chosen))
            rows, pos, license_of, rank, done = (
                rows[chosen],
                pos[chosen],
                license_of[chosen],
                rank[chosen],
                done[chosen],
            )
        sampled = self._apply_quotas(rank, pos, occ, options)
        if sampled is not None:
            rows, pos, license_of = rows[sampled], pos[sampled], license_of[sampled]
            done = done[sampled]
        if forced is not None:
            rows, pos, license_of = rows[~done], pos[~done], license_of[~done]
        return rows, pos, license_of

    def _apply_quotas(
        self,
        rank: np.ndarray,
        pos: np.ndarray,
        occ: _Occurrences,
        options: _Options,
    ) -> np.ndarray | None:
        """Positions to keep: per stream, the quota of items with the smallest seeded rank.

        ``None`` when there is no sampling (keep everything).
        """
        if options.nb_samples is None and options.nb_samples_per_stream is None:
            return None
        from gbif_dl.sampling.balance import allocate

        split = options.split
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
        sample_rank = _mix(rank ^ _seed_value(options.seed, 2))
        order = np.lexsort((sample_rank, stream))
        sorted_stream = stream[order]
        starts = np.searchsorted(sorted_stream, np.arange(len(combos)))
        position = np.arange(order.size) - starts[sorted_stream]
        chosen = np.sort(order[position < quota[sorted_stream]])
        if chosen.size < rank.size:
            self.stats.skipped["sampled_out"] += int(rank.size - chosen.size)
        if len(combos) > 1:
            logger.info(
                "%d streams; quotas: %s", len(combos), dict(zip(names, quota.tolist(), strict=True))
            )
        return chosen

    # -- emitting --------------------------------------------------------------------------

    def _media_batches(
        self, archive: zipfile.ZipFile, rows: np.ndarray
    ) -> Iterator[tuple[np.ndarray, dict[str, list[Any]]]]:
        """The chosen multimedia rows in file order: (positions into ``rows``, columns)."""
        row0 = 0
        names = ("identifier", *_MEDIA_FIELDS)
        for batch in self._batches(archive, self.multimedia, names, "_emit", use_threads=True):
            n = batch.num_rows
            lo, hi = np.searchsorted(rows, [row0, row0 + n]).tolist()
            row0 += n
            if hi <= lo:
                continue
            take = _arrow(rows[lo:hi] - (row0 - n))
            columns = {}
            for name in names:
                columns[name] = _trim(_take(batch, name, take)).to_pylist()
            yield np.arange(lo, hi), columns
        self.stats.skipped.pop("_emit", None)

    def _emit(
        self,
        archive: zipfile.ZipFile,
        rows: np.ndarray,
        occ_index: np.ndarray,
        license_of: np.ndarray,
        occ: _Occurrences,
        options: _Options,
    ) -> Iterator[MediaRecord]:
        """Pass 3: build the records of the chosen rows, batch by batch, in file order."""
        build = _RecordBuilder(occ, options, self.stats)
        label = options.label or ""
        for positions, columns in self._media_batches(archive, rows):
            o = occ_index[positions]
            labels = build.values(label, o)
            yield from build.records(columns, o, license_of[positions], labels)

    def _emit_with_rows(
        self,
        archive: zipfile.ZipFile,
        rows: np.ndarray,
        occ_index: np.ndarray,
        license_of: np.ndarray,
        occ: _Occurrences,
        options: _Options,
    ) -> Iterator[MediaRecord]:
        """``label=None``: the whole occurrence row is the label, so emit in occurrence order.

        The chosen media's columns are held in memory until their occurrence row streams by.
        """
        build = _RecordBuilder(occ, options)
        pending: dict[int, list[MediaRecord]] = {}
        for positions, columns in self._media_batches(archive, rows):
            o = occ_index[positions]
            labels: list[Any] = [None] * len(positions)
            for p, record in zip(
                o.tolist(), build.records(columns, o, license_of[positions], labels), strict=True
            ):
                pending.setdefault(p, []).append(record)
        names = self.columns
        for batch in self._batches(archive, self.core, names, "_emit"):
            ids = _trim(batch.column("_id"))
            valid = pc.greater(pc.utf8_length(ids), 0)
            keys = _to_keys(pc.if_else(valid, ids, "0"))
            pos = np.minimum(np.searchsorted(occ.keys, keys), max(occ.keys.size - 1, 0))
            hit = (occ.keys[pos] == keys) if occ.keys.size else np.zeros(keys.size, dtype=bool)
            rows_hit = [i for i in np.flatnonzero(hit).tolist() if int(pos[i]) in pending]
            if not rows_hit:
                continue
            present = [name for name in names if name in batch.schema.names]
            table = batch.select(present).take(_arrow(np.array(rows_hit, dtype=np.int64)))
            for i, row in zip(rows_hit, table.to_pylist(), strict=True):
                for record in pending.pop(int(pos[i]), []):
                    record["label"] = row
                    self.stats.records += 1
                    yield record
        self.stats.skipped.pop("_emit", None)


class _ParsedMedia:
    """The parsed multimedia batches that still hold candidate rows not joined yet.

    The streaming join decides on a few columns of the candidate rows; the other record
    fields are taken from these batches for the rows it keeps only (not copied along with
    every candidate)."""

    __slots__ = ("batches", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []  # the file row number of each batch's first row
        self.batches: list[pa.RecordBatch] = []

    def add(self, row0: int, batch: pa.RecordBatch) -> None:
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
            (batch, _arrow(part - start))
            for start, batch, part in zip(
                self.starts, self.batches, np.split(rows, cuts), strict=True
            )
            if part.size
        ]
        out = {}
        for name in names:
            parts = [_take(batch, name, take) for batch, take in pieces]
            out[name] = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        return out


@dataclass(frozen=True)
class _Options:
    label: str | None
    mediatype: str | None
    one_media_per_occurrence: bool
    license_info: bool
    split: list[str]
    nb_samples: int | None
    nb_samples_per_stream: int | None
    weighted_streams: bool
    seed: int | str
    licenses: LicenseFilter | None
    dedupe: bool


class _RecordBuilder:
    """Turns chosen media rows plus their occurrence codes into MediaRecords, quickly."""

    def __init__(
        self, occ: _Occurrences, options: _Options, stats: ArchiveStats | None = None
    ) -> None:
        self.occ = occ
        self.stats = stats  # counts the records yielded, if given
        self.license_info = options.license_info
        self.license_codes: list[str | None] = []
        self.licenses: list[str | None] = []
        self.ints: dict[str, list[Any]] = {name: [] for name in _INT_FIELDS}
        self.varied: set[str] = set()  # media columns with many distinct values
        self.lookups: dict[int, _Lookup] = {}  # by the id of the list they mirror

    def strings(self, name: str, values: pa.Array) -> list[str]:
        """Media column ``name``'s trimmed ``values`` as Python strings. A column with few
        distinct values (format, publisher, licence holder...) is decoded through its
        dictionary, one string object per distinct value; one that proves varied on a large
        batch is converted value by value from then on."""
        if name not in self.varied and len(values) >= _DICTIONARY_MIN_ROWS:
            encoded = pc.dictionary_encode(values)
            if len(encoded.dictionary) * 4 <= len(values):
                return _pick(_trim(encoded.dictionary).to_pylist(), _numpy(encoded.indices))
            if len(values) >= _VARIED_MIN_ROWS:
                self.varied.add(name)
        strings: list[str] = _trim(values).to_pylist()
        return strings

    def _lookup(self, name: str, values: list[Any]) -> _Lookup:
        """The lookup mirroring ``values`` (a growing list of this builder's)."""
        lookup = self.lookups.get(id(values))
        if lookup is None:
            lookup = self.lookups[id(values)] = _Lookup(values)
        return lookup

    def _sync(self) -> None:
        """Extend the per-code lookups to values the dictionaries gained since last time."""
        licenses = self.occ.dictionaries["license"].values
        for value in licenses[len(self.licenses) :]:
            self.license_codes.append(normalize_license(value))
            self.licenses.append(value or None)
        for name, table in self.ints.items():
            values = self.occ.dictionaries[name].values
            table.extend(_int_or_none(value) for value in values[len(table) :])

    def values(self, name: str, o: np.ndarray) -> Sequence[Any]:
        """The text of occurrence column ``name`` for occurrence positions ``o`` (None if empty)."""
        if not name:
            return [None] * o.size
        return self._lookup(name, self.occ.dictionaries[name].values).pick(self.occ.codes[name][o])

    def numbers(self, name: str, o: np.ndarray) -> Sequence[Any]:
        """Occurrence column ``name`` as integers (None if empty) for positions ``o``."""
        return self._lookup(name, self.ints[name]).pick(self.occ.codes[name][o])

    def gbif_ids(self, o: np.ndarray) -> list[str]:
        keys = self.occ.keys[o]
        odd = self.occ.odd_ids
        if odd:
            return [odd.get(k) or str(k) for k in keys.tolist()]
        ids: list[str] = pc.cast(_arrow(keys), pa.string()).to_pylist()  # faster than str()
        return ids

    def records(
        self,
        media: Mapping[str, Sequence[Any]],
        o: np.ndarray,
        license_of: np.ndarray,
        labels: Sequence[Any],
    ) -> Iterator[MediaRecord]:
        """One record per chosen media, in the order given."""
        self._sync()
        lic = license_of.tolist()
        occ_publisher = self.values("publisher", o)
        occ_rights = self.values("rightsHolder", o)
        columns = zip(
            media["identifier"],
            labels,
            media["publisher"],
            occ_publisher,
            lic,
            media["rightsHolder"],
            media["creator"],
            occ_rights,
            media["references"],
            media["format"],
            self.gbif_ids(o),
            self.values("datasetKey", o),
            self.numbers("speciesKey", o),
            self.numbers("taxonKey", o),
            self.values("scientificName", o),
            strict=True,
        )
        licenses, license_codes = self.licenses, self.license_codes
        sha1 = hashlib.sha1
        strip = not self.license_info
        n = 0  # records handed out, counted even when the consumer stops early
        try:
            for (url, label, pub, occ_pub, code, rights, creator, occ_rh, refs, fmt, gbif_id,
                 dataset, species, taxon, name) in columns:  # fmt: skip
                n += 1
                record = {
                    "url": url,
                    "basename": sha1(url.encode()).hexdigest(),
                    "label": label,
                    "subset": None,
                    "publisher": pub or occ_pub or None,
                    "license": licenses[code],
                    "rightsHolder": rights or creator or occ_rh or None,
                    "creator": creator or None,
                    "references": refs or None,
                    "format": fmt or None,
                    "gbifID": gbif_id,
                    "datasetKey": dataset or None,
                    "speciesKey": species,
                    "taxonKey": taxon,
                    "scientificName": name or None,
                    "license_code": license_codes[code],
                }
                if strip:  # license_info=False
                    for key in LICENSE_FIELDS:
                        del record[key]
                yield record
        finally:
            if self.stats is not None:
                self.stats.records += n


def _lowest_per_group(groups: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the lowest ``rank`` of each value of ``groups``; of equal
    ranks, the first. Linear when each group is one run (media follow their occurrence)."""
    if bool(np.all(groups[1:] >= groups[:-1])):  # sorted runs
        change = groups[1:] != groups[:-1]
        if change.all():  # one row per group
            return np.arange(groups.size)
        starts = np.flatnonzero(np.concatenate([[True], change]))
        group = np.cumsum(np.concatenate([[0], change]))
        lowest = np.flatnonzero(rank == np.minimum.reduceat(rank, starts)[group])
        firsts = np.ones(lowest.size, dtype=bool)
        np.not_equal(group[lowest[1:]], group[lowest[:-1]], out=firsts[1:])
        return lowest[firsts]
    order = np.lexsort((rank, groups))  # stable: of equal ranks, the first
    ordered = groups[order]
    head = np.ones(order.size, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=head[1:])
    return np.sort(order[head])


def _drop(keep: np.ndarray, mask: np.ndarray, skipped: Counter[str], reason: str) -> None:
    """Clear ``keep`` where ``mask`` and count the rows that were still kept under ``reason``."""
    hit = keep & mask
    n = int(hit.sum())
    if n:
        skipped[reason] += n
        keep &= ~mask


def _int_or_none(text: str) -> int | str | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


# --- resolving and fetching -----------------------------------------------------------------

#: Download formats whose zip has no multimedia extension, hence no media URLs.
MEDIALESS_FORMATS = frozenset({"SIMPLE_CSV", "SIMPLE_PARQUET", "SIMPLE_AVRO", "SPECIES_LIST"})
_URL_CHUNK = 1 << 16
_URL_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ResolvedArchive:
    """Where an identifier's archive is on disk.

    Attributes:
        path: the zip file.
        key: the GBIF download key (``None`` for a local file or a plain URL).
        fetched: True when gbif-dl stored the file in its cache (so ``delete=`` may remove it).
        metadata: GBIF's download metadata, when the identifier was a key or DOI.

    Example:
        >>> ResolvedArchive(Path("a.zip"), None, False).fetched
        False
    """

    path: Path
    key: str | None
    fetched: bool
    metadata: dict[str, Any] | None = None


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _not_ready(key: str, status: str, meta: Mapping[str, Any], api_url: str) -> Exception:
    from gbif_dl.errors import DownloadNotReadyError

    if status == "FILE_ERASED":
        text = (
            f"GBIF download {key} is FILE_ERASED: its file was deleted (GBIF keeps files about "
            "six months). Request it again: gbif_dl.dwca.request(<the same query>), or "
            f"'Rerun query' on https://www.gbif.org/occurrence/download/{key}"
        )
    elif status in ("PREPARING", "RUNNING", "SUSPENDED"):
        text = (
            f"GBIF download {key} is {status}, not SUCCEEDED yet; wait for it "
            "(GbifClient.wait_for_download) and try again"
        )
    else:
        text = (
            f"GBIF download {key} is {status or 'of unknown status'}, not SUCCEEDED, so it has "
            "no file; request it again"
        )
    err = DownloadNotReadyError(text, url=f"{api_url}/occurrence/download/{key}", status=200)
    err.status_name = status
    return err


def _check_metadata(meta: Mapping[str, Any], api_url: str) -> tuple[str, int | None]:
    """The key and size of a SUCCEEDED DWCA download, or the error that explains why not."""
    key = str(meta.get("key") or "")
    status = str(meta.get("status") or "").upper()
    request = meta.get("request") if isinstance(meta.get("request"), Mapping) else {}
    fmt = str((request or {}).get("format") or "DWCA").upper()
    if fmt in MEDIALESS_FORMATS:
        raise ArchiveError(
            f"GBIF download {key} has format {fmt}, which carries no media URLs (no multimedia "
            "extension); request a DWCA download instead, e.g. gbif_dl.dwca.request(query)",
            path=key,
        )
    if status != "SUCCEEDED":
        raise _not_ready(key, status, meta, api_url)
    size = meta.get("size")
    return key, int(size) if isinstance(size, int) and size > 0 else None


def _is_complete(path: Path, size: int | None) -> bool:
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "meta.xml" in {n.lower() for n in archive.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


async def _fetch_key(
    ident: str, root: Path, api_url: str | None
) -> tuple[Path, str, dict[str, Any]]:
    from gbif_dl.gbif.client import GbifClient

    async with GbifClient(api_url) as gbif:
        meta = await gbif.download_metadata(ident)
        key, size = _check_metadata(meta, gbif.api_url)
        dest = root / f"{key}.zip"
        if _is_complete(dest, size):
            logger.info("using the cached archive %s", dest)
            return dest, key, meta
        if dest.exists():
            logger.warning("cached archive %s is incomplete or corrupt; fetching it again", dest)
            dest.unlink()
        logger.info("fetching GBIF download %s (%s bytes) to %s", key, size or "?", dest)
        await gbif.fetch_download(key, dest, expected_size=size, progress=_progress_logger(key))
        if not _is_complete(dest, size):
            raise ArchiveError(
                f"GBIF download {key} arrived corrupt ({dest}); it was removed, try again",
                path=str(dest),
            )
        return dest, key, meta


def _progress_logger(name: str) -> Callable[[int, int | None], None]:
    """A progress callback that logs every 10 % (the CLI draws bars from the logs it owns)."""
    state = {"next": 0.1}

    def report(done: int, total: int | None) -> None:
        if total and done / total >= state["next"]:
            logger.info("%s: %d of %d bytes (%.0f %%)", name, done, total, 100 * done / total)
            state["next"] = math.floor(done / total * 10 + 1) / 10

    return report


def _url_file_name(url: str) -> str:
    from urllib.parse import urlsplit

    tail = urlsplit(url).path.rsplit("/", 1)[-1]
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:12]
    if tail.lower().endswith(".zip") and tail == safe_component(tail):
        return f"{tail[:-4]}-{digest}.zip"
    return f"archive-{digest}.zip"


async def _fetch_url(url: str, root: Path) -> Path:
    """Stream a zip at ``url`` into the cache, resuming a partial file with ``Range``."""
    import asyncio  # here: the archive worker process never fetches

    import aiohttp

    dest = root / _url_file_name(url)
    if _is_complete(dest, None):
        logger.info("using the cached archive %s", dest)
        return dest
    part = dest.with_name(dest.name + ".part")
    timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_read=120)
    failures = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            offset = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            expected: int | None = None
            try:
                async with session.get(url, headers=headers) as response:
                    if response.status == 416 and offset:
                        part.unlink()
                        continue
                    if response.status not in (200, 206):
                        from gbif_dl.errors import GbifApiError

                        raise GbifApiError(
                            f"fetching the archive {url} failed with HTTP {response.status}; "
                            "check the URL",
                            url=url,
                            status=response.status,
                        )
                    mode = "ab" if response.status == 206 and offset else "wb"
                    done = offset if mode == "ab" else 0
                    if response.content_length is not None:
                        expected = done + response.content_length
                    with part.open(mode) as out:
                        async for chunk in response.content.iter_chunked(_URL_CHUNK):
                            out.write(chunk)
                            done += len(chunk)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                failures += 1
                if failures >= _URL_ATTEMPTS:
                    raise ArchiveError(
                        f"fetching {url} keeps failing ({exc}); the partial file {part} is kept "
                        "and resumed next time",
                        path=str(part),
                    ) from exc
                logger.warning("fetching %s was cut (%s); resuming", url, exc)
                await asyncio.sleep(min(2.0**failures * 0.1, 5.0))
                continue
            size = part.stat().st_size
            if expected is not None and size < expected:
                failures += 1
                if failures >= _URL_ATTEMPTS:
                    raise ArchiveError(f"{url} keeps arriving incomplete", path=str(part))
                continue
            break
    os.replace(part, dest)
    if not _is_complete(dest, None):
        dest.unlink()
        raise ArchiveError(
            f"{url} is not a valid Darwin Core Archive zip (corrupt, or not an archive); "
            "it was removed",
            path=url,
        )
    return dest


def resolve_archive(
    identifier: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    api_url: str | None = None,
) -> ResolvedArchive:
    """Find or fetch the archive of ``identifier``: a download key, a DOI, a zip URL or a path.

    Keys and DOIs are resolved through GBIF's download metadata (a download that is not
    SUCCEEDED raises :class:`~gbif_dl.errors.DownloadNotReadyError` with its status). Files are
    streamed to ``root`` (default :func:`default_cache_dir`), resumed with ``Range`` after a
    cut, checked (size and zip directory) and not fetched again once complete.

    Raises:
        ConfigError: ``identifier`` is none of the accepted forms.
        DownloadNotReadyError: the download is not SUCCEEDED (``.status_name``).
        ArchiveError: a media-less format (SIMPLE_CSV, ...) or a corrupt file.
        GbifApiError: GBIF answered with an error (unknown key: 404).

    Example:
        >>> resolve_archive("tests/data/dwca-0022697-200613084148143.zip").fetched
        False
    """
    if isinstance(identifier, os.PathLike) or (
        isinstance(identifier, str) and not _is_url(identifier) and Path(identifier).is_file()
    ):
        path = Path(identifier)
        if not path.is_file():
            raise ConfigError(f"archive file {path} does not exist; check the path")
        return ResolvedArchive(path, None, False)
    if not isinstance(identifier, str):
        raise ConfigError(
            f"identifier must be a download key, DOI, URL or path, not {type(identifier).__name__}"
        )
    from gbif_dl._aio import run_sync
    from gbif_dl.gbif.params import parse_download_id

    folder = Path(root).expanduser() if root is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    text = identifier.strip()
    try:
        _, ident = parse_download_id(text)
    except ConfigError:
        if not _is_url(text):
            raise ConfigError(
                f"{identifier!r} is not an existing file, a URL, a GBIF download key "
                "(0022697-200613084148143) or a DOI (10.15468/dl.abc123); check it"
            ) from None
        return ResolvedArchive(run_sync(_fetch_url(text, folder)), None, True)
    path, key, meta = run_sync(_fetch_key(ident, folder, api_url))
    return ResolvedArchive(path, key, True, meta)

"""``meta.xml`` of a Darwin Core Archive: which members hold the occurrences and the media.

The columns are read from ``meta.xml`` (never positions assumed); the zip is checked on the way
(member names that escape, encryption, a ``meta.xml`` too large, a SIMPLE_CSV download).

Example:
    >>> with open_zip(Path("tests/data/dwca-0022697-200613084148143.zip")) as zf:
    ...     core, multimedia = read_meta(zf, "dl.zip")
    >>> core.location, "identifier" in multimedia.columns
    ('occurrence.txt', True)
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gbif_dl.errors import ArchiveError
from gbif_dl.sources.archive.inflate import read_member

__all__ = [
    "MAX_META_BYTES",
    "MULTIMEDIA_ROW_TYPE",
    "OCCURRENCE_ROW_TYPE",
    "DataFileSpec",
    "is_safe_member",
    "open_zip",
    "read_meta",
]

logger = logging.getLogger(__name__)

OCCURRENCE_ROW_TYPE = "http://rs.tdwg.org/dwc/terms/Occurrence"
MULTIMEDIA_ROW_TYPE = "http://rs.gbif.org/terms/1.0/Multimedia"
#: The most ``meta.xml`` may hold, declared or inflated: GBIF's are a few dozen KB.
MAX_META_BYTES = 2 << 20


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


def _columns(element: ET.Element, ns: str, path: str) -> dict[str, int]:
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
    return columns


def _parse_file_spec(element: ET.Element, ns: str, path: str) -> DataFileSpec:
    location_el = element.find(f"{ns}files/{ns}location")
    if location_el is None or not (location_el.text or "").strip():
        raise ArchiveError(f"meta.xml of {path} names a data file without <location>", path=path)
    location = (location_el.text or "").strip()
    id_el = element.find(f"{ns}id")
    if id_el is None:
        id_el = element.find(f"{ns}coreid")
    columns = _columns(element, ns, path)
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


def is_safe_member(name: str) -> bool:
    """Whether a zip member name stays inside the archive (no ``..``, no absolute path).

    Example:
        >>> is_safe_member("occurrence.txt"), is_safe_member("../etc/passwd")
        (True, False)
    """
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return False
    parts = PurePosixPath(name).parts
    return ".." not in parts and not (parts and parts[0].endswith(":"))


def open_zip(path: Path) -> zipfile.ZipFile:
    """The archive at ``path`` as a zip file; a missing or broken one raises ArchiveError.

    Example:
        >>> open_zip(Path("tests/data/dwca-0022697-200613084148143.zip")).close()
    """
    where = str(path)
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise ArchiveError(f"archive {where} does not exist", path=where) from exc
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(
            f"{where} is not a valid zip file ({exc}); the download is corrupt or "
            "incomplete: delete it and fetch it again",
            path=where,
        ) from exc


def _meta_root(archive: zipfile.ZipFile, where: str) -> ET.Element:
    names = archive.namelist()
    unsafe = [name for name in names if not is_safe_member(name)]
    if unsafe:
        raise ArchiveError(
            f"{where} contains member names that escape the archive "
            f"({unsafe[0]!r}); refusing to read it",
            path=where,
        )
    meta_name = next((n for n in names if n.lower() == "meta.xml"), None)
    if meta_name is None:
        raise _not_dwca(names, where)
    info = archive.getinfo(meta_name)
    if info.file_size > MAX_META_BYTES:
        raise ArchiveError(
            f"meta.xml of {where} is implausibly large ({info.file_size} bytes, more than "
            f"{MAX_META_BYTES}); it is not a GBIF download",
            path=where,
        )
    if archive.filename is None:
        raise ArchiveError(f"{where} must be opened from a path (open_zip)", path=where)
    try:  # the one bounded reader: never more than MAX_META_BYTES, whatever the method
        text = read_member(Path(archive.filename), info, where, limit=MAX_META_BYTES)
        return ET.fromstring(text)
    except (ET.ParseError, OSError) as exc:
        raise ArchiveError(
            f"meta.xml of {where} cannot be read ({exc}); the archive is corrupt", path=where
        ) from exc


def read_meta(archive: zipfile.ZipFile, where: str) -> tuple[DataFileSpec, DataFileSpec]:
    """The occurrence core and the multimedia extension that ``meta.xml`` declares.

    Raises:
        ArchiveError: no ``meta.xml``, no occurrence core, no multimedia extension (or none
            with an identifier column), or a data file that is not a member.

    Example:
        >>> with open_zip(Path("tests/data/dwca-0022697-200613084148143.zip")) as zf:
        ...     read_meta(zf, "dl.zip")[1].location
        'multimedia.txt'
    """
    root = _meta_root(archive, where)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    core_el = root.find(f"{ns}core")
    if core_el is None:
        raise ArchiveError(f"meta.xml of {where} declares no <core>", path=where)
    core = _parse_file_spec(core_el, ns, where)
    if core.row_type != OCCURRENCE_ROW_TYPE:
        raise ArchiveError(
            f"the core of {where} is {core.row_type or 'untyped'}, not occurrences; "
            "gbif-dl reads GBIF occurrence downloads (DWCA format)",
            path=where,
        )
    multimedia = None
    for ext_el in root.findall(f"{ns}extension"):
        if ext_el.get("rowType") == MULTIMEDIA_ROW_TYPE:
            multimedia = _parse_file_spec(ext_el, ns, where)
            break
    if multimedia is None:
        raise ArchiveError(
            f"{where} has no multimedia extension ({MULTIMEDIA_ROW_TYPE}), so it "
            "carries no media URLs; request the download again with the multimedia "
            "extension (GBIF includes it in DWCA downloads of records with media)",
            path=where,
        )
    names = archive.namelist()
    for spec in (core, multimedia):
        if not is_safe_member(spec.location) or spec.location not in names:
            raise ArchiveError(
                f"meta.xml of {where} points to {spec.location!r}, which is not a "
                "member of the archive",
                path=where,
            )
    if "identifier" not in multimedia.columns:
        raise ArchiveError(
            f"the multimedia extension of {where} has no dc:identifier column, so "
            "it carries no media URLs",
            path=where,
        )
    return core, multimedia


def _not_dwca(names: Sequence[str], where: str) -> ArchiveError:
    lowered = [n.lower() for n in names]
    kind = None
    if any(n.endswith(".parquet") for n in lowered) or any("parquet" in n for n in lowered):
        kind = "SIMPLE_PARQUET"
    elif any(n.endswith((".csv", ".tsv")) for n in lowered):
        kind = "SIMPLE_CSV"
    if kind:
        return ArchiveError(
            f"{where} is a {kind} download: it has no multimedia extension and "
            "carries no media URLs; request a DWCA download instead "
            "(gbif_dl.dwca.request(...) or format=DWCA on gbif.org)",
            path=where,
        )
    return ArchiveError(
        f"{where} is not a Darwin Core Archive (no meta.xml); give a GBIF DWCA download",
        path=where,
    )

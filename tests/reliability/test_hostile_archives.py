"""Hostile and malformed Darwin Core Archives: ArchiveError (or skipped rows), never a crash.

Every archive here is built with ``zipfile`` in the test: without ``meta.xml``, with wrong
columns, truncated, with a zip-bomb member, with member names or a ``meta.xml`` location that try
to escape, with corrupted bytes. The parser is
:class:`gbif_dl.sources.archive.ArchiveSource` (also reached through ``dwca.generate_urls``).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_helpers import fuzz

from gbif_dl import dwca
from gbif_dl.errors import ArchiveError, ConfigError
from gbif_dl.sources.archive import MULTIMEDIA_ROW_TYPE, OCCURRENCE_ROW_TYPE, ArchiveSource

REAL = Path(__file__).resolve().parents[1] / "data" / "dwca-0022697-200613084148143.zip"

OCC_TERMS = [
    "http://rs.gbif.org/terms/1.0/gbifID",
    "http://rs.tdwg.org/dwc/terms/scientificName",
    "http://rs.gbif.org/terms/1.0/speciesKey",
    "http://rs.tdwg.org/dwc/terms/datasetKey",
]
MEDIA_TERMS = [
    "http://rs.gbif.org/terms/1.0/gbifID",
    "http://purl.org/dc/terms/type",
    "http://purl.org/dc/terms/format",
    "http://purl.org/dc/terms/identifier",
    "http://purl.org/dc/terms/license",
]


def meta_xml(
    occurrence: str = "occurrence.txt",
    multimedia: str = "multimedia.txt",
    occ_terms: list[str] = OCC_TERMS,
    media_terms: list[str] = MEDIA_TERMS,
    id_index: str = "0",
    extra: str = "",
) -> str:
    def fields(terms: list[str]) -> str:
        return "".join(f'<field index="{i}" term="{t}"/>' for i, t in enumerate(terms))

    common = (
        'encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" ignoreHeaderLines="1"'
    )
    return (
        '<archive xmlns="http://rs.tdwg.org/dwc/text/">'
        f'<core {common} rowType="{OCCURRENCE_ROW_TYPE}"><files><location>{occurrence}'
        f'</location></files><id index="{id_index}"/>{fields(occ_terms)}</core>'
        f'<extension {common} rowType="{MULTIMEDIA_ROW_TYPE}"><files><location>{multimedia}'
        f'</location></files><coreid index="0"/>{fields(media_terms)}</extension>{extra}'
        "</archive>"
    )


def occurrence_rows(n: int) -> str:
    lines = ["gbifID\tscientificName\tspeciesKey\tdatasetKey"]
    lines += [f"{i}\tSpecies {i % 3}\t{100 + i % 3}\td{i % 2}" for i in range(1, n + 1)]
    return "\n".join(lines) + "\n"


def media_rows(n: int) -> str:
    lines = ["gbifID\ttype\tformat\tidentifier\tlicense"]
    lines += [
        f"{i}\tStillImage\timage/jpeg\thttp://127.0.0.1:9/m/{i}.jpg\tCC_BY_4_0"
        for i in range(1, n + 1)
    ]
    return "\n".join(lines) + "\n"


def build(path: Path, members: dict[str, str | bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return path


def good_members(n: int = 20) -> dict[str, str | bytes]:
    return {
        "meta.xml": meta_xml(),
        "occurrence.txt": occurrence_rows(n),
        "multimedia.txt": media_rows(n),
    }


def read_all(path: Path, **kwargs: object) -> list[dict[str, object]]:
    return list(ArchiveSource(path).records(**kwargs))  # type: ignore[arg-type]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return build(tmp_path / "good.zip", good_members())


def test_the_hand_built_archive_is_valid(good: Path) -> None:
    """The baseline the hostile variants start from parses into one record per media."""
    records = read_all(good, label="speciesKey")
    assert len(records) == 20
    assert {r["label"] for r in records} == {"100", "101", "102"}


# --- structure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "members", "message"),
    [
        ("no meta.xml", {"occurrence.txt": occurrence_rows(3)}, "no meta.xml"),
        ("simple csv", {"0001.csv": "a,b\n"}, "SIMPLE_CSV"),
        ("empty zip", {}, "no meta.xml"),
        ("meta.xml not xml", {"meta.xml": "<archive><core"}, "meta.xml"),
        ("meta.xml binary", {"meta.xml": b"\x00\xff\xfe" * 10}, "meta.xml"),
        ("no core", {"meta.xml": '<archive xmlns="http://rs.tdwg.org/dwc/text/"/>'}, "core"),
        (
            "no multimedia extension",
            {
                "meta.xml": meta_xml().replace(MULTIMEDIA_ROW_TYPE, "http://example.org/Other"),
                "occurrence.txt": occurrence_rows(3),
                "multimedia.txt": media_rows(3),
            },
            "multimedia",
        ),
        (
            "no identifier column",
            {
                "meta.xml": meta_xml(media_terms=MEDIA_TERMS[:3]),
                "occurrence.txt": occurrence_rows(3),
                "multimedia.txt": media_rows(3),
            },
            "identifier",
        ),
        (
            "data file missing",
            {"meta.xml": meta_xml(), "occurrence.txt": occurrence_rows(3)},
            "multimedia.txt",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_structurally_broken_archive_raises_archive_error(
    tmp_path: Path, name: str, members: dict[str, str | bytes], message: str
) -> None:
    """Missing or unreadable meta.xml, core or multimedia: ArchiveError naming the problem."""
    path = build(tmp_path / "a.zip", members)
    with pytest.raises(ArchiveError, match=message) as info:
        read_all(path)
    assert info.value.path == str(path)


def test_not_a_zip_and_missing_file_raise_archive_error(tmp_path: Path) -> None:
    """A non-zip file and a path that does not exist: ArchiveError that says what to do."""
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>Service unavailable</html>")
    with pytest.raises(ArchiveError, match="not a valid zip"):
        ArchiveSource(junk)
    with pytest.raises(ArchiveError, match="does not exist"):
        ArchiveSource(tmp_path / "missing.zip")


@pytest.mark.parametrize(
    "location",
    ["../../etc/passwd", "/etc/passwd", "..\\..\\windows\\win.ini", "C:/x.txt", "a/../../b.txt"],
)
def test_meta_xml_location_that_escapes_is_refused(tmp_path: Path, location: str) -> None:
    """meta.xml pointing outside the archive: ArchiveError, nothing read from that path."""
    members = good_members(3)
    members["meta.xml"] = meta_xml(multimedia=location)
    path = build(tmp_path / "a.zip", members)
    with pytest.raises(ArchiveError, match="not a member"):
        read_all(path)


@pytest.mark.parametrize("name", ["../evil.txt", "/abs.txt", "a/../../evil.txt", "x\\..\\y"])
def test_member_names_that_escape_are_refused(tmp_path: Path, name: str) -> None:
    """A zip with a member name that climbs out of any extraction folder is refused whole,
    and nothing is written anywhere (the reader streams, it never extracts)."""
    members = good_members(3)
    members[name] = "owned"
    path = build(tmp_path / "a.zip", members)
    before = set(tmp_path.parent.rglob("*"))
    with pytest.raises(ArchiveError, match="escape"):
        read_all(path)
    assert set(tmp_path.parent.rglob("*")) == before


def test_dwca_generate_urls_surfaces_archive_errors(tmp_path: Path) -> None:
    """The public entry point (``dwca.generate_urls`` on a local zip) raises the same
    ArchiveError for a hostile archive."""
    members = good_members(3)
    members["meta.xml"] = meta_xml(occurrence="../../etc/passwd")
    path = build(tmp_path / "a.zip", members)
    with pytest.raises(ArchiveError):
        list(dwca.generate_urls(str(path), label="speciesKey"))


# --- wrong columns -------------------------------------------------------------------------


def test_rows_with_wrong_column_counts_are_skipped_and_counted(tmp_path: Path) -> None:
    """Rows with too few or too many fields are skipped and counted, the good rows kept."""
    media = media_rows(10).splitlines()
    media[3] = media[3] + "\textra\tfields"
    media[5] = "5\tStillImage"
    members = good_members(10)
    members["multimedia.txt"] = "\n".join(media) + "\n"
    path = build(tmp_path / "a.zip", members)
    source = ArchiveSource(path)
    records = list(source.records(label="speciesKey"))
    assert len(records) == 8
    assert sum(source.stats.skipped.values()) >= 2


def test_meta_xml_declaring_more_columns_than_the_file_has(tmp_path: Path) -> None:
    """meta.xml describes columns the file does not have: ArchiveError or no records for the
    short rows, never another exception."""
    members = good_members(5)
    members["meta.xml"] = meta_xml(media_terms=[*MEDIA_TERMS, "http://purl.org/dc/terms/creator"])
    path = build(tmp_path / "a.zip", members)
    try:
        records = read_all(path, label="speciesKey")
    except ArchiveError:
        return
    assert len(records) <= 5


def test_label_that_is_not_a_column_is_a_config_error(good: Path) -> None:
    """label= a column the archive lacks: ConfigError listing the available columns."""
    with pytest.raises(ConfigError, match="scientificName"):
        read_all(good, label="family")


# --- truncation, corruption, bombs ---------------------------------------------------------


def test_truncated_real_archive_raises_archive_error(tmp_path: Path) -> None:
    """The real GBIF archive cut short anywhere: ArchiveError (the download was incomplete)."""
    data = REAL.read_bytes()
    for cut in (10, 1000, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
        path = tmp_path / f"cut{cut}.zip"
        path.write_bytes(data[:cut])
        with pytest.raises(ArchiveError):
            read_all(path, label="speciesKey")


@fuzz(60)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255), st.booleans())
def test_corrupted_bytes_give_archive_error_or_records(offset: int, xor: int, stored: bool) -> None:
    """One corrupted byte anywhere in a small archive (deflated or stored): either it still
    parses (the byte was in a harmless place) or ArchiveError; never another exception."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = build(
            Path(folder) / "a.zip",
            good_members(30),
            zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
        )
        data = bytearray(path.read_bytes())
        data[offset % len(data)] ^= xor
        path.write_bytes(bytes(data))
        try:
            records = read_all(path, label="speciesKey")
        except ArchiveError:
            return
        assert len(records) <= 30


@fuzz(60)
@given(
    st.lists(
        st.sampled_from(
            [
                '<id index="x"/>',
                '<field index="-1" term="http://purl.org/dc/terms/identifier"/>',
                '<field index="999" term="http://purl.org/dc/terms/identifier"/>',
                '<field term="http://purl.org/dc/terms/identifier"/>',
                '<field index="1"/>',
                "<files/>",
                "<files><location></location></files>",
                "<!-- comment -->",
                "&amp;",
                "\x00",
            ]
        ),
        max_size=3,
    ),
    st.sampled_from(["core", "extension"]),
    st.sampled_from(
        [
            'fieldsTerminatedBy="\\t"',
            'fieldsTerminatedBy=",,"',
            'encoding="bogus"',
            'ignoreHeaderLines="x"',
            'fieldsEnclosedBy="|"',
            'encoding="latin-1"',
        ]
    ),
    st.sampled_from(["0", "x", "", "-1", "99", "1.5"]),
)
def test_odd_meta_xml_gives_archive_error_or_records(
    fragments: list[str], where: str, attribute: str, id_index: str
) -> None:
    """meta.xml with odd ids, indices, attributes or fragments: records or ArchiveError."""
    import tempfile

    text = meta_xml(id_index=id_index)
    tag = "<core " if where == "core" else "<extension "
    head, _, tail = text.partition(tag)
    close = "</core>" if where == "core" else "</extension>"
    body, _, rest = tail.partition(close)
    text = f"{head}{tag}{attribute} {body}{''.join(fragments)}{close}{rest}"
    with tempfile.TemporaryDirectory() as folder:
        members = good_members(5)
        members["meta.xml"] = text
        path = build(Path(folder) / "a.zip", members)
        try:
            records = read_all(path, label="speciesKey")
        except ArchiveError:
            return
        assert len(records) <= 5


def _zeros_deflated(size: int) -> tuple[bytes, int]:
    """``size`` newline bytes deflated at the maximum ratio: (raw deflate data, crc)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\n" * (1 << 20)
    out = io.BytesIO()
    crc = 0
    left = size
    while left:
        part = chunk[: min(left, len(chunk))]
        out.write(compressor.compress(part))
        crc = zlib.crc32(part, crc)
        left -= len(part)
    out.write(compressor.flush())
    return out.getvalue(), crc


def _raw_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip whose headers say what we want: (name, deflated data, crc, declared size, method)."""
    out = io.BytesIO()
    central = io.BytesIO()
    for name, data, crc, declared, method in members:
        offset = out.tell()
        encoded = name.encode()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(data),
                declared,
                len(encoded),
                0,
            )
        )
        out.write(encoded + data)
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(data),
                declared,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
        )
        central.write(encoded)
    start = out.tell()
    directory = central.getvalue()
    out.write(directory)
    out.write(
        struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), start, 0
        )
    )
    path.write_bytes(out.getvalue())
    return path


def _bomb_members(declared_media: int, media: bytes, media_crc: int) -> list[tuple]:
    small = good_members(3)
    out = []
    for name in ("meta.xml", "occurrence.txt"):
        data = small[name].encode() if isinstance(small[name], str) else small[name]
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = compressor.compress(data) + compressor.flush()
        out.append((name, packed, zlib.crc32(data), len(data), zipfile.ZIP_DEFLATED))
    out.append(("multimedia.txt", media, media_crc, declared_media, zipfile.ZIP_DEFLATED))
    return out


def test_zip_bomb_member_is_refused_before_inflating(tmp_path: Path) -> None:
    """A member claiming 1 GiB from ~16 KiB of deflate data (ratio > 1000): ArchiveError naming
    a zip bomb, refused from the headers alone, before inflating anything."""
    data, crc = _zeros_deflated(16 << 20)
    path = _raw_zip(tmp_path / "bomb.zip", _bomb_members(1 << 30, data, crc))
    with pytest.raises(ArchiveError, match="zip bomb"):
        read_all(path)


def test_member_inflating_beyond_its_declared_size_is_bounded(tmp_path: Path) -> None:
    """A member whose headers lie (declares 1 KiB, inflates to 16 MiB of rows): ArchiveError,
    and the parser stops near the declared size instead of reading all 16 MiB."""
    row = b"1\tStillImage\timage/jpeg\thttp://127.0.0.1:9/m/1.jpg\tCC_BY_4_0\n"
    size = 16 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = row * (size // len(row))
    data = compressor.compress(body) + compressor.flush()
    crc = zlib.crc32(body)
    path = _raw_zip(tmp_path / "liar.zip", _bomb_members(1024, data, crc))
    source = ArchiveSource(path)
    with pytest.raises(ArchiveError):
        list(source.records(label="speciesKey"))
    assert source.stats.media_rows <= (1024 + (1 << 20)) // len(row)  # declared + one block


@pytest.mark.parametrize("member", ["occurrence.txt", "multimedia.txt"])
def test_member_whose_crc_does_not_match_is_refused(tmp_path: Path, member: str) -> None:
    """Valid deflate data whose CRC-32 in the central directory is wrong: ArchiveError."""
    path = build(tmp_path / "crc.zip", good_members())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        crc = archive.getinfo(member).CRC
    entry = data.index(b"PK\x01\x02")
    while True:  # the central directory entry of ``member``
        name_length = struct.unpack("<H", data[entry + 28 : entry + 30])[0]
        if data[entry + 46 : entry + 46 + name_length].decode() == member:
            break
        entry = data.index(b"PK\x01\x02", entry + 4)
    assert struct.unpack("<I", data[entry + 16 : entry + 20])[0] == crc
    data[entry + 16 : entry + 20] = struct.pack("<I", crc ^ 0xFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="CRC-32"):
        read_all(path, label="speciesKey")


# --- every member, every compression method, through one bounded reader (issue 21) -------------

#: The issue's bombs inflate to 1.5 GiB of one byte.
BOMB_BYTES = 3 << 29
_PEAK_READ = """
import json, sys
from gbif_dl.errors import ArchiveError
from gbif_dl.sources.archive import ArchiveSource
try:
    outcome = "records %d" % sum(1 for _ in ArchiveSource(sys.argv[1]).records(label="speciesKey"))
except ArchiveError as exc:
    outcome = str(exc)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({"outcome": outcome, "peak_mb": int(status) // 1024}))
"""


def _run_of_one_byte(compressor: object, size: int) -> tuple[bytes, int]:
    """``size`` bytes of ``a`` through ``compressor`` 16 MiB at a time: (data, crc)."""
    chunk = b"a" * (16 << 20)
    parts, crc, left = [], 0, size
    while left:
        piece = chunk[: min(left, len(chunk))]
        parts.append(compressor.compress(piece))  # type: ignore[attr-defined]
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    parts.append(compressor.flush())  # type: ignore[attr-defined]
    return b"".join(parts), crc


@pytest.fixture(scope="module")
def bzip2_run() -> tuple[bytes, int]:
    """1.5 GiB of one byte, bzip2: about 1.2 KB (built once, a few seconds)."""
    import bz2

    return _run_of_one_byte(bz2.BZ2Compressor(9), BOMB_BYTES)


@pytest.fixture(scope="module")
def deflate_run() -> tuple[bytes, int]:
    """1.5 GiB of one byte, raw deflate: about 1.5 MB."""
    return _run_of_one_byte(zlib.compressobj(9, zlib.DEFLATED, -15), BOMB_BYTES)


def _members_with(name: str, data: bytes, crc: int, declared: int, method: int) -> list[tuple]:
    """The small good archive, deflated, with member ``name`` replaced by the given one."""
    out = []
    for member, text in good_members(3).items():
        raw = text.encode() if isinstance(text, str) else text
        if member == name:
            out.append((name, data, crc, declared, method))
            continue
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = compressor.compress(raw) + compressor.flush()
        out.append((member, packed, zlib.crc32(raw), len(raw), zipfile.ZIP_DEFLATED))
    return out


def _peak_read(path: Path) -> tuple[str, int]:
    """What reading ``path`` in a child interpreter ends with, and its peak RSS in MB."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PEAK_READ, str(path)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    return result["outcome"], result["peak_mb"]


@pytest.fixture(scope="module")
def baseline_peak_mb(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Peak RSS of the child reading the small good archive (interpreter, arrow, numpy)."""
    path = build(tmp_path_factory.mktemp("good") / "good.zip", good_members(3))
    outcome, peak = _peak_read(path)
    assert outcome == "records 3"
    return peak


@pytest.mark.parametrize(
    ("member", "method", "lie", "expected"),
    [
        ("occurrence.txt", zipfile.ZIP_BZIP2, True, "more than its declared"),
        ("meta.xml", zipfile.ZIP_BZIP2, True, "more than its declared"),
        ("meta.xml", zipfile.ZIP_DEFLATED, True, "more than its declared"),
        ("occurrence.txt", zipfile.ZIP_BZIP2, False, "zip bomb"),
        ("meta.xml", zipfile.ZIP_BZIP2, False, "implausibly large"),
    ],
)
def test_bombs_of_every_method_and_member_are_bounded(
    tmp_path: Path,
    bzip2_run: tuple[bytes, int],
    deflate_run: tuple[bytes, int],
    baseline_peak_mb: int,
    member: str,
    method: int,
    lie: bool,
    expected: str,
) -> None:
    """The issue's inputs: a 2.2 KB zip whose bzip2 ``occurrence.txt`` or ``meta.xml``
    inflates to 1.5 GiB, a 1.57 MB deflate ``meta.xml``, each lying about its size (and the
    bzip2 ones also declaring it honestly). Before: 3.2 / 3.2 / 2.2 GB of memory, then
    ArchiveError. Now: ArchiveError naming the member, and the reading child's peak RSS within
    32 MB of reading a good archive."""
    data, crc = bzip2_run if method == zipfile.ZIP_BZIP2 else deflate_run
    honest = good_members(3)[member]
    declared = len(honest.encode() if isinstance(honest, str) else honest) if lie else BOMB_BYTES
    path = _raw_zip(tmp_path / "bomb.zip", _members_with(member, data, crc, declared, method))
    if method == zipfile.ZIP_BZIP2:
        assert path.stat().st_size < 4096  # the 2.2 KB zip
    with pytest.raises(ArchiveError, match=expected) as info:
        read_all(path, label="speciesKey")
    assert member in str(info.value)
    outcome, peak_mb = _peak_read(path)
    assert expected in outcome
    assert peak_mb <= baseline_peak_mb + 32, (peak_mb, baseline_peak_mb)


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_every_compression_method_reads_the_same_records(tmp_path: Path, method: int) -> None:
    """Stored, deflate, bzip2 and LZMA members (meta.xml included) all go through the one
    bounded reader and give the same records."""
    expected = read_all(build(tmp_path / "deflate.zip", good_members()), label="speciesKey")
    path = build(tmp_path / f"m{method}.zip", good_members(), method=method)
    assert read_all(path, label="speciesKey") == expected
    assert len(expected) == 20


def test_unknown_compression_method_is_an_archive_error(tmp_path: Path) -> None:
    """A member compressed with a method zipfile cannot read (here 99): ArchiveError."""
    raw = good_members(3)["occurrence.txt"]
    data = raw.encode() if isinstance(raw, str) else raw
    path = _raw_zip(
        tmp_path / "odd.zip", _members_with("occurrence.txt", data, zlib.crc32(data), len(data), 99)
    )
    with pytest.raises(ArchiveError, match="compression method 99"):
        read_all(path, label="speciesKey")


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_member_claiming_more_data_than_the_file_holds_is_truncated(
    tmp_path: Path, method: int
) -> None:
    """A member whose compressed size runs past the end of the file: ArchiveError naming the
    member, whatever the method (stored: the end of the file comes first, "truncated"; the
    others end their stream first, short of the declared size), never an endless loop."""
    raw = good_members(3)["occurrence.txt"]
    data = raw.encode() if isinstance(raw, str) else raw
    packed = build(tmp_path / "m.zip", {"occurrence.txt": data}, method=method)
    with zipfile.ZipFile(packed) as archive:
        info = archive.getinfo("occurrence.txt")
    member = packed.read_bytes()[30 + len("occurrence.txt") :][: info.compress_size]
    members = _members_with("occurrence.txt", member, info.CRC, 1 << 20, method)
    path = _raw_zip(tmp_path / "short.zip", members)
    body = bytearray(path.read_bytes())
    entry = body.index(b"PK\x01\x02" + struct.pack("<HH", 20, 20) + b"\x00\x00")
    while body[entry + 46 : entry + 46 + 14] != b"occurrence.txt":
        entry = body.index(b"PK\x01\x02", entry + 4)
    body[entry + 20 : entry + 24] = struct.pack("<I", 1 << 20)  # compressed size: 1 MiB
    path.write_bytes(bytes(body))
    expected = "truncated" if method == zipfile.ZIP_STORED else "size or CRC-32"
    with pytest.raises(ArchiveError, match=rf"occurrence\.txt .*{expected}"):
        read_all(path, label="speciesKey")

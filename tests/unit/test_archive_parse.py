"""The streaming DwC-A parser, checked against the real GBIF download and hostile variants.

python-dwca-reader is the oracle: gbif-dl must yield exactly the media it finds.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from dwca.read import DwCAReader

from gbif_dl import dwca
from gbif_dl.errors import ArchiveError, ConfigError
from gbif_dl.records import make_record, normalize_license
from gbif_dl.sources.archive import ArchiveSource, ArchiveStats

REAL = Path(__file__).resolve().parents[1] / "data" / "dwca-0022697-200613084148143.zip"
DC = "http://purl.org/dc/terms/"
GBIF = "http://rs.gbif.org/terms/1.0/"
DWC = "http://rs.tdwg.org/dwc/terms/"
MULTIMEDIA = GBIF + "Multimedia"
#: The multimedia row of the real archive whose gbifID has a trailing space ("2803144270 ").
PADDED_ID = "2803144270"


@pytest.fixture(scope="module")
def oracle() -> list[tuple[str, str, str, str]]:
    """(url, speciesKey, scientificName, licence) of every StillImage media, per dwca-reader."""
    found = []
    with DwCAReader(str(REAL)) as reader:
        for row in reader:
            for ext in row.extensions:
                data = ext.data
                if ext.rowtype != MULTIMEDIA or data[DC + "type"] != "StillImage":
                    continue
                if not data[DC + "identifier"]:
                    continue
                licence = data[DC + "license"] or row.data[DC + "license"]
                found.append(
                    (
                        data[DC + "identifier"],
                        row.data[GBIF + "speciesKey"],
                        row.data[DWC + "scientificName"],
                        licence,
                    )
                )
    return found


def _padded_media() -> list[str]:
    """URLs of multimedia rows whose id has stray whitespace (dwca-reader cannot join them)."""
    with zipfile.ZipFile(REAL) as archive:
        lines = archive.read("multimedia.txt").decode().splitlines()[1:]
    return [
        line.split("\t")[3] for line in lines if line.split("\t")[0] != line.split("\t")[0].strip()
    ]


def test_real_archive_matches_python_dwca_reader(oracle: list[tuple[str, str, str, str]]) -> None:
    """Same urls, labels and licences as dwca-reader, plus the row it cannot join (padded id)."""
    stats = ArchiveStats()
    records = list(
        dwca.generate_urls(
            str(REAL), label="speciesKey", one_media_per_occurrence=False, dedupe=False, stats=stats
        )
    )
    mine = Counter((r["url"], r["label"], r["scientificName"], r["license"]) for r in records)
    padded = _padded_media()
    assert len(padded) == 1
    extra = Counter(key for key in mine if key[0] in padded)
    assert sum(extra.values()) == 1 and next(iter(extra))[1] != ""
    assert mine - extra == Counter(oracle)
    assert stats.id_whitespace == 1
    assert stats.records == len(records) == len(oracle) + 1


def test_records_have_the_search_source_shape() -> None:
    """Every record equals make_record(url, label=..., fields) and carries GBIF ids."""
    for record in ArchiveSource(REAL).records(label="scientificName"):
        fields = {k: v for k, v in record.items() if k not in ("url", "basename", "label")}
        assert record == make_record(record["url"], label=record["label"], **fields)
        assert record["url"].startswith(("http://", "https://"))
        assert record["gbifID"].isdigit()
        assert isinstance(record["speciesKey"], int) or record["speciesKey"] is None
        assert record["license_code"] == normalize_license(record["license"])
        assert record["rightsHolder"] or not record["creator"]  # falls back to the creator
        assert record["subset"] is None


def test_one_media_per_occurrence_and_seed() -> None:
    """One record per occurrence; the choice depends on the seed and is reproducible."""
    source = ArchiveSource(REAL)
    first = list(source.records(label="speciesKey", seed=1))
    ids = [r["gbifID"] for r in first]
    assert len(ids) == len(set(ids))
    assert first == list(source.records(label="speciesKey", seed=1))
    other = list(source.records(label="speciesKey", seed=2))
    assert {r["gbifID"] for r in other} == set(ids)
    assert {r["url"] for r in other} != {r["url"] for r in first}
    assert source.stats.skipped["other_media_of_occurrence"] > 0


def test_any_occurrence_column_is_a_label() -> None:
    """family, scientificName, datasetKey... as labels: the str of the occurrence value."""
    source = ArchiveSource(REAL)
    families = {r["label"] for r in source.records(label="family")}
    assert "Ixodidae" in families or len(families) > 1
    assert all(isinstance(f, str) and f for f in families)


def test_label_none_gives_the_whole_occurrence_row() -> None:
    """label=None: the label is the occurrence row as a dict (gbif-dl 0.1 behaviour)."""
    records = list(ArchiveSource(REAL).records(label=None))
    assert records
    for record in records[:50]:
        row = record["label"]
        assert row["gbifID"] == record["gbifID"]
        assert str(row["speciesKey"] or "") == str(record["speciesKey"] or "")


def test_unknown_label_lists_the_columns() -> None:
    """A label that is not an occurrence column is a ConfigError naming the columns."""
    with pytest.raises(ConfigError, match=r"available columns:.*speciesKey"):
        ArchiveSource(REAL).records(label="speciesKeyy")


def test_license_info_false_drops_licence_fields() -> None:
    records = list(ArchiveSource(REAL).records(label="speciesKey", license_info=False))
    assert records and not {"license", "rightsHolder", "publisher", "license_code"} & set(
        records[0]
    )


def test_licence_allow_list() -> None:
    """Only allowed licences come out; the rest are counted."""
    source = ArchiveSource(REAL)
    everything = list(source.records(label="speciesKey", one_media_per_occurrence=False))
    codes = Counter(r["license_code"] for r in everything)
    assert len(codes) > 1
    allowed = codes.most_common(1)[0][0]
    kept = list(
        source.records(label="speciesKey", one_media_per_occurrence=False, licenses=[allowed])
    )
    assert len(kept) == codes[allowed]
    assert {r["license_code"] for r in kept} == {allowed}
    assert source.stats.skipped["license"] == len(everything) - codes[allowed]


def _sample(records: Any) -> list[Any]:
    """The sampled records: without the spares that follow them (issue 18)."""
    return [r for r in records if not r.get("spare")]


@pytest.mark.parametrize("total", [10, -1])
def test_balanced_streams(total: int) -> None:
    """split_streams_by + nb_samples: exact balanced quotas, reproducible for a seed."""
    source = ArchiveSource(REAL)
    every = Counter(r["datasetKey"] for r in source.records(label="speciesKey"))
    assert len(every) >= 3

    def sample() -> list[dict[str, object]]:
        return _sample(
            source.records(
                label="speciesKey", split_streams_by="datasetKey", nb_samples=total, seed=3
            )
        )

    picked = sample()
    per_stream = Counter(r["datasetKey"] for r in picked)
    if total == -1:
        assert per_stream == {k: min(every.values()) for k in every}
    else:
        assert len(picked) == 10
        assert max(per_stream.values()) - min(per_stream.values()) <= 1
    assert sample() == picked


def test_per_stream_cap_and_weighted() -> None:
    """nb_samples_per_stream caps each stream; weighted shares follow the stream sizes."""
    source = ArchiveSource(REAL)
    every = Counter(r["datasetKey"] for r in source.records(label="speciesKey"))
    capped = Counter(
        r["datasetKey"]
        for r in _sample(
            source.records(
                label="speciesKey", split_streams_by="datasetKey", nb_samples_per_stream=30
            )
        )
    )
    assert capped == {k: min(v, 30) for k, v in every.items()}
    weighted = Counter(
        r["datasetKey"]
        for r in _sample(
            source.records(
                label="speciesKey",
                split_streams_by="datasetKey",
                nb_samples=100,
                weighted_streams=True,
            )
        )
    )
    assert sum(weighted.values()) == 100
    (big, _), *_, (small, _) = every.most_common()
    assert weighted[big] > 3 * weighted[small] > 0


def test_nb_samples_without_streams_and_seed_changes_sample() -> None:
    source = ArchiveSource(REAL)
    a = [r["url"] for r in _sample(source.records(label="speciesKey", nb_samples=25, seed=1))]
    b = [r["url"] for r in _sample(source.records(label="speciesKey", nb_samples=25, seed=2))]
    assert len(a) == len(b) == 25 and set(a) != set(b)
    assert source.stats.skipped["sampled_out"] > 0


# --- hostile and messy archives ------------------------------------------------------------


def _rewrite(tmp_path: Path, name: str, changes: dict[str, bytes | None]) -> Path:
    """A copy of the real archive with members replaced (bytes) or removed (None)."""
    out = tmp_path / name
    with zipfile.ZipFile(REAL) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in changes:
                data = changes[info.filename]
                if data is not None:
                    dst.writestr(info.filename, data)
            else:
                dst.writestr(info.filename, src.read(info.filename))
        for member, data in changes.items():
            if member not in src.namelist() and data is not None:
                dst.writestr(member, data)
    return out


def _member(name: str) -> bytes:
    with zipfile.ZipFile(REAL) as archive:
        return archive.read(name)


def test_messy_multimedia_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    """Missing identifier/type, bad column count, javascript: URLs, quotes: counted, not fatal."""
    lines = _member("multimedia.txt").decode().split("\n")
    header, first = lines[0], lines[1].split("\t")
    no_url = list(first)
    no_url[3] = ""
    no_type = list(first)
    no_type[1] = ""
    no_type[3] = "https://example.org/no-type.jpg"
    bad_url = list(first)
    bad_url[3] = "javascript:alert(1)"
    quoted = list(first)
    quoted[3] = 'https://example.org/a"b.jpg'
    quoted[14] = 'the "quoted" holder'
    extra = [
        "\t".join(no_url),
        "\t".join(no_type),
        "\t".join(bad_url),
        "\t".join(quoted),
        "only\ttwo",
    ]
    text = "\n".join([header, *extra, *lines[1:]])
    path = _rewrite(tmp_path, "messy.zip", {"multimedia.txt": text.encode()})
    source = ArchiveSource(path)
    records = list(source.records(label="speciesKey", one_media_per_occurrence=False, dedupe=False))
    skipped = source.stats.skipped
    assert skipped["missing_identifier"] == 1
    assert skipped["missing_type"] == 1
    assert skipped["invalid_url"] == 1
    assert skipped["invalid_row"] == 1
    (odd,) = [r for r in records if r["url"] == 'https://example.org/a"b.jpg']
    assert odd["rightsHolder"] == 'the "quoted" holder'


def test_literal_quotes_in_occurrence_values_are_kept() -> None:
    """GBIF values contain literal '"': no quoting, so they survive into the row."""
    rows = [r["label"] for r in ArchiveSource(REAL).records(label=None)]
    assert any('"' in str(v) for row in rows for v in row.values())


def test_missing_label_value_is_skipped_and_counted(tmp_path: Path) -> None:
    lines = _member("occurrence.txt").decode().split("\n")
    header = lines[0].split("\t")
    col = header.index("speciesKey")
    cells = lines[1].split("\t")
    cells[col] = ""
    lines[1] = "\t".join(cells)
    path = _rewrite(tmp_path, "nolabel.zip", {"occurrence.txt": "\n".join(lines).encode()})
    source = ArchiveSource(path)
    records = list(source.records(label="speciesKey", one_media_per_occurrence=False))
    assert source.stats.skipped["missing_label"] >= 1
    assert cells[0] not in {r["gbifID"] for r in records}


# pyarrow converts an invalid row to text before calling our skip handler; on corrupted bytes
# that conversion itself fails inside pyarrow and is reported as "unraisable". The behaviour
# under test (a clear ArchiveError) is asserted below either way.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_zip_is_a_clear_archive_error(tmp_path: Path) -> None:
    cut = tmp_path / "cut.zip"
    cut.write_bytes(REAL.read_bytes()[: REAL.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="not a valid zip"):
        ArchiveSource(cut)
    flipped = bytearray(REAL.read_bytes())
    with zipfile.ZipFile(REAL) as archive:
        info = archive.getinfo("occurrence.txt")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    flipped[middle] ^= 0xFF
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ArchiveError, match="corrupt"):
        list(ArchiveSource(bad).records(label="speciesKey"))


def test_archive_without_multimedia_extension(tmp_path: Path) -> None:
    meta = _member("meta.xml").decode()
    start = meta.index(
        '<extension encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" '
        'fieldsEnclosedBy="" ignoreHeaderLines="1" rowType="http://rs.gbif.org/terms/1.0/Multimedia">'
    )
    end = meta.index("</extension>", start) + len("</extension>")
    path = _rewrite(
        tmp_path,
        "nomedia.zip",
        {"meta.xml": (meta[:start] + meta[end:]).encode(), "multimedia.txt": None},
    )
    with pytest.raises(ArchiveError, match="no multimedia extension"):
        ArchiveSource(path)


def test_simple_csv_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "simple.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("0022697-200613084148143.csv", "gbifID\tspeciesKey\n1\t2\n")
    with pytest.raises(ArchiveError, match=r"SIMPLE_CSV.*no media URLs"):
        ArchiveSource(path)


def test_escaping_member_names_are_refused(tmp_path: Path) -> None:
    meta = (
        _member("meta.xml")
        .decode()
        .replace("<location>multimedia.txt</location>", "<location>../multimedia.txt</location>")
    )
    path = _rewrite(tmp_path, "escape.zip", {"meta.xml": meta.encode(), "../multimedia.txt": b"x"})
    with pytest.raises(ArchiveError, match="escape"):
        ArchiveSource(path)


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    """A member that inflates far beyond any text file is refused before it is read."""
    path = _rewrite(
        tmp_path,
        "bomb.zip",
        {"multimedia.txt": _member("multimedia.txt").split(b"\n")[0] + b"\n" + b"\t" * (80 << 20)},
    )
    with pytest.raises(ArchiveError, match="zip bomb"):
        list(ArchiveSource(path).records(label="speciesKey"))


def test_records_take_sampling_options_or_their_keywords() -> None:
    """One SamplingOptions, or its fields as keywords (``label`` defaulting to speciesKey):
    the same records; both at once is refused before any reading."""
    from gbif_dl.options import SamplingOptions

    source = ArchiveSource(REAL)
    by_keywords = list(source.records(seed=3, licenses=["CC_BY_NC_4_0"]))
    options = SamplingOptions(label="speciesKey", seed=3, licenses=["CC_BY_NC_4_0"])
    assert by_keywords and list(source.records(options)) == by_keywords
    with pytest.raises(ConfigError, match="either a SamplingOptions or keywords"):
        source.records(options, seed=4)

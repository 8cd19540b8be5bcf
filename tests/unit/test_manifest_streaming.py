"""Streaming manifest merge and the compact resume index (gbif_dl.manifest)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gbif_dl.manifest import (
    FAILED,
    JOURNAL_NAME,
    MANIFEST_NAME,
    SUCCESS,
    Journal,
    ResumeIndex,
    iter_manifest,
    latest_rows,
    load_index,
    manifest_row,
    merge_journal,
    merge_journal_file,
    merge_manifest_files,
    rows_to_table,
)
from gbif_dl.manifest import journal as mf_journal
from gbif_dl.manifest import resume as mf_resume
from gbif_dl.manifest import table as mf_table
from gbif_dl.writers.attribution import ATTRIBUTION_NAME, CITATION_NAME, write_attribution
from gbif_dl.writers.classes import CLASSES_NAME, update_classes_from_manifest
from gbif_dl.writers.hf import METADATA_NAME, write_metadata


def _row(i: int, status: str = SUCCESS, **extra: object) -> dict[str, object]:
    record = {
        "url": f"http://h/{i}.jpg",
        "label": f"c{i % 3}",
        "gbifID": str(1000 + i),
        "datasetKey": f"d{i % 2}",
        "scientificName": f"S{i % 3}",
        "subset": "train" if i % 2 else "val",
        **extra,
    }
    path = f"{record['subset']}/c{i % 3}/{i}.jpg" if status == SUCCESS else None
    return manifest_row(record, status=status, path=path, nbytes=10 if path else None)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Journal blocks of ~300 bytes and row groups of 16 rows: many blocks for a few rows."""
    monkeypatch.setattr(mf_journal, "_JOURNAL_BLOCK", 300)
    monkeypatch.setattr(mf_table, "_MANIFEST_BATCH", 16)


@pytest.fixture
def colliding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every url gets one of 3 digests: the exact url comparisons must keep them apart."""

    def digests(urls: object) -> np.ndarray:
        return np.array([3 + len(u or "") % 3 for u in urls], dtype=np.uint64)  # type: ignore[attr-defined]

    monkeypatch.setattr(mf_table, "url_digests", digests)  # the merges
    monkeypatch.setattr(mf_resume, "url_digests", digests)  # the index of the manifest's urls
    monkeypatch.setattr(mf_resume, "url_digest", lambda url: 3 + len(url) % 3)  # lookups


@pytest.fixture(params=["real", "colliding"])
def digests(request: pytest.FixtureRequest) -> str:
    """Run a test with the real URL digests, then with colliding ones."""
    if request.param == "colliding":
        request.getfixturevalue("colliding")
    return str(request.param)


def _write_journal(root: Path, rows: list[dict[str, object]], torn: str = "") -> None:
    with Journal(root) as journal:
        for row in rows:
            journal.append(row, flush=False)
    if torn:
        with open(root / JOURNAL_NAME, "a", encoding="utf-8") as handle:
            handle.write(torn)


def test_streaming_merge_latest_wins_across_blocks_and_old_manifest(
    tmp_path: Path, small_blocks: None, digests: str
) -> None:
    _write_journal(tmp_path, [_row(i, FAILED) for i in range(40)])
    merge_journal_file(tmp_path)
    assert pq.read_metadata(tmp_path / MANIFEST_NAME).num_row_groups > 1  # streamed in groups
    # second run: retries 0..19 (some twice), adds 40..59, and a killed process's torn line
    rows = [_row(i) for i in range(0, 20)] + [_row(i) for i in range(40, 60)]
    rows += [_row(i, FAILED) for i in range(10, 15)] + [_row(i) for i in range(12, 14)]
    _write_journal(tmp_path, rows, torn='{"url": "http://h/torn.jpg", "sta')
    path = merge_journal_file(tmp_path)
    assert path == tmp_path / MANIFEST_NAME
    assert (tmp_path / JOURNAL_NAME).stat().st_size == 0
    table = pq.read_table(path)
    urls = table["url"].to_pylist()
    assert len(urls) == len(set(urls)) == 60
    status = dict(zip(urls, table["status"].to_pylist(), strict=True))
    expected = {f"http://h/{i}.jpg": SUCCESS for i in range(60)}
    expected.update({f"http://h/{i}.jpg": FAILED for i in (10, 11, 14)})  # latest rows failed
    expected.update({f"http://h/{i}.jpg": FAILED for i in range(20, 40)})  # untouched old rows
    assert status == expected
    # order: kept old rows first (in their order), then journal rows by their latest position
    assert urls[:20] == [f"http://h/{i}.jpg" for i in range(20, 40)]
    assert urls[-2:] == ["http://h/12.jpg", "http://h/13.jpg"]


def test_merge_journal_still_returns_the_table(tmp_path: Path, small_blocks: None) -> None:
    _write_journal(tmp_path, [_row(i) for i in range(30)] + [_row(3, FAILED)])
    table = merge_journal(tmp_path)
    assert table is not None and table.num_rows == 30
    assert table.schema == mf_table.SCHEMA
    assert merge_journal(tmp_path).num_rows == 30  # type: ignore[union-attr]  # idempotent


def test_journal_of_torn_lines_only_keeps_the_manifest(tmp_path: Path) -> None:
    assert merge_journal_file(tmp_path) is None
    (tmp_path / JOURNAL_NAME).write_text('{"url": "http://h/a", "st')
    assert merge_journal_file(tmp_path) is None
    assert not (tmp_path / MANIFEST_NAME).exists()
    assert (tmp_path / JOURNAL_NAME).stat().st_size == 0


def test_merge_manifest_files_latest_updated_wins(tmp_path: Path) -> None:
    older = {**_row(1, FAILED), "updated": 100.0}
    newer = {**_row(1), "updated": 200.0}
    parts = []
    for name, rows in (("a.parquet", [newer, _row(2)]), ("b.parquet", [older, _row(3)])):
        parts.append(tmp_path / name)
        pq.write_table(mf_table.rows_to_table(rows), parts[-1])
    assert merge_manifest_files(parts, tmp_path / MANIFEST_NAME) == 3
    table = pq.read_table(tmp_path / MANIFEST_NAME)
    status = dict(zip(table["url"].to_pylist(), table["status"].to_pylist(), strict=True))
    assert status["http://h/1.jpg"] == SUCCESS  # the later part has an older row: it loses


def test_load_index_is_compact_and_exact(tmp_path: Path, small_blocks: None, digests: str) -> None:
    _write_journal(tmp_path, [_row(i) for i in range(30)])
    merge_journal_file(tmp_path)
    _write_journal(tmp_path, [_row(5, FAILED)])  # unmerged journal row wins
    index = load_index(tmp_path)
    assert isinstance(index, ResumeIndex)
    assert len(index) == 30
    assert index["http://h/4.jpg"] == (SUCCESS, "val/c1/4.jpg")
    assert index["http://h/5.jpg"] == (FAILED, None)
    assert index.get("http://h/99.jpg") is None and "http://h/99.jpg" not in index
    assert dict(index.items())["http://h/7.jpg"] == (SUCCESS, "train/c1/7.jpg")
    # the run's transitions: pending keeps the old path, finished drops it, pop forgets
    index["http://h/4.jpg"] = ("pending", "val/c1/4.jpg")
    assert index["http://h/4.jpg"] == ("pending", "val/c1/4.jpg")
    index["http://h/4.jpg"] = ("finished", None)
    assert index["http://h/4.jpg"] == ("finished", None)
    index["http://h/new.jpg"] = ("pending", None)
    assert index.pop("http://h/new.jpg") == ("pending", None)
    assert "http://h/new.jpg" not in index
    assert index.pop("http://h/6.jpg") == (SUCCESS, "val/c0/6.jpg")
    assert index.get("http://h/6.jpg") is None
    index["http://h/8.jpg"] = ("odd", "elsewhere.jpg")  # not a manifest state: kept exactly
    assert index["http://h/8.jpg"] == ("odd", "elsewhere.jpg")


def test_resume_index_grows_and_stays_small() -> None:
    index = ResumeIndex()
    n = 50_000
    for i in range(n):
        url = f"http://h/{i}"
        assert index.get(url) is None
        index[url] = ("pending", None)
        index[url] = ("finished", None)
    assert len(index) == n
    assert all(index[f"http://h/{i}"] == ("finished", None) for i in range(0, n, 997))
    assert index.get("http://h/x") is None
    assert index.nbytes / n <= 36  # 12-byte slots, at most 3 slots an item


def test_resume_index_equals_a_dict() -> None:
    index = ResumeIndex.from_arrays(
        pa.array(["http://h/a", "http://h/b"]), pa.array([SUCCESS, None]), pa.array(["a", None])
    )
    assert index == {"http://h/a": (SUCCESS, "a"), "http://h/b": (FAILED, None)}
    assert index != {"http://h/a": (SUCCESS, "a")}


def test_derived_files_from_the_file_equal_those_from_the_table(
    tmp_path: Path, small_blocks: None
) -> None:
    rows = [_row(i) for i in range(50)] + [_row(50, FAILED)]
    rows += [_row(60, gbifID=None), _row(61, gbifID="x-1"), _row(62, gbifID="0012")]
    rows.append(_row(63, gbifID="1001", downloadDOI="10.15468/dl.abc"))  # same occurrence as 1
    _write_journal(tmp_path, rows)
    path = merge_journal_file(tmp_path)
    assert path is not None
    table = pq.read_table(path)
    outputs = {}
    for name, manifest in (("file", path), ("table", table)):
        root = tmp_path / name
        for split in ("train", "val"):  # (the images' folders)
            (root / split).mkdir(parents=True)
        write_attribution(root, manifest)
        assert write_metadata(root, manifest) == 54
        outputs[name] = {
            p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()
        }
    assert outputs["file"] == outputs["table"]
    files = outputs["file"]
    assert files[ATTRIBUTION_NAME].count("\n") == 55  # header + 54 stored images
    citation = files[CITATION_NAME]
    assert "Images: 54. Occurrences: 53." in citation  # "1001" twice counts once
    assert "d0,27" in citation and "d1,26" in citation
    assert "https://doi.org/10.15468/dl.abc" in citation
    assert json.loads(files[CLASSES_NAME])  # classes.json written
    lines = [json.loads(x) for x in files[f"train/{METADATA_NAME}"].splitlines()]
    assert {line["label"] for line in lines} == {"c0", "c1", "c2"}
    classes = update_classes_from_manifest(tmp_path / "file", path)
    assert classes.labels == ["c0", "c1", "c2"] and classes.names["c1"] == "S1"


def test_iter_manifest_batches_a_file(tmp_path: Path, small_blocks: None) -> None:
    _write_journal(tmp_path, [_row(i) for i in range(40)])
    path = merge_journal_file(tmp_path)
    assert path is not None
    sizes = [t.num_rows for t in iter_manifest(path, ("url", "status"), batch_size=7)]
    assert sum(sizes) == 40 and max(sizes) <= 7
    assert next(iter_manifest(path, ("url", "status"))).schema.names == ["url", "status"]


def test_url_digests_are_the_records_url_digest() -> None:
    """The vectorised digests of the merges and the index are the one URL digest, row by row."""
    from gbif_dl.records import url_digest

    urls = ["http://h/a.jpg", "http://h/a.jpg?x=1", "", None, "http://h/\ud800.jpg", "ünï"]
    assert mf_table.url_digests(urls).tolist() == [url_digest(u) for u in urls]
    assert mf_table.url_digests([]).dtype == np.uint64


def test_manifest_host_is_the_records_host_key_bounded() -> None:
    """The manifest's host column follows records.host_key, cut to a bounded length."""
    from gbif_dl.records import host_key

    for url in ("http://Img.Example.org:8080/a.jpg", "https://x.org/a", "invalid:abc", ""):
        assert mf_table.url_host(url) == host_key(url)
    long = "http://" + "a" * 5000 + ".org/x.jpg"
    assert mf_table.url_host(long) == host_key(long)[:2000]  # type: ignore[index]
    assert manifest_row({"url": "http://H:81/a"}, status=SUCCESS)["host"] == "h:81"


def test_latest_rows_reads_small_sources_once_and_large_ones_twice() -> None:
    """The second reading of ``latest_rows`` comes from memory while the tables fit in
    ``replay_bytes`` and from the sources again past it; the rows are the same either way
    (the latest of each url, in order, across sources and blocks)."""
    rng = np.random.default_rng(5)
    blocks = [
        rows_to_table(
            [
                {"url": f"http://h/{int(u)}.jpg", "status": SUCCESS if u % 3 else FAILED}
                for u in rng.integers(0, 400, size=300)
            ]
        )
        for _ in range(6)
    ]
    calls = {"a": 0, "b": 0}

    def source(name: str, part: list[pa.Table]) -> Callable[[], Iterator[pa.Table]]:
        def read() -> Iterator[pa.Table]:
            calls[name] += 1
            yield from part

        return read

    def latest(replay_bytes: int) -> list[dict[str, object]]:
        calls.update(a=0, b=0)
        sources = [source("a", blocks[:3]), source("b", blocks[3:])]
        tables = latest_rows(sources, replay_bytes=replay_bytes)
        return [row for table in tables for row in table.select(["url", "status"]).to_pylist()]

    expected: dict[str, object] = {}
    for block in blocks:
        for row in block.select(["url", "status"]).to_pylist():
            expected.pop(row["url"], None)  # the latest row of a url comes last
            expected[row["url"]] = row["status"]
    whole = sum(block.nbytes for block in blocks)

    in_memory = latest(replay_bytes=whole)
    assert calls == {"a": 1, "b": 1}
    read_twice = latest(replay_bytes=whole - 1)
    assert calls == {"a": 2, "b": 2}
    assert in_memory == read_twice
    assert [(row["url"], row["status"]) for row in in_memory] == list(expected.items())

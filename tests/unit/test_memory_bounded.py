"""Issue 19: the resume index and the merges keep what grows with the run on disk.

With the in-memory sizes made tiny, every path spills to sorted runs on disk; the answers must
stay exactly those of the in-memory case: resume skips done items, GONE items stay failed, an
item seen twice in one run is skipped even after its mark spilled, the manifest holds the
latest row of each url, and the citation counts are exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gbif_dl.io import download
from gbif_dl.manifest import (
    FAILED,
    GONE,
    JOURNAL_NAME,
    MANIFEST_NAME,
    SUCCESS,
    Journal,
    ResumeIndex,
    load_index,
    manifest_row,
    merge_journal_file,
    merge_manifest_files,
    rows_to_table,
    spill,
    stored_counts,
)
from gbif_dl.testing.mediahost import MediaHosts
from gbif_dl.writers.attribution import CITATION_NAME, write_attribution


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sort chunks of 16 records, merges of 3 runs reading 4 records a run at a time, fences
    every 4 keys, state tables of 64 slots and key filters of 1,024 bits (many false
    positives): everything spills."""
    monkeypatch.setattr(spill, "CHUNK", 16)
    monkeypatch.setattr(spill, "BLOCK", 4)
    monkeypatch.setattr(spill, "FAN_IN", 3)
    monkeypatch.setattr(spill, "FENCE", 4)
    monkeypatch.setattr(spill, "TABLE_SLOTS", 64)
    monkeypatch.setattr(spill, "FILTER_BITS", 1 << 10)


@pytest.fixture
def hosts() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=2) as media:
        yield media


def _row(i: int, status: str = SUCCESS, **extra: object) -> dict[str, object]:
    record = {"url": f"http://h/{i}.jpg", "label": f"c{i % 3}", "gbifID": str(1000 + i // 2)}
    record.update(extra)
    path = f"c{i % 3}/{i}.jpg" if status == SUCCESS else None
    reason = None if status == SUCCESS else "not_image"
    return manifest_row(record, status=status, path=path, reason=reason)


def _journal(root: Path, rows: list[dict[str, object]]) -> None:
    with Journal(root) as journal:
        for row in rows:
            journal.append(row, flush=False)


def _history() -> list[list[dict[str, object]]]:
    """Three runs' journals: failures, retries, a url failing again, new urls."""
    first = [_row(i, FAILED) for i in range(120)]
    second = [_row(i) for i in range(0, 120, 2)] + [_row(i) for i in range(120, 200)]
    third = [_row(i, FAILED) for i in range(0, 40, 4)] + [_row(i) for i in range(1, 61, 2)]
    third += [_row(7, FAILED), _row(7)]  # twice in one journal: the last wins
    return [first, second, third]


def _merged(root: Path) -> dict[str, tuple[str, str | None]]:
    root.mkdir(parents=True, exist_ok=True)
    for rows in _history():
        _journal(root, rows)
        merge_journal_file(root)
    table = pq.read_table(root / MANIFEST_NAME)
    urls = table["url"].to_pylist()
    assert len(urls) == len(set(urls))  # one row per url
    entries = zip(table["status"].to_pylist(), table["path"].to_pylist(), strict=True)
    return dict(zip(urls, entries, strict=True))


def test_spilled_merge_equals_the_in_memory_merge(tmp_path: Path, tiny: None) -> None:
    spilled = _merged(tmp_path / "spilled")
    with pytest.MonkeyPatch.context() as undo:
        undo.setattr(spill, "CHUNK", 1 << 16)
        in_memory = _merged(tmp_path / "memory")
    assert spilled == in_memory
    assert spilled["http://h/7.jpg"] == (SUCCESS, "c1/7.jpg")
    assert spilled["http://h/4.jpg"] == (FAILED, None)  # failed again in the third run
    assert spilled["http://h/3.jpg"] == (SUCCESS, "c0/3.jpg")
    assert spilled["http://h/99.jpg"] == (FAILED, None)  # untouched since the first run
    assert len(spilled) == 200


def test_spilled_merge_of_manifest_files_keeps_the_latest_updated(
    tmp_path: Path, tiny: None
) -> None:
    parts = []
    for name, offset in (("a.parquet", 0.0), ("b.parquet", 100.0)):
        rows = [
            {**_row(i, FAILED if offset else SUCCESS), "updated": offset + i} for i in range(60)
        ]
        rows += [{**_row(i), "updated": None} for i in range(60, 70)] if offset else []
        parts.append(tmp_path / name)
        pq.write_table(rows_to_table(rows), parts[-1])
    assert merge_manifest_files(parts, tmp_path / MANIFEST_NAME) == 70
    table = pq.read_table(tmp_path / MANIFEST_NAME)
    statuses = set(table["status"].to_pylist())
    assert statuses == {FAILED, SUCCESS}
    status = dict(zip(table["url"].to_pylist(), table["status"].to_pylist(), strict=True))
    assert all(status[f"http://h/{i}.jpg"] == FAILED for i in range(60))  # later updated wins


def test_spilled_index_answers_exactly(tmp_path: Path, tiny: None) -> None:
    expected = _merged(tmp_path)
    _journal(tmp_path, [_row(11, FAILED), _row(500)])  # an unmerged journal wins
    expected["http://h/11.jpg"] = (GONE, None)
    expected["http://h/500.jpg"] = (SUCCESS, "c2/500.jpg")
    index = load_index(tmp_path)
    assert index.nbytes < 10_000
    for url, (status, path) in expected.items():
        want = (GONE, None) if status == FAILED else (status, path)  # not_image: permanent
        assert index[url] == want, url
    assert index.gone_reason("http://h/11.jpg") == "not_image"
    assert index.get("http://h/1000.jpg") is None and len(index) == len(expected)
    # the run's marks on manifest rows and on new urls, spilled past the 64-slot tables
    for i in range(300):
        index[f"http://h/{i}.jpg"] = ("pending", expected.get(f"http://h/{i}.jpg", (0, None))[1])
        index[f"http://h/{i}.jpg"] = ("finished", None)
    assert all(index[f"http://h/{i}.jpg"] == ("finished", None) for i in range(300))
    assert index.pop("http://h/250.jpg") == ("finished", None) and "http://h/250.jpg" not in index
    assert index["http://h/500.jpg"] == (SUCCESS, "c2/500.jpg")
    index.close()
    assert len(index) == 0


def test_spilled_states_of_a_fresh_index() -> None:
    """A run's own marks beyond the bounded table: every url is still seen."""
    index = ResumeIndex()
    n = 250_000  # past one table of 2**17 slots (spills at 2/3 full)
    for i in range(n):
        index[f"http://h/{i}"] = ("pending", None)
        index[f"http://h/{i}"] = ("finished", None)
    assert index.nbytes < 2**17 * 9 + spill.FILTER_BITS // 8 + 64 * 1024  # table, filter, fences
    assert all(index[f"http://h/{i}"] == ("finished", None) for i in range(0, n, 541))
    assert index.get("http://h/x") is None
    index.close()


def test_same_url_twice_in_one_run_is_skipped_after_a_spill(
    hosts: MediaHosts, tmp_path: Path, tiny: None
) -> None:
    """Urls repeated after their marks spilled to disk are skipped, not fetched twice; the
    rerun requests nothing; the manifest has one row per url."""
    urls = [f"{hosts.base_urls[i % 2]}/media/{i}/0.jpg" for i in range(150)]
    stats = download(urls + urls[:40] + urls[100:110], root=tmp_path, progress=False)
    assert (stats["success"], stats["skipped"], stats["failed"]) == (150, 50, 0)
    assert sum(s.requests for s in hosts.stats().values()) == 150
    assert pq.read_metadata(tmp_path / MANIFEST_NAME).num_rows == 150
    hosts.reset_stats()
    again = download(urls, root=tmp_path, progress=False)
    assert (again["success"], again["skipped"]) == (0, 150)
    assert sum(s.requests for s in hosts.stats().values()) == 0
    assert (tmp_path / JOURNAL_NAME).stat().st_size == 0


def test_spilled_citation_counts_are_exact(tmp_path: Path, tiny: None) -> None:
    rows = [_row(i, datasetKey=f"d{i % 3}") for i in range(100)]  # two images an occurrence
    rows += [_row(i, datasetKey="d0", gbifID=f"odd-{i % 5}") for i in range(100, 130)]
    _journal(tmp_path, rows)
    manifest = merge_journal_file(tmp_path)
    assert manifest is not None
    write_attribution(tmp_path, manifest)
    spilled = (tmp_path / CITATION_NAME).read_text()
    with pytest.MonkeyPatch.context() as undo:
        undo.setattr(spill, "CHUNK", 1 << 16)
        write_attribution(tmp_path, manifest)
    assert (tmp_path / CITATION_NAME).read_text() == spilled
    assert "Images: 130. Occurrences: 105." in spilled  # 50 numeric + 5 odd ids (+0 repeats)


def test_stored_counts_per_column_read_in_batches(tmp_path: Path, tiny: None) -> None:
    """The per-stream stored count a quota needs at start: stored rows only, any column."""
    rows = [_row(i, SUCCESS if i % 4 else FAILED, label=f"s{i % 3}") for i in range(50)]
    _journal(tmp_path, rows)
    manifest = merge_journal_file(tmp_path)
    assert manifest is not None
    expected: dict[str, int] = {}
    for i in range(50):
        if i % 4:
            expected[f"s{i % 3}"] = expected.get(f"s{i % 3}", 0) + 1
    assert stored_counts(manifest, "label") == expected
    assert stored_counts(manifest, "stream") == {}  # a column of nulls: no stream to count
    assert stored_counts(manifest, "no such column") == {}
    assert stored_counts(tmp_path / "missing.parquet", "label") == {}

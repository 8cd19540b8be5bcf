"""Writers: atomic files, ImageFolder layout, manifest + journal, attribution, progress."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbif_dl.fetch.result import FetchResult
from gbif_dl.manifest import (
    FAILED,
    JOURNAL_NAME,
    MANIFEST_NAME,
    SCHEMA,
    SUCCESS,
    Journal,
    load_index,
    manifest_row,
    merge_journal,
    read_journal,
    read_manifest,
)
from gbif_dl.progress import Progress
from gbif_dl.writers import imagefolder as imagefolder_module
from gbif_dl.writers._atomic import atomic_path, atomic_write_bytes, is_temp_name, temp_path
from gbif_dl.writers.attribution import ATTRIBUTION_NAME, CITATION_NAME, write_attribution
from gbif_dl.writers.imagefolder import ImageFolderWriter, existing_folders


def _png(size: tuple[int, int] = (8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def _ok(record: dict, body: bytes | None = None, ext: str = ".png") -> FetchResult:
    return FetchResult(record=record, ok=True, body=body or _png(), ext=ext, mime="image/png")


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- atomic ---------------------------------------------------------------------------------


def test_atomic_write_leaves_only_the_final_file(tmp_path: Path) -> None:
    """After an atomic write the folder holds the final file and no temp file."""
    atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert _files(tmp_path) == ["a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_failed_atomic_write_leaves_nothing(tmp_path: Path) -> None:
    """An error while writing leaves neither a final file nor a temp file."""
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert _files(tmp_path) == []


def test_temp_names_are_hidden_and_recognised() -> None:
    """Temp files are dot-files next to the target and never look like final names."""
    tmp = temp_path(Path("x") / "abc.jpg")
    assert tmp.parent == Path("x") and tmp.name.startswith(".abc.jpg.")
    assert is_temp_name(tmp.name)
    assert not is_temp_name("abc.jpg") and not is_temp_name(".hidden")


# --- image folder ---------------------------------------------------------------------------


def test_layout_subset_label_basename_ext(tmp_path: Path) -> None:
    """Files go to root/subset/label/basename.ext, with the extension from the result."""
    writer = ImageFolderWriter(tmp_path)
    rec = {"url": "http://h/a.jpg", "basename": "b1", "label": "Apis mellifera", "subset": "val"}
    path = writer.write(_ok(rec))
    assert path == "val/Apis mellifera/b1.png"
    assert _files(tmp_path) == ["val/Apis mellifera/b1.png"]
    assert Image.open(tmp_path / path).size == (8, 6)


def test_no_label_writes_into_root(tmp_path: Path) -> None:
    """label None or '' means no label folder, as in gbif-dl 0.1."""
    writer = ImageFolderWriter(tmp_path)
    assert writer.write(_ok({"url": "http://h/a", "basename": "x", "label": None})) == "x.png"
    assert writer.write(_ok({"url": "http://h/b", "basename": "y", "label": ""})) == "y.png"


def test_int_label_becomes_a_folder(tmp_path: Path) -> None:
    """A non-string label (a speciesKey int) becomes a folder named by its str()."""
    writer = ImageFolderWriter(tmp_path)
    assert writer.write(_ok({"url": "http://h/a", "basename": "x", "label": 5352251})) == (
        "5352251/x.png"
    )


def test_dict_label_writes_a_json_sidecar(tmp_path: Path) -> None:
    """A dict label (whole record) gets no folder but a <basename>.json next to the image."""
    writer = ImageFolderWriter(tmp_path)
    label = {"gbifID": 3, "species": "Apis"}
    path = writer.write(_ok({"url": "http://h/a", "basename": "x", "label": label}))
    assert path == "x.png"
    assert json.loads((tmp_path / "x.json").read_text()) == label


@pytest.mark.parametrize(
    "label",
    ["../../etc", "/etc", "..", ".", "a/../../b", "a\\..\\b", "x\x00y", "\n", "C:\\Windows"],
)
def test_hostile_labels_stay_inside_root(tmp_path: Path, label: str) -> None:
    """Hostile labels, subsets and basenames become one component inside the root."""
    root = tmp_path / "root"
    root.mkdir()
    writer = ImageFolderWriter(root)
    rec = {"url": "http://h/a", "basename": "../../evil", "label": label, "subset": "../up"}
    path = writer.write(_ok(rec))
    parts = path.split("/")
    assert len(parts) == 3 and ".." not in parts and "." not in parts
    outside = [p for p in tmp_path.rglob("*") if root not in p.parents and p != root]
    assert outside == []
    assert (root / path).is_file()


def test_distinct_labels_stay_distinct(tmp_path: Path) -> None:
    """Labels that sanitise to similar text still get different folders."""
    writer = ImageFolderWriter(tmp_path)
    labels = ["a/b", "a_b", "a\\b", "a:b"]
    folders = {
        writer.write(_ok({"url": f"http://h/{i}", "basename": str(i), "label": lab})).split("/")[0]
        for i, lab in enumerate(labels)
    }
    assert len(folders) == len(labels)


def test_find_existing_probes_only_preexisting_folders(tmp_path: Path) -> None:
    """A file stored by an earlier run is found; a folder new in this run is not probed."""
    rec = {"url": "http://h/a", "basename": "x", "label": "cat"}
    ImageFolderWriter(tmp_path).write(_ok(rec))
    later = ImageFolderWriter(tmp_path)
    assert later.find_existing(rec) == "cat/x.png"
    assert later.find_existing({"url": "http://h/b", "basename": "y", "label": "cat"}) is None
    assert later.find_existing({"url": "http://h/c", "basename": "z", "label": "dog"}) is None


def test_a_shard_writer_probes_only_the_folders_that_existed_before_its_job(
    tmp_path: Path,
) -> None:
    """folders_before (listed when the job starts): a folder a sibling shard created during the
    job is not probed, one that existed before is; None probes every existing folder."""
    rec = {"url": "http://h/a", "basename": "x", "label": "cat"}
    ImageFolderWriter(tmp_path).write(_ok(rec))
    assert existing_folders(tmp_path) == frozenset({"", "cat"})
    created_by_the_job = ImageFolderWriter.for_shard(tmp_path, folders_before=frozenset({""}))
    assert created_by_the_job.find_existing(rec) is None
    listed = ImageFolderWriter.for_shard(tmp_path, folders_before=existing_folders(tmp_path))
    assert listed.find_existing(rec) == "cat/x.png"
    assert ImageFolderWriter.for_shard(tmp_path).find_existing(rec) == "cat/x.png"


def test_existing_folders_lists_subset_and_label_folders_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two levels (subset/label), no hidden run state, no links, no files; None when there are
    too many to list."""
    (tmp_path / "train" / "Apis" / "deeper").mkdir(parents=True)
    (tmp_path / "dog").mkdir()
    (tmp_path / ".gbif-dl" / "shards").mkdir(parents=True)
    (tmp_path / "dog" / "a.jpg").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "dog")
    assert existing_folders(tmp_path) == frozenset({"", "train", "train/Apis", "dog"})
    monkeypatch.setattr(imagefolder_module, "MAX_LISTED_FOLDERS", 2)
    assert existing_folders(tmp_path) is None


def test_leftover_temp_files_are_removed_on_first_use(tmp_path: Path) -> None:
    """Temp files a killed run left in a folder are removed when a new run first uses it."""
    (tmp_path / "cat").mkdir()
    leftover = temp_path(tmp_path / "cat" / "old.jpg")
    leftover.write_bytes(b"partial")
    (tmp_path / "cat" / "keep.jpg").write_bytes(b"final")
    writer = ImageFolderWriter(tmp_path)
    writer.write(_ok({"url": "http://h/a", "basename": "x", "label": "cat"}))
    assert _files(tmp_path) == ["cat/keep.jpg", "cat/x.png"]


# --- manifest and journal -------------------------------------------------------------------


def _row(url: str, status: str = SUCCESS, **kw: object) -> dict:
    rec = {"url": url, "label": "cat", "gbifID": 7, "datasetKey": "d1", "license": "CC_BY_4_0"}
    path = f"cat/{url[-1]}.png" if status == SUCCESS else None
    return manifest_row(rec, status=status, path=path, **kw)  # type: ignore[arg-type]


def test_journal_torn_last_line_is_ignored(tmp_path: Path) -> None:
    """A line cut by a crash is skipped; complete lines are kept."""
    with Journal(tmp_path) as journal:
        journal.append(_row("http://h/a"))
    with open(tmp_path / JOURNAL_NAME, "a") as handle:
        handle.write('{"url": "http://h/b", "stat')
    assert [r["url"] for r in read_journal(tmp_path)] == ["http://h/a"]


def test_merge_dedupes_by_url_latest_wins_and_truncates(tmp_path: Path) -> None:
    """Merging twice with new rows keeps one row per url, the latest one."""
    with Journal(tmp_path) as journal:
        journal.append(_row("http://h/a", FAILED, reason="timeout"))
        journal.append(_row("http://h/b"))
    merge_journal(tmp_path)
    assert (tmp_path / JOURNAL_NAME).stat().st_size == 0
    with Journal(tmp_path) as journal:
        journal.append(_row("http://h/a", SUCCESS, nbytes=12))
        journal.append(_row("http://h/c", FAILED, reason="http_status", http_status=404))
    table = merge_journal(tmp_path)
    assert table is not None
    rows = {r["url"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["http://h/a", "http://h/b", "http://h/c"]
    assert rows["http://h/a"]["status"] == SUCCESS and rows["http://h/a"]["bytes"] == 12
    assert rows["http://h/c"]["http_status"] == 404
    assert pq.read_table(tmp_path / MANIFEST_NAME).num_rows == 3


def test_buffered_journal_rows_reach_the_file_on_flush(tmp_path: Path) -> None:
    """append(flush=False) keeps rows in memory until flush() (or close) writes them at once."""
    journal = Journal(tmp_path)
    journal.append(_row("http://h/a"), flush=False)
    journal.append(_row("http://h/b"), flush=False)
    assert journal.buffered == 2 and read_journal(tmp_path) == []
    journal.flush()
    assert journal.buffered == 0
    assert [r["url"] for r in read_journal(tmp_path)] == ["http://h/a", "http://h/b"]
    journal.append(_row("http://h/c"), flush=False)
    journal.close()
    assert [r["url"] for r in read_journal(tmp_path)][-1] == "http://h/c"


def test_merge_in_one_journal_keeps_latest_rows_in_latest_order(tmp_path: Path) -> None:
    """Repeated urls within one journal: one row each, the latest, ordered by last occurrence;
    a torn last line falls back to the row-by-row reader with the same result."""
    order = [("c", FAILED), ("a", FAILED), ("b", SUCCESS), ("a", SUCCESS), ("c", SUCCESS)]
    for torn in (False, True):
        root = tmp_path / str(torn)
        root.mkdir()
        with Journal(root) as journal:
            for name, status in order:
                journal.append(_row(f"http://h/{name}", status), flush=False)
        if torn:
            with open(root / JOURNAL_NAME, "a") as handle:
                handle.write('{"url": "http://h/d", "sta')
        table = merge_journal(root)
        assert table is not None and table.schema.equals(SCHEMA)
        assert table["url"].to_pylist() == ["http://h/b", "http://h/a", "http://h/c"]
        assert table["status"].to_pylist() == [SUCCESS, SUCCESS, SUCCESS]
        assert table["updated"].null_count == 0


def test_merge_is_idempotent_when_the_journal_survives(tmp_path: Path) -> None:
    """A crash after the parquet rename but before truncation: merging again changes nothing."""
    with Journal(tmp_path) as journal:
        journal.append(_row("http://h/a"))
    saved = (tmp_path / JOURNAL_NAME).read_bytes()
    merge_journal(tmp_path)
    (tmp_path / JOURNAL_NAME).write_bytes(saved)
    table = merge_journal(tmp_path)
    assert table is not None and table.num_rows == 1


def test_manifest_schema_and_types(tmp_path: Path) -> None:
    """The parquet file has the documented columns with their types."""
    with Journal(tmp_path) as journal:
        journal.append(_row("http://h/a", nbytes=5, sha256="0" * 64, width=3, height=4))
    merge_journal(tmp_path)
    schema = pq.read_schema(tmp_path / MANIFEST_NAME)
    for name in ("url", "basename", "path", "label", "subset", "gbifID", "datasetKey"):
        assert schema.field(name).type == pa.string()
    for name in ("license", "rightsHolder", "creator", "publisher", "references", "status"):
        assert schema.field(name).type == pa.string()
    assert schema.field("http_status").type == pa.int32()
    assert schema.field("bytes").type == pa.int64()
    assert schema.field("width").type == pa.int32()
    assert schema.names == SCHEMA.names


def test_old_manifest_without_new_columns_is_read(tmp_path: Path) -> None:
    """A manifest missing some columns (older version) is read with nulls for them."""
    pq.write_table(
        pa.table({"url": ["http://h/a"], "status": ["success"], "path": ["a.jpg"]}),
        tmp_path / MANIFEST_NAME,
    )
    table = read_manifest(tmp_path)
    assert table is not None and table.schema == SCHEMA
    assert load_index(tmp_path) == {"http://h/a": ("success", "a.jpg")}


def test_manifest_before_timing_columns_merges_with_new_rows(tmp_path: Path) -> None:
    """A manifest written before ``host``/``elapsed_s`` existed reads them as null, and a new
    journal row with timing merges into it with both kept."""
    old_schema = pa.schema([f for f in SCHEMA if f.name not in ("host", "elapsed_s")])
    old = {name: [None] for name in old_schema.names}
    old.update(url=["http://h:81/a"], status=["success"], path=["a.jpg"], attempts=[1])
    pq.write_table(pa.table(old, schema=old_schema), tmp_path / MANIFEST_NAME)
    with Journal(tmp_path) as journal:
        journal.append(
            manifest_row(
                {"url": "http://H:82/b"}, status=FAILED, reason="timeout", attempts=4, elapsed_s=2.5
            )
        )
    merged = merge_journal(tmp_path)
    assert merged is not None and merged.schema == SCHEMA
    table = read_manifest(tmp_path)
    assert table is not None
    rows = {r["url"]: r for r in table.to_pylist()}
    assert (rows["http://h:81/a"]["host"], rows["http://h:81/a"]["elapsed_s"]) == (None, None)
    assert rows["http://H:82/b"]["host"] == "h:82"  # from the url, lower-cased, with its port
    assert (rows["http://H:82/b"]["elapsed_s"], rows["http://H:82/b"]["attempts"]) == (2.5, 4)


def test_index_prefers_journal_rows(tmp_path: Path) -> None:
    """Unmerged journal rows override the manifest in the resume index."""
    with Journal(tmp_path) as journal:
        journal.append(_row("http://h/a", FAILED, reason="timeout"))
    merge_journal(tmp_path)
    with Journal(tmp_path) as journal:
        journal.append(_row("http://h/a"))
    assert load_index(tmp_path)["http://h/a"] == (SUCCESS, "cat/a.png")


# --- attribution ----------------------------------------------------------------------------


def test_attribution_and_citation(tmp_path: Path) -> None:
    """ATTRIBUTION.csv lists stored files; CITATION.txt counts occurrences per dataset."""
    rows = []
    for i, (dataset, gbif_id) in enumerate([("d1", 1), ("d1", 1), ("d1", 2), ("d2", 3)]):
        rec = {
            "url": f"http://h/{i}.jpg",
            "gbifID": gbif_id,
            "datasetKey": dataset,
            "license": "http://creativecommons.org/licenses/by/4.0/",
            "rightsHolder": "Ann" if i else None,
            "creator": "Bob",
            "publisher": "Pub",
            "downloadDOI": "10.15468/dl.abc123",
        }
        rows.append(manifest_row(rec, status=SUCCESS, path=f"x/{i}.jpg"))
    rows.append(manifest_row({"url": "http://h/f", "datasetKey": "d3"}, status=FAILED))
    for row in rows:
        row["updated"] = None
    write_attribution(tmp_path, pa.Table.from_pylist(rows, schema=SCHEMA))

    with open(tmp_path / ATTRIBUTION_NAME, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["file"] for r in table] == ["x/0.jpg", "x/1.jpg", "x/2.jpg", "x/3.jpg"]
    assert table[0]["rightsHolder"] == "" and table[0]["creator"] == "Bob"
    assert table[1]["rightsHolder"] == "Ann" and table[1]["publisher"] == "Pub"
    assert table[3]["occurrence"] == "https://www.gbif.org/occurrence/3"
    assert table[0]["license"] == "http://creativecommons.org/licenses/by/4.0/"

    citation = (tmp_path / CITATION_NAME).read_text()
    lines = citation.splitlines()
    counts = lines[lines.index("datasetKey,count") + 1 :]
    assert [line for line in counts if line] == ["d1,2", "d2,1"]
    assert "https://doi.org/10.15468/dl.abc123" in citation
    assert "d3" not in citation


# --- progress -------------------------------------------------------------------------------


def test_progress_logs_instead_of_printing(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal, progress goes to INFO log lines, never to stdout."""
    caplog.set_level(logging.INFO, logger="gbif_dl.progress")
    progress = Progress(total=3, mode=None, log_every_s=0.0)
    progress.update("success", 2048)
    progress.update("failed")
    progress.update("skipped")
    progress.close()
    assert capsys.readouterr().out == ""
    last = caplog.records[-1].getMessage()
    assert "3/3 items" in last and "ok=1 failed=1 skipped=1" in last and "2.0 KiB" in last


@pytest.mark.parametrize("n_datasets", [3, 70_000])
def test_distinct_occurrences_per_dataset_match_a_set_oracle(n_datasets: int) -> None:
    """The packed in-place count equals counting (dataset, occurrence) pairs in a set, for
    plain ids, huge ids, digest keys of odd ids (top bit set) and many datasets (exact path)."""
    from gbif_dl.writers.attribution import _distinct_per_dataset

    rng = np.random.default_rng(7)
    n = 5_000
    keys = rng.integers(0, 400, n).astype(np.uint64)  # many repeats
    keys[:500] = np.uint64(1 << 63) | rng.integers(0, 50, 500).astype(np.uint64)  # digests
    keys[500:700] = np.uint64((1 << 47) - 1) - rng.integers(0, 5, 200).astype(np.uint64)
    keys[700:800] = np.uint64(1 << 47) + rng.integers(0, 5, 100).astype(np.uint64)
    codes = rng.integers(0, n_datasets, n).astype(np.int32)
    codes[: n // 2] = rng.integers(0, 3, n // 2)  # crowd a few datasets
    expected = np.zeros(n_datasets, dtype=np.int64)
    for code, _ in {(int(c), int(k)) for c, k in zip(codes, keys, strict=True)}:
        expected[code] += 1
    got = _distinct_per_dataset(keys.copy(), codes.copy(), n_datasets)
    assert got.tolist() == expected.tolist()

"""The object-store modules over fsspec's in-memory filesystem (``memory://``): root checks,
whole-object mirroring, the journal as part objects, the store writers and the reader."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gbif_dl.cli.settings import parse_storage_options
from gbif_dl.errors import ConfigError, OutputError
from gbif_dl.fetch.result import FetchResult
from gbif_dl.manifest import (
    FAILED,
    JOURNAL_NAME,
    MANIFEST_NAME,
    SUCCESS,
    Journal,
    manifest_row,
    read_manifest,
)
from gbif_dl.options import DownloadOptions
from gbif_dl.storage.location import (
    check_store_options,
    is_store_root,
    local_root,
    open_store,
)
from gbif_dl.storage.mirror import StoreMirror
from gbif_dl.storage.read import DatasetRoot
from gbif_dl.storage.state import JournalUploader, journal_parts, pull_state, push_state
from gbif_dl.storage.writers import StoreHFWriter, StoreWebDatasetWriter, keys_name

JPEG = b"\xff\xd8\xff\xe0" + b"0" * 60


@pytest.fixture
def mirror() -> StoreMirror:
    """A fresh, empty memory:// root (the memory filesystem is shared by the process)."""
    return StoreMirror(open_store(f"memory://unit-{secrets.token_hex(6)}/ds"))


def _result(i: int, label: str = "bee", subset: str | None = None) -> FetchResult:
    record: dict[str, Any] = {"url": f"http://h/{i}.jpg", "basename": f"k{i}", "label": label}
    if subset:
        record["subset"] = subset
    return FetchResult(record=record, ok=True, body=JPEG, ext=".jpg")


# --- roots and options ---------------------------------------------------------------------------


def test_store_roots_are_fsspec_urls_and_plain_paths_stay_local() -> None:
    """A URL with a protocol is a store root; a path, a Path and file:// are local folders."""
    assert is_store_root("s3://b/ds") and is_store_root("memory://x/y")
    assert not is_store_root("data") and not is_store_root(Path("s3:/x"))
    assert not is_store_root("file:///tmp/x")
    assert local_root("file:///tmp/x") == "/tmp/x"
    assert DownloadOptions(root="file:///tmp/some-root").root == "/tmp/some-root"


def test_store_options_are_checked_before_any_io() -> None:
    """ImageFolder, runner= and a non-mapping storage_options are refused for a store root."""
    with pytest.raises(ConfigError, match="output='webdataset'"):
        check_store_options("s3://b/ds", output="imagefolder", runner=None, storage_options=None)
    with pytest.raises(ConfigError, match="runner='dask'"):
        DownloadOptions(root="s3://b/ds", output="webdataset", runner="dask")
    with pytest.raises(ConfigError, match="must be a mapping"):
        DownloadOptions(root="s3://b/ds", output="webdataset", storage_options="key=x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="local folder"):
        DownloadOptions(root="data", storage_options={"anon": True})
    options = DownloadOptions(root="s3://b/ds", output="hf", storage_options={"anon": True})
    assert options.storage_options == {"anon": True} and options.work_dir is None


def test_open_store_needs_a_folder() -> None:
    for url in ("memory://", "memory:///"):
        with pytest.raises(ConfigError, match="names no folder"):
            open_store(url)


def test_storage_option_flags_nest_and_parse_json() -> None:
    parsed = parse_storage_options(
        ["key=abc", "anon=false", "client_kwargs.endpoint_url=http://h:9000", "n=3"]
    )
    assert parsed == {
        "key": "abc",
        "anon": False,
        "client_kwargs": {"endpoint_url": "http://h:9000"},
        "n": 3,
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_storage_options(["novalue"])


# --- mirror -------------------------------------------------------------------------------------


def test_mirror_writes_whole_objects_and_lists_them(mirror: StoreMirror, tmp_path: Path) -> None:
    local = tmp_path / "a.bin"
    local.write_bytes(b"abc")
    mirror.put_file(local, "x/a.bin")
    mirror.put_bytes("b.txt", b"b")
    assert mirror.get_bytes("x/a.bin") == b"abc" and mirror.get_bytes("nope") is None
    assert sorted(mirror.names()) == ["b.txt", "x"]
    assert mirror.walk() == {"b.txt", "x/a.bin"}
    assert mirror.get_file("x/a.bin", tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == b"abc"
    assert not mirror.get_file("nope", tmp_path / "nope")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "copy.bin"]  # no temp file
    mirror.remove(["b.txt", "missing"])
    assert mirror.walk() == {"x/a.bin"}


def test_mirror_of_a_new_root_is_empty(mirror: StoreMirror) -> None:
    assert mirror.names() == [] and mirror.walk() == set()


# --- journal parts and state ----------------------------------------------------------------------


def test_uploader_sends_whole_new_lines_as_numbered_parts(
    mirror: StoreMirror, tmp_path: Path
) -> None:
    """Only complete lines go up, each once; a journal emptied by the merge starts again."""
    journal = tmp_path / JOURNAL_NAME
    uploader = JournalUploader(mirror, tmp_path)
    assert uploader.upload_new() == 0
    journal.write_bytes(b'{"url": "a"}\n{"url": "b"}\n{"url": "c')  # the last line is being written
    assert uploader.upload_new() == 2
    assert uploader.upload_new() == 0
    with journal.open("ab") as handle:
        handle.write(b'"}\n')
    assert uploader.upload_new() == 1
    parts = journal_parts(mirror)
    assert len(parts) == 2 and parts == sorted(parts)
    assert b"".join(mirror.get_bytes(p) or b"" for p in parts) == journal.read_bytes()
    journal.write_bytes(b'{"url": "d"}\n')  # truncated by a merge, then a new row
    assert uploader.upload_new() == 1
    uploader.close()
    with journal.open("ab") as handle:
        handle.write(b'{"url": "e"}\n')
    assert uploader.upload_new() == 0  # closed
    assert len(journal_parts(mirror)) == 3


def test_pull_state_merges_the_parts_of_a_killed_run(mirror: StoreMirror, tmp_path: Path) -> None:
    """Parts are merged into the manifest, which is uploaded before the parts are deleted; a
    stale local journal is not trusted."""
    first = tmp_path / "first"
    first.mkdir()
    with Journal(first) as journal:
        journal.append(manifest_row({"url": "http://h/a.jpg"}, status=SUCCESS, path="a.jpg"))
    JournalUploader(mirror, first).upload_new()
    with Journal(first) as journal:
        journal.append(manifest_row({"url": "http://h/b.jpg"}, status=FAILED, reason="http_404"))
    other = JournalUploader(mirror, first)
    other.offset = (first / JOURNAL_NAME).stat().st_size - len(
        (first / JOURNAL_NAME).read_bytes().splitlines(keepends=True)[-1]
    )
    other.upload_new()
    assert len(journal_parts(mirror)) == 2

    work = tmp_path / "work"
    work.mkdir()
    (work / JOURNAL_NAME).write_text(
        json.dumps(manifest_row({"url": "http://h/stale.jpg"}, status=SUCCESS, path="s.jpg")) + "\n"
    )
    (work / MANIFEST_NAME).write_bytes(b"not the store's")
    pull_state(mirror, work)
    manifest = read_manifest(work)
    assert manifest is not None
    assert sorted(manifest["url"].to_pylist()) == ["http://h/a.jpg", "http://h/b.jpg"]
    assert journal_parts(mirror) == [] and mirror.exists(MANIFEST_NAME)
    assert (work / JOURNAL_NAME).read_bytes() == b""

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    pull_state(mirror, fresh)
    assert read_manifest(fresh)["url"].to_pylist() == manifest["url"].to_pylist()  # type: ignore[index]


def test_pull_state_of_an_empty_root_removes_local_copies(
    mirror: StoreMirror, tmp_path: Path
) -> None:
    (tmp_path / MANIFEST_NAME).write_bytes(b"old")
    (tmp_path / "classes.json").write_text("{}")
    pull_state(mirror, tmp_path)
    assert not (tmp_path / MANIFEST_NAME).exists() and not (tmp_path / "classes.json").exists()


def test_push_state_uploads_the_manifest_then_drops_the_parts(
    mirror: StoreMirror, tmp_path: Path
) -> None:
    mirror.put_bytes(".gbif-dl-journal-x1-000000.jsonl", b"{}\n")
    assert push_state(mirror, tmp_path, ["ATTRIBUTION.csv"]) == []
    assert len(journal_parts(mirror)) == 1  # no manifest: the parts stay
    (tmp_path / MANIFEST_NAME).write_bytes(b"m")
    (tmp_path / "ATTRIBUTION.csv").write_bytes(b"a")
    assert push_state(mirror, tmp_path, ["ATTRIBUTION.csv", "CITATION.txt"]) == [
        MANIFEST_NAME,
        "ATTRIBUTION.csv",
    ]
    assert journal_parts(mirror) == [] and mirror.get_bytes("ATTRIBUTION.csv") == b"a"


# --- writers ------------------------------------------------------------------------------------


def test_webdataset_shard_reaches_the_store_whole_and_only_then_commits(
    mirror: StoreMirror, tmp_path: Path
) -> None:
    """Nothing is under a shard key until the shard is complete; committed() lists its samples
    only after the upload; the local copy is gone."""
    writer = StoreWebDatasetWriter(tmp_path, mirror=mirror, shard_size=3)
    writer.write(_result(0))
    writer.write(_result(1))
    assert writer.committed() == [] and mirror.names() == []
    writer.write(_result(2, label="ant"))
    assert writer.committed() == [f"train-000000.tar/k{i}.jpg" for i in range(3)]
    assert sorted(mirror.names()) == [".train-000000.tar.keys", "classes.json", "train-000000.tar"]
    with tarfile.open(fileobj=io.BytesIO(mirror.get_bytes("train-000000.tar") or b"")) as tar:
        assert len(tar.getnames()) == 9
    assert mirror.get_bytes(keys_name("train-000000.tar")) == b"k0.jpg\nk1.jpg\nk2.jpg\n"
    assert [p.name for p in tmp_path.iterdir()] == ["classes.json"]
    writer.write(_result(3))
    writer.close()
    assert writer.committed() == ["train-000001.tar/k3.jpg"]


def test_webdataset_rerun_numbers_after_the_store_and_finds_unjournaled_samples(
    mirror: StoreMirror, tmp_path: Path
) -> None:
    for name in "abc":
        (tmp_path / name).mkdir()
    first = StoreWebDatasetWriter(tmp_path / "a", mirror=mirror, shard_size=2)
    for i in range(2):
        first.write(_result(i))
    first.close()
    again = StoreWebDatasetWriter(tmp_path / "b", mirror=mirror, shard_size=2)
    assert again.is_stored("train-000000.tar/k1.jpg")
    assert again.find_existing({"url": "http://h/1.jpg", "basename": "k1"}) == (
        "train-000000.tar/k1.jpg"
    )
    assert again.read_stored("train-000000.tar/k1.jpg") == JPEG
    again.write(_result(5))
    again.close()
    assert "train-000001.tar" in mirror.names()
    # a shard without its keys object (copied in from elsewhere) is read from its headers
    mirror.remove([keys_name("train-000000.tar")])
    third = StoreWebDatasetWriter(tmp_path / "c", mirror=mirror, shard_size=2)
    assert third.find_existing({"url": "http://h/0.jpg", "basename": "k0"}) == (
        "train-000000.tar/k0.jpg"
    )


class _FailingMirror(StoreMirror):
    """A mirror whose shard uploads fail (a full bucket, a dropped connection)."""

    def put_file(self, local: Path | str, name: str) -> None:
        if name.endswith(".tar"):
            raise OSError("upload failed")
        super().put_file(local, name)


def test_a_failed_shard_upload_commits_nothing(mirror: StoreMirror, tmp_path: Path) -> None:
    writer = StoreWebDatasetWriter(tmp_path, mirror=_FailingMirror(mirror.store), shard_size=1)
    with pytest.raises(OSError, match="upload failed"):
        writer.write(_result(0))
    assert writer.committed() == []
    assert not [n for n in mirror.names() if n.endswith(".tar")]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_hf_writer_uploads_each_image_whole_and_resumes_from_the_listing(
    mirror: StoreMirror, tmp_path: Path
) -> None:
    writer = StoreHFWriter(tmp_path, mirror=mirror)
    path = writer.write(_result(0, subset="train"))
    assert path == "train/bee/k0.jpg" and mirror.get_bytes(path) == JPEG
    assert not (tmp_path / path).exists()
    (tmp_path / "b").mkdir()
    again = StoreHFWriter(tmp_path / "b", mirror=mirror)
    record = {"url": "http://h/0.jpg", "basename": "k0", "label": "bee", "subset": "train"}
    assert again.is_stored(path) and again.find_existing(record) == path
    assert again.placement({**record, "subset": "val"}, path) == path  # no move in a store
    assert again.read_stored(path) == JPEG
    with pytest.raises(FileNotFoundError):
        again.read_stored("train/bee/none.jpg")


# --- the whole run and the reader ---------------------------------------------------------------


def test_download_to_a_memory_root_and_read_it_back(tmp_path: Path) -> None:
    """download() into memory://, a rerun from a new work folder skips everything, and the
    reader sees the manifest, the classes and the shards."""
    from gbif_dl.io import download
    from gbif_dl.testing.mediahost import MediaHosts

    root = f"memory://unit-run-{secrets.token_hex(4)}/ds"
    with MediaHosts(n_hosts=1) as hosts:
        items = [
            {"url": f"{hosts.base_urls[0]}/media/9/{i}.jpg", "label": ["a", "b"][i % 2]}
            for i in range(7)
        ]
        stats = download(
            items,
            root=root,
            output="webdataset",
            shard_size=3,
            work_dir=tmp_path / "w1",
            progress=False,
        )
        again = download(
            items,
            root=root,
            output="webdataset",
            shard_size=3,
            work_dir=tmp_path / "w2",
            progress=False,
        )
    assert (stats["success"], again["skipped"], again["success"]) == (7, 7, 0)
    data = DatasetRoot(root)
    assert data.is_store and data.shard_names() == [
        "train-000000.tar",
        "train-000001.tar",
        "train-000002.tar",
    ]
    manifest = data.read_manifest(["url", "status"])
    assert manifest is not None and manifest.num_rows == 7
    classes = data.read_classes()
    assert classes is not None and classes.labels == ["a", "b"]
    assert data.url_of("train-000000.tar") == f"{root}/train-000000.tar"
    with pytest.raises(OutputError, match="outside"):
        data.read_bytes("../other/x.jpg")


def test_reader_of_a_local_root_refuses_storage_options(tmp_path: Path) -> None:
    assert DatasetRoot(tmp_path).read_manifest() is None
    with pytest.raises(OutputError, match="local folder"):
        DatasetRoot(tmp_path, {"anon": True})

"""Datasets written straight to object storage: a real S3 API server (moto) on loopback,
reached through s3fs; nothing is mocked below the S3 API.

Invariants: every object under a final key is whole (each tar opens and holds whole samples, no
temp key is left); the manifest, ATTRIBUTION.csv, CITATION.txt and classes.json are in the
store; a rerun (from another machine) requests nothing the store holds; killed mid-run and
rerun, every image is in the tars exactly once; the loaders and the report read the store.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gbif_dl.errors import ConfigError, OutputError
from gbif_dl.io import download
from gbif_dl.records import url_basename
from gbif_dl.testing.mediahost import HostFaults, MediaHosts
from gbif_dl.writers.classes import ClassIndex

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

HERE = Path(__file__).parent
LABELS = ["Vespa crabro", "Apis mellifera", "Bombus terrestris"]
ROOT_FILES = {"manifest.parquet", "ATTRIBUTION.csv", "CITATION.txt", "classes.json"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (a free port) for this module's tests."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def storage_options(s3_endpoint: str) -> dict[str, Any]:
    """Credentials and endpoint passed to s3fs (nothing set in the environment)."""
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
        "skip_instance_cache": True,
    }


@pytest.fixture
def bucket(storage_options: dict[str, Any]) -> str:
    """A fresh, empty bucket."""
    name = f"gbif-dl-{secrets.token_hex(4)}"
    s3fs.S3FileSystem(**storage_options).call_s3("create_bucket", Bucket=name)
    return name


@pytest.fixture(scope="module")
def hosts() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=2) as media:
        yield media


def _fs(storage_options: dict[str, Any]) -> Any:
    return s3fs.S3FileSystem(**storage_options)


def _records(media: MediaHosts, n: int, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        url = f"{media.base_urls[i % 2]}/media/{7000 + i}/{i}.jpg"
        label = LABELS[i % len(LABELS)]
        out.append(
            {
                "url": url,
                "basename": url_basename(url),
                "label": label,
                "gbifID": str(7000 + i),
                "datasetKey": f"ds-{i % 2}",
                "license": "http://creativecommons.org/licenses/by/4.0/",
                "rightsHolder": f"holder {i}",
                "scientificName": f"{label} L.",
            }
        )
    return out


def _objects(fs: Any, root: str) -> dict[str, bytes]:
    """Every object under ``root`` (s3://bucket/ds) by name relative to it."""
    prefix = root[len("s3://") :]
    fs.invalidate_cache()
    return {key[len(prefix) + 1 :]: fs.cat_file(key) for key in fs.find(prefix)}


def _tar_keys(objects: dict[str, bytes]) -> Counter[str]:
    """Sample keys over every tar object; each tar must read to its end, samples whole."""
    keys: Counter[str] = Counter()
    for name, data in objects.items():
        if not name.endswith(".tar"):
            continue
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            by_key: dict[str, set[str]] = {}
            for member in members:
                key, _, ext = member.name.partition(".")
                by_key.setdefault(key, set()).add(ext)
                handle = tar.extractfile(member)
                assert handle is not None and len(handle.read()) == member.size
        for key, exts in by_key.items():
            assert {"json", "cls"} <= exts and len(exts) == 3, (name, key, exts)
            keys[key] += 1
    return keys


def _manifest(objects: dict[str, bytes]) -> list[dict[str, Any]]:
    return pq.read_table(io.BytesIO(objects["manifest.parquet"])).to_pylist()


def _no_temp_keys(objects: dict[str, bytes]) -> None:
    leftovers = [n for n in objects if "gbif-dl-" in n and (n.endswith(".tmp") or "journal" in n)]
    assert leftovers == []


def _requests(media: MediaHosts) -> int:
    return sum(s.requests for s in media.stats().values())


def test_webdataset_to_s3_whole_objects_and_rerun(
    hosts: MediaHosts, bucket: str, storage_options: dict[str, Any], tmp_path: Path
) -> None:
    """Shards, manifest, attribution, citation and classes land in the store whole; a rerun
    from another machine (a new work folder) requests nothing."""
    root = f"s3://{bucket}/ds"
    records = _records(hosts, 50)
    bad = {"url": f"{hosts.base_urls[0]}/status/404/x.jpg", "label": LABELS[0], "gbifID": "1"}
    stats = download(
        [*records, bad],
        root=root,
        output="webdataset",
        shard_size=16,
        splits={"train": 0.8, "val": 0.2},
        storage_options=storage_options,
        work_dir=tmp_path / "work-a",
        retries=0,
        allow_private=True,
        progress=False,
    )
    assert (stats["success"], stats["failed"]) == (50, 1)
    assert stats["root"] == root and stats["manifest"] == f"{root}/manifest.parquet"
    objects = _objects(_fs(storage_options), root)
    assert set(objects) >= ROOT_FILES
    _no_temp_keys(objects)
    keys = _tar_keys(objects)
    assert sorted(keys) == sorted(r["basename"] for r in records)
    assert set(keys.values()) == {1}
    rows = _manifest(objects)
    assert len(rows) == 51 and Counter(r["status"] for r in rows) == {"success": 50, "failed": 1}
    for row in rows:
        if row["status"] == "success":
            shard, _, member = row["path"].partition("/")
            assert shard in objects and member.startswith(row["basename"])
    assert b"holder 3" in objects["ATTRIBUTION.csv"]
    classes = ClassIndex.from_json(json.loads(objects["classes.json"]))
    assert classes.labels == sorted(LABELS)

    hosts.reset_stats()
    again = download(
        [*records, bad],
        root=root,
        output="webdataset",
        shard_size=16,
        splits={"train": 0.8, "val": 0.2},
        storage_options=storage_options,
        work_dir=tmp_path / "work-b",  # another machine: only the store's state
        retries=0,
        allow_private=True,
        progress=False,
    )
    assert (again["success"], again["skipped"], again["failed"]) == (0, 50, 1)
    assert _requests(hosts) == 0
    after = _objects(_fs(storage_options), root)
    assert sorted(n for n in after if n.endswith(".tar")) == sorted(
        n for n in objects if n.endswith(".tar")
    )
    _no_temp_keys(after)


def test_sigkill_mid_run_then_rerun_stores_every_image_exactly_once(
    bucket: str, storage_options: dict[str, Any], tmp_path: Path
) -> None:
    """A download killed (SIGKILL) with shards in the store leaves only whole objects; the
    rerun, on another machine, fetches only what the store lacks: each image is in the tars
    exactly once and the manifest lists every record."""
    root = f"s3://{bucket}/killed"
    n = 280  # at least 7 s at 2 x 1 request of 50 ms: the journal is uploaded (every 5 s) first
    with MediaHosts(n_hosts=2, faults=HostFaults(latency_s=0.05)) as media:
        records = _records(media, n)
        (tmp_path / "records.json").write_text(json.dumps(records))
        (tmp_path / "options.json").write_text(json.dumps(storage_options))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GBIF_DL_ALLOW_PRIVATE": "1"}
        args = [str(tmp_path / name) for name in ("records.json",)]
        child = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "store_child.py"),
                *args,
                root,
                str(tmp_path / "options.json"),
                str(tmp_path / "work-killed"),
                "8",
            ],
            env=env,
            stderr=subprocess.PIPE,
        )
        fs = _fs(storage_options)
        prefix = root[len("s3://") :]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            fs.invalidate_cache()
            keys = fs.find(prefix) if fs.exists(prefix) else []
            tars = [k for k in keys if k.endswith(".tar")]
            parts = [k for k in keys if "/.gbif-dl-journal-" in k]
            if len(tars) >= 4 and parts:  # rows in a journal part, and shards after it
                break
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stderr is not None
        child.stderr.close()

        before = _objects(fs, root)
        stored = _tar_keys(before)  # every tar object is whole
        assert 32 <= sum(stored.values()) < n and set(stored.values()) == {1}
        assert "manifest.parquet" not in before  # killed before the end

        media.reset_stats()
        stats = download(
            records,
            root=root,
            output="webdataset",
            shard_size=8,
            storage_options=storage_options,
            work_dir=tmp_path / "work-rerun",
            allow_private=True,
            progress=False,
        )
        requested_again = _requests(media)

    assert stats["failed"] == 0
    assert stats["skipped"] == len(stored) and stats["success"] == n - len(stored)
    assert requested_again == n - len(stored)  # stored images are never fetched twice
    after = _objects(fs, root)
    _no_temp_keys(after)
    keys = _tar_keys(after)
    assert set(keys.values()) == {1}
    assert sorted(keys) == sorted(r["basename"] for r in records)
    rows = _manifest(after)
    assert sorted(r["url"] for r in rows) == sorted(r["url"] for r in records)
    assert {r["status"] for r in rows} == {"success"}
    for row in rows:
        assert row["path"].partition("/")[0] in after


@pytest.fixture
def hf_root(
    hosts: MediaHosts, bucket: str, storage_options: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    """40 records downloaded into an ``output="hf"`` store root."""
    root = f"s3://{bucket}/hf"
    records = _records(hosts, 40, start=500)
    stats = download(
        records,
        root=root,
        output="hf",
        splits={"train": 0.75, "test": 0.25},
        storage_options=storage_options,
        work_dir=tmp_path / "work-hf",
        allow_private=True,
        progress=False,
    )
    assert (stats["success"], stats["failed"]) == (40, 0)
    return {"root": root, "records": records}


def test_hf_to_s3_one_whole_object_per_image_and_rerun(
    hosts: MediaHosts, hf_root: dict[str, Any], storage_options: dict[str, Any], tmp_path: Path
) -> None:
    """Each image is one whole object at its manifest path; metadata.jsonl per split, the root
    files; a rerun from another machine requests nothing."""
    from PIL import Image

    root, records = hf_root["root"], hf_root["records"]
    objects = _objects(_fs(storage_options), root)
    assert set(objects) >= ROOT_FILES
    _no_temp_keys(objects)
    rows = _manifest(objects)
    assert {r["status"] for r in rows} == {"success"} and len(rows) == 40
    for row in rows:
        with Image.open(io.BytesIO(objects[row["path"]])) as image:
            image.load()
    images = [n for n in objects if "/" in n and not n.endswith("/metadata.jsonl")]
    assert sorted(images) == sorted(r["path"] for r in rows)
    lines = {
        split: objects[f"{split}/metadata.jsonl"].decode().splitlines()
        for split in ("train", "test")
    }
    assert sum(len(v) for v in lines.values()) == 40

    hosts.reset_stats()
    again = download(
        records,
        root=root,
        output="hf",
        splits={"train": 0.75, "test": 0.25},
        storage_options=storage_options,
        work_dir=tmp_path / "elsewhere",
        allow_private=True,
        progress=False,
    )
    assert (again["success"], again["skipped"]) == (0, 40)
    assert _requests(hosts) == 0


def test_loaders_read_hf_store_root(
    hf_root: dict[str, Any], storage_options: dict[str, Any], tmp_path: Path
) -> None:
    """ImageRecords (no torch), GBIFImageDataset and loaders.hf.load read the store root with
    the same class indices."""
    from gbif_dl.loaders import read_classes
    from gbif_dl.loaders.images import ImageRecords

    root = hf_root["root"]
    classes = read_classes(root, storage_options)
    assert classes.labels == sorted(LABELS)
    records = ImageRecords(root, split=None, storage_options=storage_options)
    assert len(records) == 40
    label_of = {r["url"]: r["label"] for r in hf_root["records"]}
    for i in range(len(records)):
        assert records.image(i).mode == "RGB"
        assert records.targets[i] == classes.index(label_of[records.records[i]["url"]])
    train = ImageRecords(root, split="train", storage_options=storage_options)
    assert 0 < len(train) < 40

    hf = pytest.importorskip("gbif_dl.loaders.hf")
    loaded = hf.load(
        root,
        storage_options=storage_options,
        copy_dir=tmp_path / "copy",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert sum(part.num_rows for part in loaded.values()) == 40
    assert loaded["train"].features["label"].names == classes.labels

    pytest.importorskip("torch")
    from gbif_dl.loaders.torch import GBIFImageDataset

    data = GBIFImageDataset(root, split="train", storage_options=storage_options)
    image, target = data[0]
    assert len(data) == len(train) and image.mode == "RGB" and target == train.targets[0]


def test_webdataset_loader_and_report_read_the_store(
    hosts: MediaHosts, bucket: str, storage_options: dict[str, Any], tmp_path: Path
) -> None:
    """The webdataset loader streams the store's shards (every sample once, the classes of
    classes.json); `gbif-dl report s3://...` reads the manifest from the store."""
    from gbif_dl.cli import main

    root = f"s3://{bucket}/wds"
    records = _records(hosts, 30, start=900)
    download(
        records,
        root=root,
        output="webdataset",
        shard_size=7,
        storage_options=storage_options,
        work_dir=tmp_path / "work",
        allow_private=True,
        progress=False,
    )
    wds_loader = pytest.importorskip("gbif_dl.loaders.webdataset")
    classes = wds_loader.classes(root, storage_options)
    shards = wds_loader.shard_paths(root, "train", storage_options)
    assert len(shards) == 5 and all(url.startswith(f"{root}/train-") for url in shards)
    seen = []
    label_of = {r["url"]: r["label"] for r in records}
    for image, target, record in wds_loader.load(
        root, with_record=True, storage_options=storage_options
    ):
        assert image.mode == "RGB" and target == classes.index(label_of[record["url"]])
        seen.append(record["url"])
    assert sorted(seen) == sorted(label_of)
    shuffled = wds_loader.load(root, shuffle=10, seed=1, storage_options=storage_options)
    assert len(list(shuffled)) == 30

    options = [f"--storage-option={key}={value}" for key, value in _flat(storage_options)]
    assert main(["report", root, *options]) == 0
    assert _fs(storage_options).exists(f"{root[5:]}/report.html")


def _flat(options: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``storage_options`` as dotted KEY=VALUE pairs for ``--storage-option``."""
    out: list[tuple[str, str]] = []
    for key, value in options.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append(
                (f"{prefix}{key}", json.dumps(value) if not isinstance(value, str) else value)
            )
    return out


def test_cli_download_to_s3(
    hosts: MediaHosts, bucket: str, storage_options: dict[str, Any], tmp_path: Path
) -> None:
    """`gbif-dl download --root s3://... --storage-option ...` writes the dataset to the store."""
    from gbif_dl.cli import main

    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join(r["url"] for r in _records(hosts, 6, start=1200)) + "\n")
    root = f"s3://{bucket}/cli"
    options = [f"--storage-option={key}={value}" for key, value in _flat(storage_options)]
    code = main(
        [
            "download",
            "--urls",
            str(urls),
            "--root",
            root,
            "--output",
            "webdataset",
            "--allow-private",
            "--work-dir",
            str(tmp_path / "work"),
            *options,
        ]
    )
    assert code == 0
    objects = _objects(_fs(storage_options), root)
    assert set(objects) >= {"manifest.parquet", "train-000000.tar"}
    assert sum(_tar_keys(objects).values()) == 6


def test_missing_bucket_and_credentials_are_named(
    storage_options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing bucket and missing credentials fail before any request, naming the fix."""
    with pytest.raises(OutputError, match=r"bucket 'no-such-bucket' does not exist.*create it"):
        download(
            ["http://127.0.0.1:9/a.jpg"],
            root="s3://no-such-bucket/ds",
            output="webdataset",
            storage_options=storage_options,
            work_dir=tmp_path / "w1",
            progress=False,
        )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    anonymous = {k: v for k, v in storage_options.items() if k not in ("key", "secret")}
    with pytest.raises(OutputError, match=r"no credentials.*storage_options="):
        download(
            ["http://127.0.0.1:9/a.jpg"],
            root="s3://any-bucket/ds",
            output="webdataset",
            storage_options=anonymous,
            work_dir=tmp_path / "w2",
            progress=False,
        )
    assert not (tmp_path / "w1").exists() and not (tmp_path / "w2").exists()


def test_layouts_a_store_does_not_take_are_refused_before_io(tmp_path: Path) -> None:
    """ImageFolder and runner= jobs are refused for a store root with a message naming what to
    use; storage_options= with a local root is refused too."""
    with pytest.raises(ConfigError, match=r"output='webdataset'.*output='hf'"):
        download([], root="s3://bucket/ds", output="imagefolder", progress=False)
    with pytest.raises(ConfigError, match=r"runner='local' cannot write to the object store"):
        download([], root="s3://bucket/ds", output="hf", runner="local", progress=False)
    with pytest.raises(ConfigError, match=r"storage_options= applies to an object-store root"):
        download([], root=tmp_path / "x", storage_options={"anon": True}, progress=False)
    assert not (tmp_path / "x").exists()

"""Training-ready outputs: each layout built from the media hosts, read back with the real
libraries (torch, webdataset, datasets), class indices agreeing across loaders and reruns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbif_dl.errors import ConfigError
from gbif_dl.io import download
from gbif_dl.manifest import JOURNAL_NAME, MANIFEST_NAME
from gbif_dl.records import url_basename
from gbif_dl.testing.mediahost import HostFaults, MediaHosts
from gbif_dl.writers.classes import CLASSES_NAME, load_classes

N = 150
LABELS = ["Vespa crabro", "Apis mellifera", "Bombus terrestris", "Andrena fulva"]
SPLITS = {"train": 0.8, "test": 0.2}


@pytest.fixture(scope="module")
def hosts() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=2) as media:
        yield media


def _records(media: MediaHosts, n: int, labels: list[str], start: int = 0) -> list[dict]:
    out = []
    for i in range(start, start + n):
        url = f"{media.base_urls[i % 2]}/media/{5000 + i}/{i}.jpg"
        label = labels[i % len(labels)]
        out.append(
            {
                "url": url,
                "basename": url_basename(url),
                "label": label,
                "gbifID": str(5000 + i),
                "datasetKey": f"ds-{i % 3}",
                "license": "http://creativecommons.org/licenses/by/4.0/",
                "rightsHolder": f"holder {i}",
                "scientificName": f"{label} L.",
            }
        )
    return out


@pytest.fixture(scope="module")
def built(hosts: MediaHosts, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same records (plus two failures) downloaded once into each layout."""
    base = tmp_path_factory.mktemp("layouts")
    records = _records(hosts, N, LABELS)
    bad = [
        {"url": f"{hosts.base_urls[0]}/status/404/x.jpg", "label": LABELS[0], "gbifID": "1"},
        {"url": f"{hosts.base_urls[1]}/html/y.jpg", "label": LABELS[1], "gbifID": "2"},
    ]
    roots = {}
    for output in ("imagefolder", "webdataset", "hf"):
        root = base / output
        options = {"shard_size": 40} if output == "webdataset" else {}
        stats = download(
            records + bad,
            root=root,
            output=output,
            splits=SPLITS,
            retries=0,
            progress=False,
            **options,
        )
        assert (stats["success"], stats["failed"]) == (N, 2)
        roots[output] = root
    manifest = pq.read_table(roots["imagefolder"] / MANIFEST_NAME).to_pylist()
    subset_of = {row["url"]: row["subset"] for row in manifest if row["status"] == "success"}
    return {"roots": roots, "records": records, "subset_of": subset_of, "base": base}


def _expected(built: dict[str, Any], split: str | None) -> Counter[str]:
    return Counter(
        rec["label"]
        for rec in built["records"]
        if split is None or built["subset_of"][rec["url"]] == split
    )


def _tar_samples(root: Path) -> list[tuple[str, dict[str, bytes]]]:
    """(shard name, members by extension) for every sample of every shard, in order."""
    samples: list[tuple[str, dict[str, bytes]]] = []
    for shard in sorted(root.glob("*.tar")):
        with tarfile.open(shard) as tar:
            current: dict[str, bytes] = {}
            key = None
            for member in tar:
                stem, _, ext = member.name.partition(".")
                if stem != key:
                    if current:
                        samples.append((shard.name, current))
                    key, current = stem, {"__key__": stem.encode()}
                assert ext not in current, f"member {member.name} of {shard.name} not adjacent"
                handle = tar.extractfile(member)
                assert handle is not None
                current[ext] = handle.read()
            if current:
                samples.append((shard.name, current))
    return samples


#: The torch loader's tests run wherever torch is installed (the test extra leaves it out: on a
#: fresh machine pip would fetch a CUDA build of several GB). See the README's "Testing" section.
NEEDS_TORCH = "the torch loader's tests need torch: pip install 'gbif-dl[torch]' (a CPU build)"


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_imagefolder_through_torch_loader(built: dict[str, Any]) -> None:
    """GBIFImageDataset returns every stored image of a split once, decoded as RGB, with the
    class index of its label; split=None returns all; split folders hold only class folders."""
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    from gbif_dl.loaders.torch import GBIFImageDataset

    root = built["roots"]["imagefolder"]
    for split in ("train", "test"):
        assert all(p.is_dir() for p in (root / split).iterdir())  # torchvision/Keras layout
        data = GBIFImageDataset(root, split=split)
        assert data.classes == sorted(LABELS)
        got = Counter(data.classes[target] for target in data.targets)
        assert got == _expected(built, split)
        image, target = data[0]
        assert image.mode == "RGB" and data.classes[target] == data.records[0]["label"]
        with Image.open(data.path(0)) as original:
            assert np.array_equal(_pixels(original), np.asarray(image))
    everything = GBIFImageDataset(root, split=None, transform=lambda im: im.size)
    assert len(everything) == N
    size, _ = everything[3]
    assert isinstance(size, tuple) and len(size) == 2
    with pytest.raises(ConfigError, match="splits are"):
        GBIFImageDataset(root, split="validation")


def test_webdataset_shard_format(built: dict[str, Any]) -> None:
    """Shards are {split}-{n:06d}.tar; each sample is <key>.<img> + .json + .cls, adjacent,
    keys without dots; the .json carries the record and the same class index as .cls."""
    root = built["roots"]["webdataset"]
    names = sorted(p.name for p in root.glob("*.tar"))
    assert names[0] == "test-000000.tar" and "train-000000.tar" in names
    by_url = {rec["url"]: rec for rec in built["records"]}
    samples = _tar_samples(root)
    assert len(samples) == N
    classes = load_classes(root)
    for shard, sample in samples:
        key = sample["__key__"].decode()
        assert "." not in key
        image_ext = [ext for ext in sample if ext in ("jpg", "png")]
        assert sorted(sample) == sorted(["__key__", "json", "cls", *image_ext])
        assert len(image_ext) == 1
        record = json.loads(sample["json"])
        assert record["class_index"] == int(sample["cls"])
        assert classes.labels[int(sample["cls"])] == record["label"]
        source = by_url[record["url"]]
        assert key == source["basename"] and shard.startswith(built["subset_of"][source["url"]])
        for field in ("gbifID", "datasetKey", "license", "rightsHolder", "scientificName"):
            assert record[field] == source[field]
        with Image.open(__import__("io").BytesIO(sample[image_ext[0]])) as image:
            assert image.format == {"jpg": "JPEG", "png": "PNG"}[image_ext[0]]
    sizes = Counter(shard for shard, _ in samples)
    assert all(count <= 40 for count in sizes.values())
    assert sizes["train-000000.tar"] == 40


def test_webdataset_loader_matches_imagefolder(built: dict[str, Any]) -> None:
    """The webdataset pipeline yields each sample of a split once, with the same decoded
    pixels and the same class index as the torch loader over the ImageFolder root."""
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    from gbif_dl.loaders import webdataset as wds_loader
    from gbif_dl.loaders.torch import GBIFImageDataset

    folder = GBIFImageDataset(built["roots"]["imagefolder"], split=None)
    by_url = {row["url"]: i for i, row in enumerate(folder.records)}
    seen = []
    for split in ("train", "test"):
        got: Counter[str] = Counter()
        pipeline = wds_loader.load(built["roots"]["webdataset"], split=split, with_record=True)
        for image, target, record in pipeline:
            i = by_url[record["url"]]
            assert target == folder.targets[i]
            got[folder.classes[target]] += 1
            seen.append(record["url"])
            if len(seen) % 10 == 0:  # pixel equality on a sample of items
                reference, _ = folder[i]
                assert np.array_equal(np.asarray(image), np.asarray(reference))
        assert got == _expected(built, split)
    assert sorted(seen) == sorted(by_url)


def test_class_indices_agree_across_layouts(built: dict[str, Any]) -> None:
    """ImageFolder, WebDataset and Hugging Face classes.json give every label the same index."""
    from gbif_dl.loaders import read_classes

    roots = built["roots"]
    expected = sorted(LABELS)
    for output in ("imagefolder", "webdataset", "hf"):
        assert read_classes(roots[output]).labels == expected, output
    names = load_classes(roots["hf"]).names
    assert names == {label: f"{label} L." for label in LABELS}


def test_imagefolder_classes_json_matches_the_other_layouts(built: dict[str, Any]) -> None:
    """The ImageFolder layout writes classes.json too, with the same entries (index, label,
    GBIF name) as the other layouts, and the index each WebDataset sample carries in its .cls
    and .json members for its label."""
    roots = built["roots"]
    folder_classes = roots["imagefolder"] / CLASSES_NAME
    assert folder_classes.is_file()
    entries = json.loads(folder_classes.read_text(encoding="utf-8"))["classes"]
    assert entries == json.loads((roots["hf"] / CLASSES_NAME).read_text("utf-8"))["classes"]
    assert entries == json.loads((roots["webdataset"] / CLASSES_NAME).read_text("utf-8"))["classes"]
    index_of = {entry["label"]: entry["index"] for entry in entries}
    assert sorted(index_of) == sorted(LABELS) and sorted(index_of.values()) == [0, 1, 2, 3]
    samples = _tar_samples(roots["webdataset"])
    assert len(samples) == N
    for _, sample in samples:
        record = json.loads(sample["json"])
        assert int(sample["cls"]) == record["class_index"] == index_of[record["label"]]


def test_torch_dataloaders_with_workers(built: dict[str, Any]) -> None:
    """Both loaders work under torch DataLoader with 2 workers: every sample exactly once."""
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    from torch.utils.data import DataLoader

    from gbif_dl.loaders import webdataset as wds_loader
    from gbif_dl.loaders.torch import GBIFImageDataset

    def to_tensor(image: Image.Image) -> Any:
        return torch.from_numpy(np.array(image.resize((32, 32)))).permute(2, 0, 1)

    folder = GBIFImageDataset(built["roots"]["imagefolder"], split="train", transform=to_tensor)
    targets = []
    for images, batch_targets in DataLoader(folder, batch_size=16, num_workers=2):
        assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.uint8
        targets += batch_targets.tolist()
    assert sorted(targets) == sorted(folder.targets)

    pipeline = wds_loader.load(built["roots"]["webdataset"], split="train", transform=to_tensor)
    wds_targets = []
    for images, batch_targets in DataLoader(pipeline.batched(16), batch_size=None, num_workers=2):
        assert images.shape[1:] == (3, 32, 32)
        wds_targets += batch_targets.tolist()
    assert sorted(wds_targets) == sorted(folder.targets)


def test_hugging_face_layout(built: dict[str, Any]) -> None:
    """load_dataset("imagefolder", data_dir=root) reads images, labels and metadata per split;
    gbif_dl.loaders.hf.load casts labels to ClassLabel with classes.json's order."""
    import datasets

    from gbif_dl.loaders import hf

    root = built["roots"]["hf"]
    cache = str(built["base"] / "hf-cache")
    raw = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=cache)
    assert sorted(raw) == ["test", "train"]
    for split in ("train", "test"):
        rows = raw[split]
        assert Counter(rows["label"]) == _expected(built, split)
        first = rows[0]
        assert first["image"].size[0] > 0 and first["gbifID"].startswith("5")
        assert first["license"].startswith("http://creativecommons.org")
    loaded = hf.load(root, cache_dir=cache)
    names = load_classes(root).labels
    for split in ("train", "test"):
        feature = loaded[split].features["label"]
        assert isinstance(feature, datasets.ClassLabel) and feature.names == names
        assert [feature.int2str(i) for i in loaded[split]["label"]] == raw[split]["label"]
    one = hf.load(root, split="test", cache_dir=cache)
    assert one.num_rows == sum(_expected(built, "test").values())


def test_rerun_keeps_indices_and_shards(hosts: MediaHosts, tmp_path: Path) -> None:
    """A rerun with new labels appends them to classes.json (old indices unchanged), never
    rewrites a finished shard, numbers new shards after the old ones, and the HF metadata
    covers old and new images."""
    old = _records(hosts, 30, ["b", "c"], start=1000)
    new = _records(hosts, 30, ["d", "a", "c"], start=2000)
    wds_root, hf_root = tmp_path / "wds", tmp_path / "hf"
    download(old, root=wds_root, output="webdataset", shard_size=20, progress=False)
    download(old, root=hf_root, output="hf", progress=False)
    shards = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in wds_root.glob("*.tar")}
    assert sorted(shards) == ["train-000000.tar", "train-000001.tar"]

    hosts.reset_stats()
    stats = download(old + new, root=wds_root, output="webdataset", shard_size=20, progress=False)
    assert (stats["skipped"], stats["success"]) == (30, 30)
    assert sum(s.requests for s in hosts.stats().values()) == 30
    download(old + new, root=hf_root, output="hf", progress=False)

    for root in (wds_root, hf_root):
        assert load_classes(root).labels == ["b", "c", "a", "d"]
    for name, (mtime, body) in shards.items():
        assert (wds_root / name).stat().st_mtime_ns == mtime
        assert (wds_root / name).read_bytes() == body
    assert sorted(p.name for p in wds_root.glob("*.tar")) == [
        "train-000000.tar",
        "train-000001.tar",
        "train-000002.tar",
        "train-000003.tar",
    ]
    samples = _tar_samples(wds_root)
    assert len(samples) == 60
    by_label = {json.loads(s["json"])["label"]: int(s["cls"]) for _, s in samples}
    assert by_label == {"b": 0, "c": 1, "a": 2, "d": 3}
    lines = [json.loads(line) for line in (hf_root / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == 60
    assert {line["label"]: line["class_index"] for line in lines} == by_label
    assert all((hf_root / line["file_name"]).is_file() for line in lines)


_CHILD = """
import json, sys
from gbif_dl.io import download
records = json.load(open(sys.argv[1]))
download(records, root=sys.argv[2], output="webdataset", shard_size=15, concurrency=4,
         progress=False)
"""


def _shard_keys(root: Path) -> list[str]:
    return [s["__key__"].decode() for _, s in _tar_samples(root)]


def test_killed_webdataset_run_resumes_without_duplicates(tmp_path: Path) -> None:
    """SIGKILL in the middle of a run: finished shards stay, the unfinished one disappears, and
    the rerun fetches exactly the samples not in a finished shard; in the end every sample is in
    exactly one shard and the manifest points at it."""
    n = 150
    with MediaHosts(n_hosts=2, faults=HostFaults(latency_s=0.03)) as media:
        records = _records(media, n, LABELS)
        records_file = tmp_path / "records.json"
        records_file.write_text(json.dumps(records))
        root = tmp_path / "data"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "GBIF_DL_ALLOW_PRIVATE": "1"}
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(records_file), str(root)],
            env=env,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if root.is_dir() and len(list(root.glob("train-*.tar"))) >= 3:
                break
            time.sleep(0.01)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stderr is not None
        child.stderr.close()

        before = _shard_keys(root)
        assert 45 <= len(before) < n and len(set(before)) == len(before)
        media.reset_stats()
        stats = download(records, root=root, output="webdataset", shard_size=15, progress=False)
        requested_again = sum(s.requests for s in media.stats().values())

    assert stats["failed"] == 0 and stats["success"] + stats["skipped"] == n
    assert requested_again == n - len(before)  # samples in finished shards are never refetched
    keys = _shard_keys(root)
    assert sorted(keys) == sorted(rec["basename"] for rec in records)  # none missing, none twice
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]
    rows = pq.read_table(root / MANIFEST_NAME).to_pylist()
    assert len(rows) == n and {row["status"] for row in rows} == {"success"}
    for row in rows:
        shard, _, member = row["path"].partition("/")
        with tarfile.open(root / shard) as tar:
            assert member in tar.getnames()


def test_shards_finalized_but_not_journaled_are_adopted(hosts: MediaHosts, tmp_path: Path) -> None:
    """If a run dies after renaming shards but before journaling them (simulated by removing
    the manifest and journal), the rerun adopts the samples from the shards: no request, no
    new shard, and the manifest gets the right paths and checksums back."""
    records = _records(hosts, 40, LABELS, start=3000)
    root = tmp_path / "data"
    download(records, root=root, output="webdataset", shard_size=15, progress=False)
    first = {row["url"]: row for row in pq.read_table(root / MANIFEST_NAME).to_pylist()}
    (root / MANIFEST_NAME).unlink()
    (root / JOURNAL_NAME).unlink(missing_ok=True)
    shards = sorted(p.name for p in root.glob("*.tar"))

    hosts.reset_stats()
    stats = download(records, root=root, output="webdataset", shard_size=15, progress=False)
    assert sum(s.requests for s in hosts.stats().values()) == 0
    assert (stats["skipped"], stats["success"], stats["failed"]) == (40, 0, 0)
    assert sorted(p.name for p in root.glob("*.tar")) == shards
    for row in pq.read_table(root / MANIFEST_NAME).to_pylist():
        before = first[row["url"]]
        assert (row["path"], row["sha256"], row["bytes"]) == (
            before["path"],
            before["sha256"],
            before["bytes"],
        )


def test_shard_bytes_bounds_shards(hosts: MediaHosts, tmp_path: Path) -> None:
    """With shard_bytes, a shard is closed as soon as it reaches that size: every shard but
    the last is at least that big, and dropping its last sample would bring it under."""
    records = _records(hosts, 40, LABELS, start=4000)
    limit = 20_000
    download(records, root=tmp_path, output="webdataset", shard_bytes=limit, progress=False)
    shards = sorted(tmp_path.glob("train-*.tar"))
    assert len(shards) >= 3
    for shard in shards[:-1]:
        assert shard.stat().st_size >= limit
        with tarfile.open(shard) as tar:
            last = tar.getmembers()[-3]  # the image of the last sample
        assert last.offset < limit + 2 * 512


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"output": "webdatset"}, "did you mean 'webdataset'"),
        ({"output": "imagefolder", "shard_size": 10}, "shard_size= does not apply"),
        ({"output": "webdataset", "shard_size": 0}, "shard_size must be a positive integer"),
    ],
)
def test_bad_output_arguments_fail_before_any_io(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    """An unknown output or a misplaced shard option is a ConfigError before anything is
    created or requested."""
    root = tmp_path / "never"
    with pytest.raises(ConfigError, match=message):
        download(["http://127.0.0.1:9/a.jpg"], root=root, progress=False, **kwargs)
    assert not root.exists()


_ISOLATION = """
import sys
sys.modules[{module!r}] = None  # as if the extra were not installed
import gbif_dl, gbif_dl.io, gbif_dl.loaders
assert all(sys.modules.get(name) is None for name in ("torch", "datasets", "webdataset"))
try:
    import gbif_dl.loaders.{loader}
except gbif_dl.errors.MissingExtraError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("module", "loader", "extra"),
    [
        ("torch", "torch", "torch"),
        ("webdataset", "webdataset", "webdataset"),
        ("datasets", "hf", "hf"),
    ],
)
def test_missing_extra_is_named(module: str, loader: str, extra: str) -> None:
    """Without its library, a loader raises MissingExtraError with the pip command at import;
    importing gbif_dl itself imports none of torch or datasets."""
    code = _ISOLATION.format(module=module, loader=loader)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"pip install 'gbif-dl[{extra}]'" in done.stdout

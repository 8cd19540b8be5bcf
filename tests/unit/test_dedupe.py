"""gbif_dl.dedupe: the dHash, the near-neighbour index against brute force, the content index
under threads, the end-of-run pass on a hand-made manifest, and the resume rule for duplicates."""

from __future__ import annotations

import hashlib
import io
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gbif_dl.dedupe.index import ContentIndex
from gbif_dl.dedupe.keys import NearIndex, SortedKeys
from gbif_dl.dedupe.phash import dhash, hamming
from gbif_dl.dedupe.policy import ContentPolicy
from gbif_dl.dedupe.settle import settle_content
from gbif_dl.errors import ConfigError
from gbif_dl.fetch.result import is_permanent
from gbif_dl.manifest import (
    DUPLICATE,
    GONE,
    MANIFEST_NAME,
    NEAR_DUPLICATE,
    PLACEHOLDER,
    SUCCESS,
    load_index,
    manifest_row,
    read_manifest,
    rows_to_table,
    write_manifest,
)
from gbif_dl.options import DownloadOptions
from gbif_dl.writers.imagefolder import ImageFolderWriter
from gbif_dl.writers.webdataset import WebDatasetWriter


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def _photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, size=(7, 9, 3)).astype("uint8")
    return Image.fromarray(cells, "RGB").resize(size, Image.Resampling.BICUBIC)


def test_dhash_keeps_copies_close_and_distinct_photos_apart() -> None:
    photos = [_photo(seed) for seed in range(40)]
    hashes = [dhash(_jpeg(p)) for p in photos]
    assert all(h is not None for h in hashes)
    for photo, value in zip(photos, hashes, strict=True):
        assert value is not None
        half = dhash(_jpeg(photo.resize((160, 120)), quality=60))
        quarter = dhash(_jpeg(photo.resize((80, 60))))
        png = io.BytesIO()
        photo.save(png, "PNG")
        for copy in (half, quarter, dhash(png.getvalue())):
            assert copy is not None and hamming(value, copy) <= ContentPolicy().near_distance
    apart = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]  # type: ignore[arg-type]
    assert min(apart) > ContentPolicy().near_distance


@pytest.mark.parametrize("distance", [0, 1, 3, 4, 6, 10, 15])
def test_the_near_index_finds_exactly_what_brute_force_finds(distance: int) -> None:
    rng = random.Random(distance)
    values = []
    for _ in range(200):
        base = rng.getrandbits(64)
        for _ in range(3):
            value = base
            for _ in range(rng.randint(0, distance + 2)):
                value ^= 1 << rng.randrange(64)
            values.append(value)
    index = NearIndex(distance)
    half = len(values) // 2
    index.add_many(np.array(values[:half], dtype=np.uint64), np.arange(half))
    for value in values[half:]:  # some through the sorted arrays, some through the tail
        index.add(value)
    for query in values[::5]:
        found = index.near(query)
        expected = sorted(i for i, v in enumerate(values) if hamming(v, query) <= distance)
        assert sorted(entry for entry, _ in found) == expected
        assert [d for _, d in found] == sorted(d for _, d in found)


def test_sorted_keys_merge_their_tail() -> None:
    keys = SortedKeys()
    for i in range(5000):
        keys.add(i % 97, i)
    assert len(keys) == 5000
    assert sorted(keys.find(3)) == list(range(3, 5000, 97))
    assert keys.find(1000) == []


def test_two_threads_with_the_same_bytes_store_one_copy() -> None:
    index = ContentIndex(6)
    sha = hashlib.sha256(b"photo").hexdigest()
    claims = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        found = index.claim({"url": f"http://h/{i}", "subset": "train"}, sha, 42)
        claims.append(found)
        if found.status == SUCCESS:
            index.complete(found, f"train/{i}.jpg")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = [c for c in claims if c.status == SUCCESS]
    assert len(stored) == 1
    duplicates = {c.duplicate_of for c in claims if c.status == DUPLICATE}
    assert len(duplicates) == 1 and len(claims) == 8


def test_a_failed_write_lets_the_next_copy_be_stored() -> None:
    index = ContentIndex(6)
    first = index.claim({"url": "http://h/a"}, "aa" * 32, 1)
    index.abandon(first)
    second = index.claim({"url": "http://h/b"}, "aa" * 32, 1)
    assert second.status == SUCCESS


def test_dropping_near_duplicates() -> None:
    index = ContentIndex(4, drop_near=True)
    first = index.claim({"url": "http://h/a", "subset": "val"}, "aa" * 32, 0b1111)
    index.complete(first, "val/a.jpg")
    near = index.claim({"url": "http://h/b", "subset": "train"}, "bb" * 32, 0b0111)
    assert (near.status, near.duplicate_of, near.subset) == (NEAR_DUPLICATE, "val/a.jpg", "val")
    far = index.claim({"url": "http://h/c", "subset": "train"}, "cc" * 32, 0xFFFF << 40)
    assert far.status == SUCCESS and far.subset == "train"


def _stored(root: Path, path: str, body: bytes) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(body)


def _row(
    url: str, gbif_id: str, subset: str, path: str | None, body: bytes, **more: object
) -> dict:
    value = dhash(body)
    return manifest_row(
        {"url": url, "gbifID": gbif_id, "subset": subset, "label": "bee"},
        status=str(more.pop("status", SUCCESS)),
        path=path,
        sha256=hashlib.sha256(body).hexdigest(),
        phash=f"{value:016x}" if value is not None else None,
        **more,  # type: ignore[arg-type]
    )


def test_the_end_pass_merges_splits_removes_copies_and_placeholders(tmp_path: Path) -> None:
    photo = _jpeg(_photo(1))
    copy = _jpeg(_photo(1).resize((160, 120)), quality=60)
    other = _jpeg(_photo(2))
    sign = _jpeg(_photo(3))
    rows = [
        _row("http://h/1", "x", "train", "train/bee/1.jpg", photo),
        _row("http://h/2", "y", "test", "test/bee/2.jpg", copy),
        _row("http://h/3", "y", "test", "test/bee/3.jpg", other),  # y's other photo follows
        _row("http://h/4", "x", "val", "val/bee/4.jpg", photo),  # same bytes, another shard
    ]
    rows += [
        _row(f"http://h/p{i}", f"p{i}", "train", f"train/bee/p{i}.jpg", sign) for i in range(3)
    ]
    bodies = [photo, copy, other, photo, sign, sign, sign]
    for row, body in zip(rows, bodies, strict=True):
        _stored(tmp_path, row["path"], body)
    write_manifest([rows_to_table(rows)], tmp_path / MANIFEST_NAME)
    done = settle_content(
        tmp_path, tmp_path / MANIFEST_NAME, ImageFolderWriter(tmp_path), ContentPolicy()
    )
    after = {r["url"]: r for r in read_manifest(tmp_path).to_pylist()}  # type: ignore[union-attr]
    assert after["http://h/4"]["status"] == DUPLICATE  # x's copy in val, another URL
    assert not (tmp_path / "val/bee/4.jpg").exists()
    # x's photo has a copy in y, which is in test with y's other photo: the majority
    assert {after[f"http://h/{i}"]["subset"] for i in (1, 2, 3)} == {"test"}
    assert after["http://h/1"]["path"] == "test/bee/1.jpg"
    assert (tmp_path / "test/bee/1.jpg").is_file() and not list((tmp_path / "train").rglob("1.jpg"))
    assert after["http://h/1"]["duplicate_of"] == "test/bee/2.jpg"  # whose split it follows
    assert after["http://h/4"]["duplicate_of"] == "test/bee/1.jpg"  # the kept file, moved
    for i in range(3):
        row = after[f"http://h/p{i}"]
        assert row["status"] == PLACEHOLDER and row["path"] is None
        assert not (tmp_path / f"train/bee/p{i}.jpg").exists()
    assert (done.moved, done.duplicates, done.placeholders) == (1, 3, 3)  # 2 sign copies
    index = load_index(tmp_path)
    assert index["http://h/4"][0] == GONE and index["http://h/p0"][0] == GONE


def test_a_layout_that_cannot_move_marks_the_copy_left_behind(tmp_path: Path) -> None:
    photo = _jpeg(_photo(5))
    rows = [
        _row("http://h/1", "x", "train", "train-000000.tar/a.jpg", photo),
        _row("http://h/2", "y", "test", "test-000000.tar/b.jpg", _jpeg(_photo(5), quality=60)),
    ]
    write_manifest([rows_to_table(rows)], tmp_path / MANIFEST_NAME)
    writer = WebDatasetWriter(tmp_path)
    done = settle_content(tmp_path, tmp_path / MANIFEST_NAME, writer, ContentPolicy())
    after = {r["url"]: r for r in read_manifest(tmp_path).to_pylist()}  # type: ignore[union-attr]
    assert done.left == 1 and after["http://h/1"]["status"] == SUCCESS
    left = after["http://h/2"]
    assert left["status"] == NEAR_DUPLICATE and left["duplicate_of"] == "train-000000.tar/a.jpg"


def test_not_stored_reasons_are_permanent_and_options_are_checked() -> None:
    assert all(is_permanent(r) for r in (DUPLICATE, NEAR_DUPLICATE, PLACEHOLDER))
    with pytest.raises(ConfigError, match="near_duplicate_distance"):
        DownloadOptions(near_duplicate_distance=-1)
    with pytest.raises(ConfigError, match="placeholder_occurrences"):
        DownloadOptions(placeholder_occurrences=1)
    policy = DownloadOptions(content_hashes=True, placeholder_occurrences=0).content_policy()
    assert policy.enabled and policy.placeholders is None
    assert not DownloadOptions().content_policy().enabled


def test_the_end_pass_leaves_a_manifest_of_failures_alone(tmp_path: Path) -> None:
    rows = [
        manifest_row({"url": f"http://h/{i}"}, status="failed", reason="timeout") for i in range(3)
    ]
    write_manifest([rows_to_table(rows)], tmp_path / MANIFEST_NAME)
    done = settle_content(
        tmp_path, tmp_path / MANIFEST_NAME, ImageFolderWriter(tmp_path), ContentPolicy()
    )
    assert (done.moved, done.duplicates, done.placeholders, done.left) == (0, 0, 0, 0)


def test_a_copy_that_makes_a_placeholder_releases_its_files_stream_once() -> None:
    index = ContentIndex(6, placeholders=3)
    sha = "ab" * 32
    kept = index.claim({"url": "u0", "gbifID": "1", "stream": "s=a"}, sha, 7)
    index.complete(kept, "a/kept.jpg")
    same_occurrence = index.claim({"url": "u1", "gbifID": "1", "stream": "s=b"}, sha, 7)
    second = index.claim({"url": "u2", "gbifID": "2", "stream": "s=b"}, sha, 7)
    third = index.claim({"url": "u3", "gbifID": "3", "stream": "s=c"}, sha, 7)
    fourth = index.claim({"url": "u4", "gbifID": "4", "stream": "s=c"}, sha, 7)
    assert [c.status for c in (same_occurrence, second, third, fourth)] == ["duplicate"] * 4
    assert [c.released for c in (same_occurrence, second, third, fourth)] == [
        None,
        None,
        "s=a",  # the third occurrence: the kept file (stream a) is a placeholder
        None,  # released once
    ]
    no_rule = ContentIndex(6)
    first = no_rule.claim({"url": "u0", "gbifID": "1", "stream": "s=a"}, sha, 7)
    no_rule.complete(first, "a/kept.jpg")
    copies = [
        no_rule.claim({"url": f"v{i}", "gbifID": str(i), "stream": "s=b"}, sha, 7)
        for i in range(2, 6)
    ]
    assert all(c.released is None for c in copies)

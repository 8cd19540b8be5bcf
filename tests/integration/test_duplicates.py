"""Issue 18, items 2-3: the same photo under several URLs is stored once and in one split;
resized and re-encoded copies follow their original's split; placeholders are excluded.

Real HTTP to the simulator's media hosts (``/copy``, ``/resized``, ``/reencoded`` and
``/placeholder`` paths), plus copies generated here with Pillow and served as they are.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbif_dl.dedupe.phash import dhash, format_phash
from gbif_dl.io import download
from gbif_dl.manifest import DUPLICATE, MANIFEST_NAME, NEAR_DUPLICATE, PLACEHOLDER, SUCCESS
from gbif_dl.sampling.splits import Splitter
from gbif_dl.testing.mediahost import MediaHosts, photo_copy

SPLITS = {"train": 0.5, "val": 0.25, "test": 0.25}


def _rows(root: Path) -> list[dict[str, Any]]:
    return pq.read_table(root / MANIFEST_NAME).to_pylist()


def _stored_files(root: Path) -> dict[str, bytes]:
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith((".jpg", ".png")):
                path = Path(folder) / name
                found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


def _record(url: str, gbif_id: str, label: str = "bee") -> dict[str, Any]:
    return {"url": url, "gbifID": gbif_id, "label": label}


def _download(items: list[dict[str, Any]], root: Path, **keywords: Any) -> Any:
    if keywords.get("runner") is not None:
        keywords.setdefault("workers", 1)
        keywords.setdefault("shard_size", 7)
    keywords.setdefault("content_hashes", True)
    return download(items, root=root, splits=SPLITS, retries=0, progress=False, **keywords)


def _check_one_photo_one_split(root: Path) -> None:
    """No bytes stored twice; every duplicate row names a kept file with its bytes; no
    sha256 in two splits; every occurrence in one split."""
    rows = _rows(root)
    files = _stored_files(root)
    digests = [hashlib.sha256(body).hexdigest() for body in files.values()]
    assert len(digests) == len(set(digests)), "two stored files have the same bytes"
    by_path = {row["path"]: row for row in rows if row["status"] == SUCCESS}
    assert set(by_path) == set(files)
    splits_of_sha: dict[str, set[str]] = defaultdict(set)
    splits_of_occurrence: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["status"] in (SUCCESS, DUPLICATE):
            splits_of_sha[row["sha256"]].add(row["subset"])
        if row["status"] == SUCCESS:
            splits_of_occurrence[row["gbifID"]].add(row["subset"])
            assert row["path"].startswith(row["subset"] + "/")
        if row["status"] == DUPLICATE:
            assert row["reason"] == DUPLICATE
            kept = by_path[row["duplicate_of"]]
            assert kept["sha256"] == row["sha256"]
            assert hashlib.sha256(files[row["duplicate_of"]]).hexdigest() == row["sha256"]
    assert all(len(s) == 1 for s in splits_of_sha.values()), splits_of_sha
    assert all(len(s) == 1 for s in splits_of_occurrence.values()), splits_of_occurrence


@pytest.mark.parametrize("runner", [None, "local"])
def test_the_same_bytes_under_several_urls_are_stored_once(
    tmp_path: Path, runner: str | None
) -> None:
    with MediaHosts(n_hosts=2) as hosts:
        base = hosts.base_urls
        items = []
        for i in range(12):  # each photo behind two URLs of two occurrences (on two hosts)
            items.append(_record(f"{base[0]}/copy/k{i}/a.jpg", f"{i}-a"))
            items.append(_record(f"{base[1]}/copy/k{i}/b.jpg", f"{i}-b"))
        items += [_record(f"{base[0]}/media/{i}/0.jpg", f"m{i}") for i in range(10)]
        stats = _download(items, tmp_path, runner=runner)
        _check_one_photo_one_split(tmp_path)
        rows = _rows(tmp_path)
        statuses = [row["status"] for row in rows]
        assert statuses.count(SUCCESS) == 22 and statuses.count(DUPLICATE) == 12
        assert all(row["phash"] and len(row["phash"]) == 16 for row in rows)
        assert stats.reasons.get("duplicate") == 12 or runner is not None

        hosts.reset_stats()
        again = _download(items, tmp_path, runner=runner)
        refetched = [url for url in hosts.request_log() if "/copy/" in url]
        assert refetched == [], "a duplicate was requested again"
        assert again.success == 0
        _check_one_photo_one_split(tmp_path)
    assert [row["status"] for row in _rows(tmp_path)].count(SUCCESS) == 22


def _resized(body: bytes, scale: float, quality: int = 85) -> bytes:
    with Image.open(io.BytesIO(body)) as image:
        image = image.convert("RGB")
        size = (max(8, int(image.width * scale)), max(8, int(image.height * scale)))
        out = io.BytesIO()
        image.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=quality)
    return out.getvalue()


def _copies(hosts: MediaHosts, count: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Originals and copies (simulator-made and made here) of ``count`` photos, each copy of
    another occurrence; returns the items and which photo each URL shows."""
    base = hosts.base_urls[0]
    items: list[dict[str, Any]] = []
    photo_of: dict[str, int] = {}
    for i in range(count):
        original = f"{base}/copy/p{i}/original.jpg"
        if i % 3 == 0:
            copy = f"{base}/resized/50/p{i}/copy.jpg"
        elif i % 3 == 1:
            copy = f"{base}/reencoded/60/p{i}/copy.jpg"
        else:  # resized to 25% here, with Pillow, and served as it is
            copy = f"{base}/made/p{i}.jpg"
            hosts.serve(f"/made/p{i}.jpg", _resized(photo_copy("copy", 0, f"p{i}")[0], 0.25))
        items += [_record(original, f"o{i}"), _record(copy, f"c{i}")]
        photo_of[original] = photo_of[copy] = i
    return items, photo_of


@pytest.mark.parametrize("output", ["imagefolder", "webdataset"])
def test_resized_and_reencoded_copies_never_leave_their_originals_split(
    tmp_path: Path, output: str
) -> None:
    splitter = Splitter(SPLITS, by="gbifID", seed=0)
    with MediaHosts(n_hosts=1) as hosts:
        items, photo_of = _copies(hosts, 18)
        apart = sum(
            splitter(a) != splitter(b) for a, b in zip(items[::2], items[1::2], strict=True)
        )
        assert apart >= 6  # the occurrences alone would put many pairs in two splits
        _download(items, tmp_path, output=output)
    splits: dict[int, set[str]] = defaultdict(set)
    rows = _rows(tmp_path)
    paths = {row["path"] for row in rows if row["status"] == SUCCESS}
    for row in rows:
        assert row["status"] == SUCCESS, row  # a copy fetched with its original waits for it
        splits[photo_of[row["url"]]].add(row["subset"])
        if row["duplicate_of"] is not None:  # the one stored second names the first
            assert row["duplicate_of"] in paths
    assert all(len(s) == 1 for s in splits.values()), splits
    if output == "imagefolder":
        _check_one_photo_one_split(tmp_path)
        # the dHashes come from the run's hashing processes: the same as hashing the file here
        files = _stored_files(tmp_path)
        for row in rows:
            assert row["phash"] == format_phash(dhash(files[row["path"]]) or 0), row


def test_near_duplicates_can_be_dropped(tmp_path: Path) -> None:
    with MediaHosts(n_hosts=1) as hosts:
        items, _ = _copies(hosts, 9)
        _download(items[0::2], tmp_path)  # the originals first
        _download(items, tmp_path, drop_near_duplicates=True)
    rows = {row["url"]: row for row in _rows(tmp_path)}
    for original, copy in zip(items[0::2], items[1::2], strict=True):
        assert rows[original["url"]]["status"] == SUCCESS
        dropped = rows[copy["url"]]
        assert dropped["status"] == NEAR_DUPLICATE and dropped["path"] is None
        assert dropped["duplicate_of"] == rows[original["url"]]["path"]
    assert len(_stored_files(tmp_path)) == 9


@pytest.mark.parametrize("runner", [None, "local"])
def test_linked_groups_in_two_splits_end_in_one(tmp_path: Path, runner: str | None) -> None:
    """Occurrence x has its own photo and a copy of occurrence y's: streaming stores x's own
    photo in x's split before the copy links x to y; the end of the run moves them together."""
    splitter = Splitter(SPLITS, by="gbifID", seed=0)
    pairs = []
    for i in range(200):
        x, y = f"x{i}", f"y{i}"
        if splitter({"gbifID": x}) != splitter({"gbifID": y}):
            pairs.append((x, y))
        if len(pairs) == 6:
            break
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        first = [_record(f"{base}/media/{x}/own.jpg", x) for x, _ in pairs]
        first += [_record(f"{base}/copy/{y}/y.jpg", y) for _, y in pairs]
        _download(first, tmp_path, runner=runner)
        later = [_record(f"{base}/resized/50/{y}/x.jpg", x) for x, y in pairs]
        _download(first + later, tmp_path, runner=runner)
        _check_one_photo_one_split(tmp_path)
        hosts.reset_stats()
        _download(first + later, tmp_path, runner=runner)  # a rerun moves nothing back
        assert hosts.request_log() == []
    _check_one_photo_one_split(tmp_path)
    rows = {row["gbifID"] + row["url"][-5:]: row for row in _rows(tmp_path)}
    for x, y in pairs:
        assert rows[x + "n.jpg"]["subset"] == rows[y + "y.jpg"]["subset"]


@pytest.mark.parametrize("runner", [None, "local"])
def test_placeholders_are_excluded_by_default(tmp_path: Path, runner: str | None) -> None:
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        items = [_record(f"{base}/placeholder/{i}.jpg", f"p{i}") for i in range(5)]
        items += [_record(f"{base}/media/{i}/0.jpg", f"m{i}") for i in range(6)]
        _download(items, tmp_path, runner=runner)
        rows = _rows(tmp_path)
        placeholders = [row for row in rows if row["status"] == PLACEHOLDER]
        assert len(placeholders) == 5 and all(row["path"] is None for row in placeholders)
        assert all(row["reason"] == PLACEHOLDER for row in placeholders)
        assert len(_stored_files(tmp_path)) == 6
        hosts.reset_stats()
        _download(items, tmp_path, runner=runner)
        assert hosts.request_log() == []

        kept = tmp_path / "kept"
        _download(items, kept, placeholder_occurrences=0, runner=runner)
    statuses = [row["status"] for row in _rows(kept)]
    assert statuses.count(SUCCESS) == 7 and statuses.count(DUPLICATE) == 4


def _quota_item(url: str, stream: str, i: int, *, spare: bool) -> dict[str, Any]:
    return {
        "url": url,
        "label": stream,
        "gbifID": f"{stream}-{i}",
        "stream": f"label={stream}",
        "quota": 5,
        "spare": spare,
    }


@pytest.mark.parametrize("runner", [None, "local"])
def test_placeholders_free_their_quota_places_in_the_same_run(
    tmp_path: Path, runner: str | None
) -> None:
    """A placeholder is known only once its 3rd occurrence arrives; the stream whose file
    it was still ends with exactly its quota, from its spares, in one run."""
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        items = []
        for stream in ("a", "b", "c"):  # each stream: 1 placeholder among 5, then 3 spares
            items += [
                _quota_item(
                    f"{base}/placeholder/{stream}.jpg"
                    if i == 0
                    else f"{base}/media/{stream}{i}/0.jpg",
                    stream,
                    i,
                    spare=False,
                )
                for i in range(5)
            ]
        for stream in ("a", "b", "c"):
            items += [
                _quota_item(f"{base}/media/{stream}s{i}/0.jpg", stream, 10 + i, spare=True)
                for i in range(3)
            ]
        sharded = {} if runner is None else {"runner": runner, "workers": 1, "shard_size": 7}
        stats = download(
            items,
            root=tmp_path,
            splits=SPLITS,
            retries=0,
            progress=False,
            concurrency=1,
            **sharded,
        )
    rows = _rows(tmp_path)
    stored = [row for row in rows if row["status"] == SUCCESS]
    assert sorted(row["stream"] for row in stored) == sorted(
        f"label={s}" for s in "abc" for _ in range(5)
    )
    assert [row["status"] for row in rows].count(PLACEHOLDER) == 3  # one image, 3 occurrences
    assert {name: s["delivered"] for name, s in stats.streams.items()} == {
        f"label={s}": 5 for s in "abc"
    }
    assert not any(s["ran_dry"] for s in stats.streams.values())
    assert len(_stored_files(tmp_path)) == 15
    _check_one_photo_one_split(tmp_path)


def test_without_content_hashes_every_url_is_stored(tmp_path: Path) -> None:
    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        items = [_record(f"{base}/copy/k/{i}.jpg", str(i)) for i in range(3)]
        _download(items, tmp_path, content_hashes=False)
    rows = _rows(tmp_path)
    assert [row["status"] for row in rows] == [SUCCESS] * 3
    assert all(row["phash"] is None and row["sha256"] for row in rows)


def test_splits_turn_content_hashes_on_by_default(tmp_path: Path) -> None:
    """The issue's call: download(items, root=..., splits=...) with no content option is
    leak-free; without splits nothing is hashed (every URL stored, as in gbif-dl 0.1)."""
    with MediaHosts(n_hosts=2) as hosts:
        base = hosts.base_urls
        items = []
        for i in range(8):  # each photo behind two URLs of two occurrences
            items.append(_record(f"{base[0]}/copy/d{i}/a.jpg", f"{i}-a"))
            items.append(_record(f"{base[1]}/copy/d{i}/b.jpg", f"{i}-b"))
        download(items, root=tmp_path / "split", splits=SPLITS, retries=0, progress=False)
        download(items, root=tmp_path / "plain", retries=0, progress=False)
    _check_one_photo_one_split(tmp_path / "split")
    split_rows = _rows(tmp_path / "split")
    assert [r["status"] for r in split_rows].count(DUPLICATE) == 8
    assert all(r["phash"] for r in split_rows)
    plain_rows = _rows(tmp_path / "plain")
    assert [r["status"] for r in plain_rows] == [SUCCESS] * 16
    assert all(r["phash"] is None for r in plain_rows)


def test_the_report_shows_duplicate_groups_and_placeholders(tmp_path: Path) -> None:
    from gbif_dl.report.html import render_html
    from gbif_dl.report.summary import summarize
    from gbif_dl.report.text import format_text

    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        items = [_record(f"{base}/placeholder/{i}.jpg", f"p{i}") for i in range(4)]
        items += [_record(f"{base}/copy/k/{i}.jpg", f"k{i}") for i in range(2)]
        items += [_record(f"{base}/media/{i}/0.jpg", f"m{i}") for i in range(3)]
        _download(items, tmp_path)
    summary = summarize(tmp_path)
    assert summary.duplicates == {PLACEHOLDER: 4, DUPLICATE: 1}
    kinds = {group.kind: group for group in summary.duplicate_groups}
    assert kinds[DUPLICATE].copies == 1 and kinds[DUPLICATE].thumbnail
    assert kinds[PLACEHOLDER].copies == 4
    reasons = {k.split(" ")[0]: n for k, n in summary.failure_reasons.items()}
    assert summary.n_success == 4 and reasons[PLACEHOLDER] == 4
    text = format_text(summary)
    assert "Duplicates (4 placeholder, 1 duplicate)" in text or "Duplicates (1 duplicate" in text
    assert kinds[DUPLICATE].kept in text
    page = render_html(summary)
    assert "<h2>Duplicates" in page and kinds[DUPLICATE].thumbnail in page


def _photo_groups(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Split of each shared photo's rows (by its simulator key ``/<kind>/.../<key>/``)."""
    splits: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        parts = row["url"].split("/")
        if row["status"] == SUCCESS and parts[3] in ("copy", "resized", "reencoded"):
            splits[parts[-2]].add(row["subset"])
    return splits


@pytest.mark.parametrize("source", ["search", "archive"])
def test_a_sampled_dataset_with_shared_photos_and_placeholders(tmp_path: Path, source: str) -> None:
    """The issue's call, on a simulator where 30% of occurrence pairs share a photo (same
    bytes, resized or re-encoded) and 3% of occurrences show a placeholder: one photo, one split;
    no bytes twice; placeholders excluded; the archive of the same occurrences gives the same."""
    import gbif_dl
    from gbif_dl.testing import Simulation, write_dwca

    with Simulation(
        seed=4, size=600, n_hosts=2, n_species=3, photo_copies=0.3, placeholder_share=0.03
    ) as simu:
        query = {"speciesKey": [s["key"] for s in simu.population.species]}
        if source == "search":
            items = gbif_dl.api.generate_urls(
                query, label="speciesKey", api_url=simu.api_url, one_media_per_occurrence=False
            )
        else:
            pop = simu.population
            archive = tmp_path / "dl.zip"
            write_dwca(pop, pop.select({**query, "mediaType": "StillImage"}), archive)
            items = gbif_dl.dwca.generate_urls(
                str(archive), label="speciesKey", one_media_per_occurrence=False
            )
        root = tmp_path / "data"
        download(
            items,
            root=root,
            splits=SPLITS,
            progress=False,
            allow_private=True,
            content_hashes=True,
            fail_threshold=None,
        )
    _check_one_photo_one_split(root)
    rows = _rows(root)
    groups = _photo_groups(rows)
    assert len(groups) >= 20 and all(len(s) == 1 for s in groups.values())
    placeholders = [r for r in rows if "/placeholder/" in r["url"]]
    assert len(placeholders) >= 3 and all(r["status"] == PLACEHOLDER for r in placeholders)
    statuses = {r["status"] for r in rows}
    assert DUPLICATE in statuses


def test_a_duplicate_names_the_new_place_of_a_moved_file(tmp_path: Path) -> None:
    """A rerun that changes the seed moves stored files; a copy met later names the file where
    it is now."""
    first = next(
        str(i)
        for i in range(100)
        if Splitter(SPLITS, by="gbifID", seed=0)({"gbifID": str(i)})
        != Splitter(SPLITS, by="gbifID", seed=1)({"gbifID": str(i)})
    )
    with MediaHosts(n_hosts=1) as hosts:
        original = _record(f"{hosts.base_urls[0]}/copy/m/a.jpg", first)
        copy = _record(f"{hosts.base_urls[0]}/copy/m/b.jpg", "other")
        _download([original], tmp_path, seed=0)
        _download([original, copy], tmp_path, seed=1)
    rows = {row["url"]: row for row in _rows(tmp_path)}
    moved = rows[original["url"]]
    assert moved["subset"] == Splitter(SPLITS, by="gbifID", seed=1)({"gbifID": first})
    assert rows[copy["url"]]["status"] == DUPLICATE
    assert rows[copy["url"]]["duplicate_of"] == moved["path"]
    _check_one_photo_one_split(tmp_path)


def test_the_hosts_can_serve_the_earlier_cheaper_pictures() -> None:
    """distinct_pixels=False: the cached variants (distinct bytes, shared pixels), as before."""
    import urllib.request

    from gbif_dl.dedupe.phash import dhash

    hashes = {}
    with MediaHosts(n_hosts=1, distinct_pixels=False) as cheap, MediaHosts(n_hosts=1) as hosts:
        for name, server in (("cheap", cheap), ("distinct", hosts)):
            bodies = [
                urllib.request.urlopen(f"{server.base_urls[0]}/media/{i}/0.jpg").read()
                for i in range(80)
            ]
            assert len({hashlib.sha256(b).hexdigest() for b in bodies}) == 80
            hashes[name] = {dhash(b) for b in bodies}
    assert len(hashes["distinct"]) == 80 and len(hashes["cheap"]) < 80


def test_copies_do_not_count_against_the_failure_threshold(tmp_path: Path) -> None:
    """Half the URLs are copies: the run does not stop at fail_threshold=0.1 (they are not
    failed fetches), and the CLI exits 0."""
    from gbif_dl.cli import EXIT_OK, main

    with MediaHosts(n_hosts=1) as hosts:
        base = hosts.base_urls[0]
        items = [_record(f"{base}/copy/k{i % 40}/{i}.jpg", f"o{i}") for i in range(80)]
        stats = _download(items, tmp_path / "api", fail_threshold=0.1, placeholder_occurrences=0)
        assert not stats.aborted and stats.success == 40 and stats.reasons == {DUPLICATE: 40}
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"{item['url']}\n" for item in items))
        args = ["download", "--urls", str(urls), "-o", str(tmp_path / "cli"), "--content-hashes"]
        assert main([*args, "--placeholder-occurrences", "0", "-q"]) == EXIT_OK

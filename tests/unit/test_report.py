"""The dataset report: numbers from a real manifest, aligned text, one self-contained HTML page."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbif_dl.errors import OutputError
from gbif_dl.manifest import FAILED, SUCCESS, Journal, manifest_row, merge_journal
from gbif_dl.report import REPORT_NAME, format_text, render_html, summarize, write_html


def _image(path: Path, color: tuple[int, int, int], fmt: str = "JPEG") -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (300, 200), color).save(path, format=fmt)
    return path.stat().st_size


def _dataset(root: Path) -> None:
    """6 bees (4 train, 2 test), 3 wasps (train), 3 failures on two hosts, 1 skipped row."""
    rows = []
    for i in range(6):
        split = "train" if i < 4 else "test"
        rel = f"{split}/bee/b{i}.jpg"
        rows.append(
            {
                "url": f"http://fast.example:80/b{i}.jpg",
                "path": rel,
                "label": "bee",
                "subset": split,
                "status": "success",
                "license": "http://creativecommons.org/licenses/by/4.0/",
                "bytes": _image(root / rel, (200, 150, 0)),
                "attempts": 1,
            }
        )
    for i in range(3):
        rel = f"train/wasp/w{i}.png"
        rows.append(
            {
                "url": f"http://slow.example:80/w{i}.png",
                "path": rel,
                "label": "wasp",
                "subset": "train",
                "status": "success",
                "license": "All rights reserved",
                "bytes": _image(root / rel, (20, 20, 20), "PNG"),
                "attempts": 3,
            }
        )
    for i, (reason, http) in enumerate(
        [("http_status", 404), ("http_status", 404), ("timeout", None)]
    ):
        rows.append(
            {
                "url": f"http://slow.example:80/f{i}.jpg",
                "path": None,
                "label": "wasp",
                "subset": "train",
                "status": "failed",
                "reason": reason,
                "http_status": http,
                "license": None,
                "bytes": None,
                "attempts": 2,
            }
        )
    rows.append({"url": "http://fast.example:80/s.jpg", "label": "bee", "status": "skipped"})
    # an entry pointing outside the root must never be read
    rows.append(
        {"url": "http://fast.example:80/x.jpg", "path": "../outside.jpg", "label": "bee",
         "subset": "train", "status": "success", "license": "CC0_1_0", "bytes": 1}
    )  # fmt: skip
    _image(root.parent / "outside.jpg", (255, 0, 0))
    columns = sorted({key for row in rows for key in row})
    table = pa.table({c: [row.get(c) for row in rows] for c in columns})
    pq.write_table(table, root / "manifest.parquet")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    _dataset(root)
    return root


def test_summary_counts(dataset: Path) -> None:
    """Per-class, per-split, licence, failure and host numbers match the manifest."""
    s = summarize(dataset)
    assert (s.n_success, s.n_failed, s.n_skipped) == (10, 3, 1)
    assert [(c.label, dict(c.per_split), c.failed) for c in s.classes] == [
        ("bee", {"train": 5, "test": 2}, 0),
        ("wasp", {"train": 3}, 3),
    ]
    assert list(s.splits) == ["train", "test"] and s.splits == {"train": 8, "test": 2}
    assert s.licenses == {"CC_BY_4_0": 6, "All rights reserved": 3, "CC0_1_0": 1}
    assert s.failure_reasons == {"http_status (HTTP 404)": 2, "timeout": 1}
    slow, fast = s.hosts
    assert slow.host == "slow.example:80" and slow.failed == 3 and slow.requests == 6
    assert slow.failure_rate == pytest.approx(0.5)
    assert slow.mean_attempts == pytest.approx(2.5)
    assert fast.failure_rate == 0.0


def test_thumbnails_are_small_jpegs_from_inside_the_root(dataset: Path) -> None:
    """Thumbnails alternate between classes, decode as JPEG <= 120 px, and skip paths outside."""
    s = summarize(dataset, thumbnails=4)
    assert [t.label for t in s.thumbnails] == ["bee", "wasp", "bee", "wasp"]
    for thumb in s.thumbnails:
        prefix = "data:image/jpeg;base64,"
        assert thumb.data_uri.startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(thumb.data_uri[len(prefix) :]))) as img:
            assert img.format == "JPEG" and max(img.size) <= 120
    everything = summarize(dataset, thumbnails=100)
    assert len(everything.thumbnails) == 9  # the row pointing outside the root is not read
    assert summarize(dataset, thumbnails=0).thumbnails == []


def test_text_report_is_aligned(dataset: Path) -> None:
    """Tables have a header, a rule, and right-aligned numbers in equal-width columns."""
    text = format_text(summarize(dataset))
    assert text.splitlines()[0].startswith(f"Dataset {dataset}: 10 images, 3 failed, 1 skipped")
    lines = text.splitlines()
    start = lines.index("Classes (2):")
    header, rule, bee, wasp = lines[start + 1 : start + 5]
    assert header.split() == ["class", "train", "test", "total", "failed"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert bee.split() == ["bee", "5", "2", "7", "0"]
    assert wasp.split() == ["wasp", "3", "0", "3", "3"]
    assert len(bee) == len(wasp) == len(header)  # right-aligned numbers end in the same column
    assert "http_status (HTTP 404)" in text and "slow.example:80" in text


def test_html_is_self_contained(dataset: Path) -> None:
    """One file with an inline SVG chart, inline JPEG thumbnails and no outside resource."""
    path = write_html(summarize(dataset))
    assert path == dataset / REPORT_NAME and path.is_file()
    page = path.read_text(encoding="utf-8")
    assert page.count("<svg") >= 2  # class chart and licence breakdown
    assert page.count('<img src="data:image/jpeg;base64,') == 9
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page)
    assert external == []
    assert "<link" not in page and "<script" not in page
    assert "bee" in page and "CC_BY_4_0" in page and "timeout" in page


def test_html_escapes_labels(tmp_path: Path) -> None:
    """Labels from GBIF are untrusted: markup in them is escaped, not rendered."""
    root = tmp_path / "d"
    root.mkdir()
    evil = '<script>alert("x")</script>'
    pq.write_table(
        pa.table({"url": ["http://h/a"], "label": [evil], "status": ["success"]}),
        root / "manifest.parquet",
    )
    page = render_html(summarize(root))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_report_of_the_writers_manifest(tmp_path: Path) -> None:
    """The report reads the manifest the download writers produce (journal merged to parquet)."""
    _image(tmp_path / "x" / "a.jpg", (1, 2, 3))
    with Journal(tmp_path) as journal:
        journal.append(
            manifest_row(
                {"url": "http://h:1/a.jpg", "label": "x", "license": "CC0_1_0"},
                status=SUCCESS,
                path="x/a.jpg",
                nbytes=10,
            )
        )
        journal.append(
            manifest_row(
                {"url": "http://h:1/b.jpg", "label": "x"},
                status=FAILED,
                reason="not_image",
            )
        )
    merge_journal(tmp_path)
    s = summarize(tmp_path, thumbnails=5)
    assert (s.n_success, s.n_failed) == (1, 1)
    assert s.failure_reasons == {"not_image": 1}
    assert s.licenses == {"CC0_1_0": 1}
    assert len(s.thumbnails) == 1


def test_missing_manifest_is_an_output_error(tmp_path: Path) -> None:
    """Pointing the report at a folder without a manifest says what to do."""
    with pytest.raises(OutputError, match="gbif-dl download"):
        summarize(tmp_path)


def test_report_path_must_be_a_file(dataset: Path) -> None:
    """Writing the report onto a folder is refused rather than creating report.html/ folders."""
    (dataset / "folder").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_html(summarize(dataset), dataset / "folder")


def test_slowest_host_is_listed_first_with_its_mean_seconds(tmp_path: Path) -> None:
    """A real download from two hosts, one answering after 0.3 s: the manifest records each
    fetch's host and elapsed seconds, and the report ranks the slow host first with a mean of
    at least its latency."""
    from gbif_dl.io import download
    from gbif_dl.testing.mediahost import HostFaults, MediaHosts

    latency = 0.3
    with MediaHosts(n_hosts=2, faults={1: HostFaults(latency_s=latency)}) as hosts:
        urls = [f"{base}/media/{i}/0.jpg" for base in hosts.base_urls for i in range(4)]
        stats = download(urls, root=tmp_path, per_host=4, progress=False)
        slow_host = hosts.base_urls[1].split("://", 1)[1]
    assert stats["success"] == 8
    rows = pq.read_table(tmp_path / "manifest.parquet").to_pylist()
    assert {r["host"] for r in rows} == {b.split("://", 1)[1] for b in hosts.base_urls}
    assert all(r["attempts"] == 1 and r["elapsed_s"] > 0 for r in rows)
    s = summarize(tmp_path, thumbnails=0)
    assert s.host_timing and len(s.hosts) == 2
    first, second = s.hosts
    assert first.host == slow_host and first.requests == 4
    assert first.mean_seconds is not None and first.mean_seconds >= latency
    assert second.requests == 4 and second.mean_seconds is not None
    text = format_text(s)
    assert "Slowest hosts:" in text and "mean s" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(slow_host))
    assert line.split()[-1] == f"{first.mean_seconds:.2f}"

"""The report streams the manifest: bounded memory, exact counts, a bounded thumbnail sample,
the manifest's own statuses, and terminal-safe text."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gbif_dl.errors import OutputError
from gbif_dl.manifest import (
    FAILED,
    MANIFEST_NAME,
    SUCCESS,
)
from gbif_dl.report import summarize
from gbif_dl.report.thumbnails import ThumbnailSampler


def _write(root: Path, rows: list[dict[str, object]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    columns = sorted({key for row in rows for key in row})
    pq.write_table(
        pa.table({c: [row.get(c) for row in rows] for c in columns}), root / MANIFEST_NAME
    )
    return root


def test_statuses_are_the_manifests_own(tmp_path: Path) -> None:
    """success is an image, failed (or no status) a failure; a status the manifest never writes
    ("ok", "done", "skipped") is neither: counted as skipped and nowhere else."""
    rows: list[dict[str, object]] = [
        {"url": "http://h/1", "label": "a", "status": SUCCESS, "bytes": 5},
        {"url": "http://h/2", "label": "a", "status": FAILED, "reason": "timeout"},
        {"url": "http://h/3", "label": "a", "status": None},
        *({"url": f"http://h/{s}", "label": "b", "status": s} for s in ("ok", "done", "skipped")),
    ]
    s = summarize(_write(tmp_path, rows))
    assert (s.n_rows, s.n_success, s.n_failed, s.n_skipped) == (6, 1, 2, 3)
    assert [(c.label, c.total, c.failed) for c in s.classes] == [("a", 1, 2)]
    assert s.failure_reasons == {"timeout": 1, "unknown": 1}
    assert [(h.host, h.requests, h.failed) for h in s.hosts] == [("h", 3, 2)]


def test_damaged_manifest_is_an_output_error(tmp_path: Path) -> None:
    """A manifest that is not parquet says what to do instead of a pyarrow traceback."""
    (tmp_path / MANIFEST_NAME).write_bytes(b"not parquet at all")
    with pytest.raises(OutputError, match="damaged"):
        summarize(tmp_path)


def _round_robin(rows: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """The reference: every candidate in memory, classes in label order, one of each per round."""
    by_label: dict[str, list[str]] = {}
    for label, path in rows:
        by_label.setdefault(label, []).append(path)
    queues = [by_label[k] for k in sorted(by_label)]
    picked: list[tuple[str, str]] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        for label, queue in zip(sorted(by_label), queues, strict=True):
            if depth < len(queue) and len(picked) < limit and queue[depth].startswith("ok"):
                picked.append((label, queue[depth]))
        depth += 1
    return picked


def test_thumbnail_sample_is_the_round_robin_with_bounded_memory(tmp_path: Path) -> None:
    """Fed in batches, the sampler picks what the in-memory round robin over the classes picks
    (missing files keep their turn but are never shown), holding at most twice its capacity."""
    rnd = random.Random(7)
    rows = []
    for i in range(3000):
        label = f"c{rnd.randrange(40)}"
        name = f"{'ok' if rnd.random() < 0.3 else 'gone'}{i}"
        if name.startswith("ok"):
            (tmp_path / name).write_bytes(b"")
        rows.append((label, name))
    for limit in (1, 7, 48, 2000):
        sampler = ThumbnailSampler(limit, tmp_path)
        biggest = 0
        for start in range(0, len(rows), 128):
            batch = rows[start : start + 128]
            sampler.offer_batch(
                pa.array([label for label, _ in batch]),
                pa.array([name for _, name in batch]),
                pa.array(["CC0_1_0"] * len(batch)),
            )
            biggest = max(biggest, len(sampler.candidates()))
        picked = [(label, file.name) for label, file, _ in sampler.candidates()][:limit]
        assert picked == _round_robin(rows, limit)
        assert biggest <= 2 * limit


def test_thumbnails_keep_alternating_when_files_are_missing(tmp_path: Path) -> None:
    """A dataset that lost most of its files still shows the images that are there."""
    rows: list[dict[str, object]] = []
    for i in range(400):
        label = ("bee", "wasp")[i % 2]
        rows.append({"url": f"http://h/{i}", "label": label, "status": SUCCESS,
                     "path": f"{label}/{i}.jpg"})  # fmt: skip
        if i % 50 < 2:  # 16 of 400 files exist
            (tmp_path / label).mkdir(exist_ok=True)
            Image.new("RGB", (30, 20), (i % 255, 0, 0)).save(tmp_path / label / f"{i}.jpg")
    s = summarize(_write(tmp_path, rows), thumbnails=6)
    assert [t.label for t in s.thumbnails] == ["bee", "wasp"] * 3

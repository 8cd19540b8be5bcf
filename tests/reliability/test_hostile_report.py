"""Hostile data in reports: a manifest of many rows, and labels carrying terminal escapes.

The rows of RELIABILITY.md's second hostile-data pass for ``gbif-dl report``: memory stays
bounded whatever the manifest's size (it is streamed), and nothing from GBIF reaches the terminal
as a control character.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gbif_dl.manifest import FAILED, MANIFEST_NAME, SCHEMA, SUCCESS, iter_manifest, write_manifest
from gbif_dl.report import format_table, format_text, summarize

N_ROWS = 200_000
N_LABELS = 500
#: Peak RSS allowed to a process that summarises N_ROWS rows. The whole-table reader this
#: replaced peaked near 590 MB on this manifest; the streaming one stays near 170 MB (about 80
#: of which are the interpreter, pyarrow and Pillow).
MAX_RSS_MB = 300


def _big_manifest(root: Path, n: int) -> None:
    """``n`` rows of the real schema, written by the manifest's writer: every 10th failed
    (HTTP 404), labels ``species 0..499``, every 5th in ``test``, 40 hosts."""
    i = np.arange(n)
    text = pa.array(i).cast(pa.string())
    ok = pa.array(i % 10 != 0)
    label = pc.binary_join_element_wise("species ", pa.array(i % N_LABELS).cast(pa.string()), "")
    subset = pa.array(np.where(i % 5 == 0, "test", "train"))
    host = pc.binary_join_element_wise("img", pa.array(i % 40).cast(pa.string()), ".org", "")
    columns = {
        "url": pc.binary_join_element_wise("https://", host, "/", text, ".jpg", ""),
        "path": pc.if_else(ok, pc.binary_join_element_wise(subset, label, text, "/"), None),
        "label": label,
        "subset": subset,
        "gbifID": text,
        "license": pa.array(np.array(["CC_BY_4_0", "CC0_1_0"])[i % 2]),
        "status": pa.array(np.where(i % 10 != 0, SUCCESS, FAILED)),
        "reason": pc.if_else(ok, None, "http_status"),
        "http_status": pa.array(np.where(i % 10 != 0, 200, 404).astype(np.int32)),
        "bytes": pc.if_else(ok, pa.array(np.full(n, 1000, np.int64)), None),
        "attempts": pa.array(np.ones(n, np.int32)),
        "host": host,
        "elapsed_s": pa.array(np.full(n, 0.25)),
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in SCHEMA]
    table = pa.Table.from_arrays(
        [a.cast(f.type) for a, f in zip(arrays, SCHEMA, strict=True)], schema=SCHEMA
    )
    write_manifest(iter_manifest(table), root / MANIFEST_NAME)


_CHILD = """
import json, resource, sys
from gbif_dl.report import format_text, summarize
s = summarize(sys.argv[1])
format_text(s)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # Linux: the peak of this program alone (ru_maxrss also counts the parent's peak, which
    # the child inherits through vfork and exec)
    with open("/proc/self/status") as status:
        peak_kb = next(int(ln.split()[1]) for ln in status if ln.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({
    "rss_mb": peak_kb / 1024,
    "counts": [s.n_rows, s.n_success, s.n_failed, s.n_skipped, s.total_bytes],
    "classes": len(s.classes),
    "first": [s.classes[0].label, dict(s.classes[0].per_split), s.classes[0].failed],
    "splits": s.splits, "licenses": s.licenses, "reasons": s.failure_reasons,
    "hosts": [len(s.hosts), sum(h.requests for h in s.hosts), s.hosts[0].mean_seconds],
}))
"""


def test_summarize_streams_a_large_manifest_in_bounded_memory(tmp_path: Path) -> None:
    """Summarising 200,000 rows in a fresh process peaks under a fixed RSS bound (the whole-table
    reader it replaced exceeded it twice over), and every count is exact."""
    _big_manifest(tmp_path, N_ROWS)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    out = json.loads(done.stdout)
    n_failed = N_ROWS // 10
    assert out["counts"] == [N_ROWS, N_ROWS - n_failed, n_failed, 0, (N_ROWS - n_failed) * 1000]
    assert out["classes"] == N_LABELS
    # the first class: "species 1" (rows 1, 501, 1001, ...: none failed, a failed row being a
    # multiple of 10; none in test, a test row being a multiple of 5)
    assert out["first"] == ["species 1", {"train": N_ROWS // N_LABELS}, 0]
    assert out["splits"] == {"train": N_ROWS * 4 // 5, "test": N_ROWS // 5 - n_failed}
    assert out["licenses"] == {"CC_BY_4_0": N_ROWS // 2 - n_failed, "CC0_1_0": N_ROWS // 2}
    assert out["reasons"] == {"http_status (HTTP 404)": n_failed}
    assert out["hosts"] == [40, N_ROWS, 0.25]
    assert out["rss_mb"] < MAX_RSS_MB, out["rss_mb"]


def _write(root: Path, rows: list[dict[str, object]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    columns = sorted({key for row in rows for key in row})
    pq.write_table(
        pa.table({c: [row.get(c) for row in rows] for c in columns}), root / MANIFEST_NAME
    )
    return root


def test_text_report_escapes_control_characters(tmp_path: Path) -> None:
    """Labels, splits, licences, reasons and hosts are untrusted: an escape sequence, a bell or a
    C1 control in them is printed as its escape, never sent raw to the terminal."""
    evil = "\x1b]0;evil\x07\x1b[31m"
    rows = [
        {"url": "http://h/1", "label": evil, "subset": "tr\x9bain", "status": SUCCESS,
         "license": "lic\x1b[2J"},
        {"url": "http://h/2", "label": "ok", "status": FAILED, "reason": "r\x07",
         "host": "h\x1bx"},
    ]  # fmt: skip
    text = format_text(summarize(_write(tmp_path, rows)))
    assert "\\x1b]0;evil\\x07\\x1b[31m" in text
    assert "tr\\x9bain" in text and "lic\\x1b[2J" in text and "r\\x07" in text
    assert "h\\x1bx" in text
    assert not any(ch in text for ch in "\x1b\x07\x9b")
    assert all(ch == "\n" or ch.isprintable() for ch in text)
    # the public table formatter escapes too, and aligns on the escaped text
    header, rule, row = format_table(["name", "n"], [["a\x1bb", 1]])
    assert row.split() == ["a\\x1bb", "1"] and len(row) == len(header) == len(rule)


def test_the_report_command_prints_no_control_character(tmp_path: Path) -> None:
    """`gbif-dl report ROOT`, the real command: the label's escape sequence is printed escaped."""
    evil = "\x1b]0;evil\x07\x1b[31m"
    _write(tmp_path, [{"url": "http://h/1", "label": evil, "status": SUCCESS, "bytes": 3}])
    done = subprocess.run(
        [sys.executable, "-m", "gbif_dl.cli", "report", str(tmp_path), "--no-html"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "\\x1b]0;evil\\x07\\x1b[31m" in done.stdout
    assert not any(ch in done.stdout + done.stderr for ch in "\x1b\x07\x9b")

"""URL lists (.txt, .csv, .parquet) become MediaRecords; unsafe entries are skipped."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gbif_dl.errors import ConfigError
from gbif_dl.records import url_basename
from gbif_dl.sources.urls import read_urls


def test_txt_skips_comments_blank_and_non_http(tmp_path: Path) -> None:
    path = tmp_path / "urls.txt"
    path.write_text("https://a.org/1.jpg\n\n# note\nfile:///etc/passwd\n  http://b.org/2  \n")
    records = list(read_urls(path, label="x"))
    assert [r["url"] for r in records] == ["https://a.org/1.jpg", "http://b.org/2"]
    assert all(r["label"] == "x" and r["basename"] == url_basename(r["url"]) for r in records)


def test_csv_keeps_columns_and_row_labels(tmp_path: Path) -> None:
    path = tmp_path / "urls.csv"
    path.write_text(
        "url,label,license\nhttps://a.org/1,bee,CC0_1_0\njavascript:x,bad,\nhttps://a.org/2,,\n"
    )
    records = list(read_urls(path, label="default"))
    assert [(r["url"], r["label"]) for r in records] == [
        ("https://a.org/1", "bee"),
        ("https://a.org/2", "default"),
    ]
    assert records[0]["license"] == "CC0_1_0" and "license" not in records[1]


def test_parquet_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": ["https://a.org/1", "ftp://x/y"], "label": ["a", "b"]}), path)
    assert [(r["url"], r["label"]) for r in read_urls(path)] == [("https://a.org/1", "a")]
    pq.write_table(pa.table({"link": ["https://a.org/1"]}), path)
    with pytest.raises(ConfigError, match="'url'"):
        list(read_urls(path))
    other = tmp_path / "urls.json"
    other.write_text("[]")
    with pytest.raises(ConfigError, match=r"\.txt"):
        list(read_urls(other))

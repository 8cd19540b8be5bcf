"""Rendition rules: which URL is asked for instead of a known host's original, and when not."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gbif_dl.cli.parser import build_parser
from gbif_dl.cli.settings import run_config
from gbif_dl.fetch import FetchConfig
from gbif_dl.fetch.renditions import Rendition, rendition_for, too_small
from gbif_dl.manifest.table import SCHEMA, manifest_row
from gbif_dl.options import DownloadOptions

S3 = "https://inaturalist-open-data.s3.amazonaws.com/photos/123456"
STATIC = "https://static.inaturalist.org/photos/99"


@pytest.mark.parametrize(
    ("max_size", "size", "side"),
    [(64, "small", 240), (240, "small", 240), (241, "medium", 500), (500, "medium", 500),
     (512, "large", 1024), (1024, "large", 1024)],
)  # fmt: skip
def test_inaturalist_smallest_size_still_at_least_max_size(
    max_size: int, size: str, side: int
) -> None:
    assert rendition_for(f"{S3}/original.jpeg", max_size) == Rendition(f"{S3}/{size}.jpeg", side)
    assert rendition_for(f"{STATIC}/original.JPG?1545", max_size) == Rendition(
        f"{STATIC}/{size}.JPG?1545", side
    )


def test_inaturalist_never_larger_than_the_record_nor_cropped() -> None:
    """A URL already at or below the size needed is fetched as it is; squares are never asked
    for (a crop); past the largest size nothing smaller exists."""
    assert rendition_for(f"{S3}/medium.jpg", 512) is None  # large would be bigger
    assert rendition_for(f"{S3}/large.jpg", 512) is None  # already the one
    assert rendition_for(f"{S3}/large.jpg", 300) == Rendition(f"{S3}/medium.jpg", 500)
    assert rendition_for(f"{S3}/original.jpg", 3000) is None  # original is the largest
    assert rendition_for(f"{S3}/original.jpg", 50) == Rendition(f"{S3}/small.jpg", 240)
    assert rendition_for(f"{S3}/square.jpg", 50) is None


def test_unknown_hosts_and_shapes_are_left_alone() -> None:
    for url in (
        "https://example.org/photos/1/original.jpg",  # another host, same path
        "https://static.inaturalist.org/observations/1/original.jpg",
        "https://static.inaturalist.org/photos/abc/original.jpg",
        "https://static.inaturalist.org/photos/1/huge.jpg",
        "https://evil.static.inaturalist.org.example/photos/1/original.jpg",
        "http://[::1/bad",  # malformed
    ):
        assert rendition_for(url, 512) is None, url


def test_host_port_credentials_and_case_are_kept() -> None:
    url = "http://user:pw@Static.iNaturalist.org:8080/photos/5/original.png?x=1"
    assert rendition_for(url, 200) == Rendition(
        "http://user:pw@Static.iNaturalist.org:8080/photos/5/small.png?x=1", 240
    )


def test_flickr_sizes_that_share_the_secret() -> None:
    base = "https://live.staticflickr.com/65535/52345678901_abc1234def"
    assert rendition_for(f"{base}_b.jpg", 512) == Rendition(f"{base}_z.jpg", 640)
    assert rendition_for(f"{base}_b.jpg", 700) == Rendition(f"{base}_c.jpg", 800)
    assert rendition_for(f"{base}_b.jpg", 500) == Rendition(f"{base}.jpg", 500)
    assert rendition_for(f"{base}_c.jpg", 200) == Rendition(f"{base}_m.jpg", 240)
    farm = "http://farm1.static.flickr.com/2/1418878_1e92283336"
    assert rendition_for(f"{farm}.jpg", 300) == Rendition(f"{farm}_n.jpg", 320)
    # the original, 1600 and 2048 have secrets of their own: nothing can be derived from them
    for suffix in ("o", "h", "k"):
        assert rendition_for(f"{base}_{suffix}.jpg", 512) is None
    assert rendition_for(f"{base}_z.jpg", 1000) is None  # b would be larger than the record


def test_too_small_reads_the_header_only() -> None:
    out = io.BytesIO()
    Image.new("RGB", (200, 511)).save(out, "JPEG")
    assert too_small(out.getvalue(), 512) == "rendition is 200 x 511, smaller than max_size 512"
    assert too_small(out.getvalue(), 511) is None
    assert too_small(b"not an image", 512) is None  # the resize reports what it is


def test_renditions_option_cli_flag_and_manifest_column() -> None:
    assert FetchConfig().renditions is True
    options = DownloadOptions.from_keywords({"renditions": False, "max_size": 64})
    assert options.fetch.renditions is False and options.fetch.max_size == 64
    args = build_parser().parse_args(["download", "--urls", "u.txt", "--no-renditions"])
    config = run_config(args)
    assert config.download_kwargs()["renditions"] is False
    default = run_config(build_parser().parse_args(["download", "--urls", "u.txt"]))
    assert "renditions" not in default.download_kwargs()  # the option's default applies
    assert "fetched_url" in SCHEMA.names
    row = manifest_row(
        {"url": "http://u:pw@h/photos/1/original.jpg"},
        status="success",
        fetched_url="http://u:pw@h/photos/1/large.jpg",
    )
    assert row["url"] == "http://h/photos/1/original.jpg"
    assert row["fetched_url"] == "http://h/photos/1/large.jpg"  # no credentials either
    assert manifest_row({"url": "http://h/a.jpg"}, status="failed")["fetched_url"] is None

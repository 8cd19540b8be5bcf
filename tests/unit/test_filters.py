"""Media filters: type and URL checks, licence allow-list, URL dedupe, reproducible media choice."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from gbif_dl.errors import ConfigError
from gbif_dl.records import is_http_url
from gbif_dl.sampling.filters import (
    DEFAULT_MEDIATYPE,
    LicenseFilter,
    UrlDeduper,
    media_items,
    normalize_mediatype,
    pick_media,
)
from gbif_dl.sources.search import media_types_of

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "gbif-fixtures"


def test_media_items_on_real_edge_cases() -> None:
    """On a real GBIF page: only StillImage entries with an http(s) URL, no DZI descriptor."""
    page = json.loads(
        (FIXTURES / "occurrence-search_taxonKey2683264_limit300_media_edgecases.json").read_text()
    )
    kept = [m for record in page["results"] for m in media_items(record)]
    every = [m for record in page["results"] for m in record.get("media", [])]
    assert kept, "the fixture has usable images"
    assert all(m["type"] == "StillImage" and is_http_url(m["identifier"]) for m in kept)
    assert all(m.get("format") != "dzi" for m in kept)
    assert not any(m.get("type") == "InteractiveResource" for m in kept)
    expected = [
        m
        for m in every
        if m.get("type") == "StillImage"
        and is_http_url(m.get("identifier"))
        and m.get("format") not in ("dzi",)
    ]
    assert len(kept) == len(expected)


def test_media_items_type_and_format_rules() -> None:
    """Sound, viewer pages, manifests, untyped entries and non-http URLs are dropped."""
    record = {
        "media": [
            {"type": "StillImage", "identifier": "https://x.org/ok.jpg"},
            {"type": "stillimage", "format": "image/jpeg", "identifier": "https://x.org/ok2"},
            {"format": "image/png", "identifier": "https://x.org/typed-by-format"},
            {"type": "Sound", "identifier": "https://x.org/a.mp3"},
            {"type": "StillImage", "format": "text/html", "identifier": "https://x.org/viewer"},
            {"type": "StillImage", "format": "audio/mpeg", "identifier": "https://x.org/odd"},
            {"type": "StillImage", "identifier": "file:///etc/passwd"},
            {"type": "StillImage", "identifier": "javascript:alert(1)"},
            {"type": "StillImage"},
            {"identifier": "https://x.org/unknown-kind"},
            "not a dict",
        ]
    }
    urls = [m["identifier"] for m in media_items(record)]
    assert urls == ["https://x.org/ok.jpg", "https://x.org/ok2", "https://x.org/typed-by-format"]
    assert [m["identifier"] for m in media_items(record, "Sound")] == ["https://x.org/a.mp3"]
    assert media_items({"media": None}) == []
    assert media_items({}) == []


def test_unknown_mediatype_is_config_error() -> None:
    assert normalize_mediatype("STILL_IMAGE") == "StillImage"
    with pytest.raises(ConfigError, match="StillImage"):
        media_items({}, "Photo")


def test_license_filter_normalises_both_sides() -> None:
    """Allowed entries and checked licences in URL, enum or free-text form are the same licence."""
    keep = LicenseFilter(["CC_BY_4_0", "https://creativecommons.org/publicdomain/zero/1.0/"])
    assert keep("http://creativecommons.org/licenses/by/4.0/legalcode")
    assert keep("CC BY 4.0")
    assert keep("CC0_1_0")
    assert not keep("http://creativecommons.org/licenses/by-nc/4.0/")
    assert not keep("All rights reserved")
    assert not keep(None)
    assert LicenseFilter(["CC_BY_4_0"], keep_unknown=True)("Usage Conditions Apply")
    assert LicenseFilter(None)("All rights reserved")


def test_license_filter_rejects_unrecognised_allowed_entry() -> None:
    with pytest.raises(ConfigError) as info:
        LicenseFilter(["CC_BY_4_0", "free for all", "MIT"])
    assert "'free for all'" in str(info.value) and "'MIT'" in str(info.value)


def test_url_deduper() -> None:
    dedupe = UrlDeduper()
    urls = [f"https://host/{i % 700}.jpg" for i in range(2000)]
    first = [u for u in urls if not dedupe.seen(u)]
    assert len(first) == 700 == len(set(first)) == len(dedupe)
    assert "https://host/3.jpg" in dedupe and "https://host/9999.jpg" not in dedupe


def test_pick_media_is_reproducible_and_seed_dependent() -> None:
    """Same (seed, key) -> same element; across keys every element gets chosen; seeds differ."""
    media = ["a", "b", "c"]
    picks = [pick_media(media, seed=7, key=str(k)) for k in range(3000)]
    assert picks == [pick_media(media, seed=7, key=str(k)) for k in range(3000)]
    counts = Counter(picks)
    assert set(counts) == {"a", "b", "c"} and min(counts.values()) > 800
    other = [pick_media(media, seed=8, key=str(k)) for k in range(3000)]
    assert sum(x != y for x, y in zip(picks, other, strict=False)) > 1500
    assert pick_media(media, seed=None, key="1") == pick_media(media, seed=0, key="1")
    with pytest.raises(ValueError):
        pick_media([], seed=1, key="x")


def test_the_default_mediatype_is_told_apart_from_the_same_text() -> None:
    """DEFAULT_MEDIATYPE reads as "StillImage" but is not a "StillImage" given explicitly."""
    assert DEFAULT_MEDIATYPE == "StillImage" and repr(DEFAULT_MEDIATYPE) == "'StillImage'"
    explicit = "".join(["Still", "Image"])  # the same text, given by a caller
    assert explicit == DEFAULT_MEDIATYPE and explicit is not DEFAULT_MEDIATYPE
    assert normalize_mediatype(DEFAULT_MEDIATYPE) == "StillImage"


def test_media_types_of_query_and_keyword() -> None:
    """The query's mediaType wins over the default, agrees with or conflicts with an explicit
    mediatype=, and mediatype=None adds nothing (issue 22)."""
    query = {"speciesKey": 1}
    assert media_types_of(query) == (query, ("StillImage",))
    assert media_types_of(query, None) == (query, ())
    assert media_types_of(query, "sound") == (query, ("Sound",))
    assert media_types_of({**query, "MEDIATYPE": "Sound"}) == (query, ("Sound",))
    assert media_types_of({**query, "mediaType": "Sound"}, None) == (query, ("Sound",))
    assert media_types_of({**query, "mediaType": ["sound"]}, "Sound") == (query, ("Sound",))
    both = media_types_of({"mediaType": ("Sound", "still_image", "Sound")})
    assert both == ({}, ("Sound", "StillImage"))
    with pytest.raises(ConfigError, match="media type once"):
        media_types_of({"mediaType": ["Sound", "StillImage"]}, "StillImage")
    with pytest.raises(ConfigError, match="empty list"):
        media_types_of({"mediaType": []})
    with pytest.raises(ConfigError, match="unknown mediatype"):
        media_types_of({"mediaType": "Picture"})
    with pytest.raises(ConfigError, match="same parameter"):
        media_types_of({"mediaType": "Sound", "media_type": "Sound"})

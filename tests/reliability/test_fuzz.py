"""Hostile and malformed input, fuzzed with hypothesis (bounded examples, derandomized).

Targets: the record helpers every part relies on (``safe_component``, ``normalize_license``,
``is_http_url``), query validation (``validate_query``, ``to_predicate``) and the whole
``io.download`` path with odd records against real media hosts.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import string
import tempfile
import unicodedata
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from reliability_helpers import assert_complete_images, fuzz, manifest_rows

from gbif_dl.errors import ConfigError
from gbif_dl.gbif.params import SEARCH_PARAMETERS, to_predicate, validate_query
from gbif_dl.io import download
from gbif_dl.records import (
    KNOWN_LICENSES,
    MAX_URL_LENGTH,
    RESERVED_NAMES,
    host_key,
    is_http_url,
    normalize_license,
    safe_component,
)
from gbif_dl.testing.mediahost import MediaHosts

# Any code point, lone surrogates included (JSON from the wild can carry them: "\ud800").
ANY_CHAR = st.characters(codec=None, exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=400)
LONG_TEXT = st.text(ANY_CHAR, min_size=140, max_size=2000)
NASTY = st.sampled_from(
    [
        "",
        ".",
        "..",
        "...",
        " . ",
        "../../etc",
        "/",
        "\\",
        "a/b",
        "a\\b",
        "C:",
        "C:\\x",
        "\x00",
        "a\x00b",
        "\x85",
        "\u2028",
        "\u202e",
        "\ufeff",
        "e\u0301",
        "\u00e9",
        "CON",
        "nul.txt",
        "~",
        "$HOME",
        "%2e%2e%2f",
        "\ud800",
        "a" * 151,
        "é" * 100,
    ]
)
LABELS = st.one_of(NASTY, ANY_TEXT, LONG_TEXT)


# --- safe_component ------------------------------------------------------------------------


def _assert_safe(component: str) -> None:
    assert isinstance(component, str) and component
    assert component not in (".", "..")
    assert "/" not in component and "\\" not in component and "\x00" not in component
    assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in component), repr(component)
    assert len(component.encode("utf-8")) <= 150 + 9  # the cap plus "-" and an 8-hex hash


@fuzz(300)
@given(LABELS)
@example("a\x85b")  # C1 control characters (NEL)
@example("\ud800")  # a lone surrogate
def test_safe_component_is_one_safe_path_component(value: str) -> None:
    """Never a separator, control character, ``.``/``..``, empty or over-long; stable."""
    component = safe_component(value)
    _assert_safe(component)
    assert safe_component(value) == component  # stable
    if component != _nfc(value):
        # changed: it ends in "-" and a hash, a form that no label keeps as it is (see below)
        assert re.search(r"-[0-9a-f]{8}\Z", component), component
        assert safe_component(component) != component


@fuzz(200)
@given(st.text(alphabet=string.ascii_letters + string.digits + " _-()", min_size=1, max_size=60))
def test_a_clean_label_is_its_own_folder(value: str) -> None:
    """A label with nothing to escape is left as is: the folder is the label."""
    clean = (
        value == value.strip()
        and not re.search(r"-[0-9a-f]{8}\Z", value)
        and value.casefold() not in RESERVED_NAMES
    )
    if clean:
        assert safe_component(value) == value


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Apis/mellifera", "Apis_mellifera-61c4a371"),  # the escaped form of the other label
        ("a:b", "a_b-" + hashlib.sha1(b"a:b").hexdigest()[:8]),
        ("x", "x-" + hashlib.sha1(b"x").hexdigest()[:8]),
    ],
)
def test_a_label_shaped_like_an_escaped_one_gets_its_own_folder(first: str, second: str) -> None:
    assert safe_component(first) != safe_component(second)
    assert safe_component(second) != second


@pytest.mark.parametrize("name", [*sorted(RESERVED_NAMES), "Manifest.Parquet", "ATTRIBUTION.csv"])
def test_a_label_never_takes_a_state_file_name(name: str) -> None:
    assert safe_component(name).casefold() not in RESERVED_NAMES


@fuzz(100)
@given(st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.binary(max_size=50)))
def test_safe_component_accepts_any_object(value: Any) -> None:
    """Labels that are not strings (int species keys, floats, bytes) become safe text."""
    _assert_safe(safe_component(value))


_TWEAKS = [
    lambda s: s + " ",
    lambda s: " " + s,
    lambda s: "." + s,
    lambda s: s + ".",
    lambda s: s.replace("_", "/"),
    lambda s: s.replace("_", "\\"),
    lambda s: s.replace("_", "\x01"),
    lambda s: s + "_",
    lambda s: s + "\x85",
    lambda s: s[:-1],
    lambda s: s + "a" * 200,
    lambda s: s.upper(),
]


@fuzz(300)
@given(st.one_of(LABELS, NASTY.map(lambda s: s + "_x_")), st.sampled_from(range(len(_TWEAKS))))
def test_safe_component_keeps_distinct_labels_distinct(value: str, tweak: int) -> None:
    """Two labels that differ (after Unicode NFC) never share a folder."""
    other = _TWEAKS[tweak](value)
    if _nfc(value) == _nfc(other):
        return
    assert safe_component(value) != safe_component(other), (value, other)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# --- normalize_license and is_http_url -----------------------------------------------------

LICENSE_LIKE = st.from_regex(
    r"(?i)\A\s*(https?://)?(creativecommons\.org/(licenses|publicdomain)/)?"
    r"(cc|creative\s*commons)?[\s_-]*(by|0|zero|mark)?([\s_-]*(nc|sa|nd|x)){0,3}"
    r"[\s_-]*v?\d?([._]\d)?\d*[\s/_-]*(legalcode|international|deed\.\w+)?\s*\Z"
)


@fuzz(300)
@given(
    st.one_of(
        LICENSE_LIKE,
        ANY_TEXT,
        st.none(),
        st.integers(),
        st.floats(),
        st.binary(max_size=40),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    )
)
def test_normalize_license_never_raises(value: Any) -> None:
    """Any value: a known licence code or None, never an exception."""
    code = normalize_license(value)
    assert code is None or code in KNOWN_LICENSES


@pytest.mark.parametrize("code", sorted(KNOWN_LICENSES))
def test_normalize_license_round_trips_known_codes(code: str) -> None:
    """Every known code, in any case and with stray spaces, maps to itself."""
    assert normalize_license(code) == code
    assert normalize_license(f"  {code.lower()} ") == code


URL_LIKE = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "file://", "javascript:", ""]),
    st.one_of(
        st.sampled_from(["127.0.0.1", "example.org", "[::1]", "[::1", "", "a b", "ex\u00e4mple"]),
        st.text(ANY_CHAR, max_size=30),
    ),
    st.one_of(
        st.sampled_from(["", ":", ":80", ":0", ":65535", ":65536", ":99999", ":abc", ":-1"]),
        st.integers().map(lambda i: f":{i}"),
    ),
    st.text(ANY_CHAR, max_size=60),
)


@fuzz(400)
@given(st.one_of(URL_LIKE, ANY_TEXT, st.none(), st.integers(), st.binary(max_size=20)))
@example("http://a:99999/x.jpg")
@example("http://a:abc/x.jpg")
def test_is_http_url_true_only_for_usable_http_urls(value: Any) -> None:
    """Never raises; True only for a bounded http(s) URL with a host and a valid port, which
    is exactly what the fetch engine needs to route it."""
    if not is_http_url(value):
        return
    assert isinstance(value, str) and len(value) <= MAX_URL_LENGTH
    assert not any(ord(c) < 0x20 or c == "\x7f" for c in value)
    parts = urlsplit(value)
    assert parts.scheme.lower() in ("http", "https") and parts.hostname
    port = parts.port  # raises ValueError for an out-of-range or non-numeric port
    assert port is None or 0 <= port <= 65535


def _parsed_check(value: Any) -> bool:
    """is_http_url's definition, by urlsplit alone (the oracle of its unparsed fast path)."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL_LENGTH:
        return False
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        return False
    try:
        value.encode("utf-8")
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


PLAIN_URL_LIKE = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "hTTpS://", "http:/", "http:///", "https//"]),
    st.text(st.sampled_from("aZ09.-_:@[]% \u00e4"), max_size=12),
    st.one_of(st.just(""), st.integers(-2, 10**6).map(lambda i: f":{i}"), st.just(":")),
    st.text(st.sampled_from("/?#aZ09.-_%:@[]\\ \x7f\x00\u00e9\ud800"), max_size=20),
)


@fuzz(600)
@given(st.one_of(PLAIN_URL_LIKE, URL_LIKE, ANY_TEXT))
@example("http://a:65535/x.jpg")
@example("http://a:65536/x.jpg")
@example("http://a:00080/x.jpg")
@example("http://-/x.jpg")
@example("http://a.b/\ud800")
def test_is_http_url_is_its_parsed_definition(value: Any) -> None:
    """The fast path for plain URLs accepts exactly what parsing the URL accepts."""
    assert is_http_url(value) == _parsed_check(value)


def _parsed_host_key(value: str) -> str | None:
    """host_key's definition, by urlsplit alone (the oracle of its unparsed fast path): the
    lower-case host name, and ``:port`` when the URL names a port other than 0."""
    try:
        parts = urlsplit(value)
        named = (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port out of range or not a number
        return None
    return ":".join(str(p) for p in named if p) if named[0] else None


@fuzz(600)
@given(st.one_of(PLAIN_URL_LIKE, URL_LIKE, ANY_TEXT))
@example("http://Img.Example.ORG:0080/x.jpg")
@example("http://a:0/x.jpg")
@example("http://a:65535/x.jpg")
@example("http://a:65536/x.jpg")
@example("http://a:/x.jpg")
@example("https://u:p@Host.org:8443/x.jpg")
@example("http://a\\b.org/x.jpg")
def test_host_key_is_its_parsed_definition(value: str) -> None:
    """The fast path for plain URLs gives the host key that parsing the URL gives."""
    assert host_key(value) == _parsed_host_key(value)


# --- query validation ----------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(sorted(SEARCH_PARAMETERS)),
    st.sampled_from(["media_type", "SPECIESKEY", "publishingOrgKey", "speciesKeys", "year "]),
    st.text(max_size=20),
    st.integers(),
    st.none(),
    st.tuples(st.text(max_size=3)),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.complex_numbers(),
    st.just(Decimal("sNaN")),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.tuples(inner),
        st.tuples(inner, inner, inner),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
        st.dictionaries(st.text(max_size=5), inner, max_size=2),
    ),
    max_leaves=6,
)
QUERIES = st.one_of(
    st.dictionaries(NAMES, VALUES, max_size=5),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=10),
    st.none(),
    st.integers(),
)


@fuzz(400)
@given(QUERIES)
@example({"year": Decimal("sNaN")})
def test_validate_query_raises_config_error_only(query: Any) -> None:
    """A query of wrong types gives a clean result or a ConfigError, never another exception."""
    try:
        result = validate_query(query)
    except ConfigError as exc:
        assert str(exc)
        return
    assert isinstance(result, dict)
    for name, values in result.items():
        assert isinstance(name, str) and name
        assert values and all(isinstance(v, str) and v for v in values)


@fuzz(200)
@given(QUERIES)
def test_to_predicate_raises_config_error_only(query: Any) -> None:
    """The download predicate of a hostile query: a predicate dict or a ConfigError."""
    try:
        predicate = to_predicate(query)
    except ConfigError:
        return
    assert predicate["type"] == "and" and predicate["predicates"]


# --- the download path with odd records ----------------------------------------------------


@pytest.fixture(scope="module")
def media() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=2) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="gbif-dl-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _url(media: MediaHosts, draw: Any) -> Any:
    base = draw(st.sampled_from(media.base_urls))
    return draw(
        st.one_of(
            st.integers(0, 30).map(lambda i: f"{base}/media/{i}/0.jpg"),  # duplicates likely
            st.text(ANY_CHAR, max_size=30).map(lambda p: f"{base}/media/{p}"),
            st.sampled_from(
                [
                    f"  {base}/media/1/0.jpg  ",
                    f"{base}/html/page.jpg",
                    f"{base}/status/404/x.jpg",
                    f"{base}/../../etc/passwd",
                    f"{base}/media/%2e%2e/%2e%2e/x.jpg",
                    "file:///etc/passwd",
                    "javascript:alert(1)",
                    "ftp://example.org/x.jpg",
                    "http://a:99999/x.jpg",
                    "http:///nohost.jpg",
                    "",
                    "   ",
                    "http://" + "a" * 5000 + ".org/x.jpg",
                ]
            ),
            st.none(),
            st.integers(),
            st.binary(max_size=10),
        )
    )


@st.composite
def odd_items(draw: Any, media: MediaHosts) -> Any:
    kind = draw(st.sampled_from(["record", "record", "record", "url", "junk"]))
    if kind == "url":
        url = _url(media, draw)
        return url if isinstance(url, str) else str(url)
    if kind == "junk":
        return draw(st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2)))
    record: dict[str, Any] = {}
    if draw(st.integers(0, 9)):  # most records have a url
        record["url"] = _url(media, draw)
    for name, values in (
        ("label", st.one_of(LABELS, st.integers(), st.none(), st.just({"gbifID": "1"}))),
        ("subset", st.one_of(NASTY, st.none(), st.integers())),
        ("basename", st.one_of(NASTY, st.text(ANY_CHAR, max_size=20))),
        ("license", st.one_of(LICENSE_LIKE, st.integers(), st.none())),
        ("rightsHolder", st.one_of(LONG_TEXT, st.none(), st.lists(st.integers(), max_size=2))),
        ("gbifID", st.one_of(st.integers(), st.text(max_size=10), st.floats())),
    ):
        if draw(st.booleans()):
            record[name] = draw(values)
    return record


def _key(item: Any) -> Any:
    """The manifest identity of an item: its stripped URL, or the item itself when it has
    no usable URL (each such item is one failed row)."""
    url = item if isinstance(item, str) else item.get("url") if isinstance(item, dict) else None
    if isinstance(url, str) and url.strip():
        return url.strip()
    return ("invalid", hashlib.sha1(repr(item).encode("utf-8", "replace")).hexdigest())


def _inside(root: Path, path: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


@pytest.mark.slow
def test_download_with_odd_records_stays_inside_root(media: MediaHosts, sandbox: Path) -> None:
    """Odd records (hostile labels, subsets and basenames, invalid or duplicate URLs, junk
    items): nothing is written outside the root, every stored file is a whole image, and the
    manifest has exactly one row per distinct URL (or URL-less item)."""
    counter = iter(range(10**6))
    stored: list[int] = []

    @fuzz(40)
    @given(st.lists(odd_items(media), min_size=1, max_size=10))
    def check(items: list[Any]) -> None:
        case = sandbox / f"case{next(counter)}"
        root = case / "deep" / "root"
        root.mkdir(parents=True)
        stats = download(items, root, retries=0, concurrency=8, per_host=4, progress=False)
        stored.append(stats["success"])
        assert stats["success"] + stats["failed"] + stats["skipped"] == len(items)
        outside = {p.relative_to(case).as_posix() for p in case.rglob("*")}
        assert {p for p in outside if not p.startswith("deep/root/")} == {"deep", "deep/root"}
        for path in root.rglob("*"):
            assert _inside(root, path) and not path.is_symlink(), path
        assert_complete_images(root)
        rows = manifest_rows(root)
        urls = [r["url"] for r in rows]
        assert len(urls) == len(set(urls))
        assert len(rows) == len({_key(item) for item in items})
        for row in rows:
            if row["status"] == "success":
                assert _inside(root, root / row["path"]) and (root / row["path"]).is_file()
        shutil.rmtree(case)

    check()
    assert sum(1 for n in stored if n) >= len(stored) // 4  # the examples do fetch images


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, 10**5000, Decimal("sNaN"), 1j, b"1"],
    ids=["nan", "inf", "huge-int", "snan", "complex", "bytes"],
)
def test_unusable_numbers_raise_config_error(value: Any) -> None:
    """NaN, infinities, an integer with more digits than Python converts to text (hypothesis
    cannot print it, hence this test), complex numbers and bytes: ConfigError, not a crash."""
    with pytest.raises(ConfigError, match="year"):
        validate_query({"year": value})
    with pytest.raises(ConfigError):
        to_predicate({"year": [1, value]})

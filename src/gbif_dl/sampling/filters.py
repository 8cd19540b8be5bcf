"""Streaming filters on media: media type, licence allow-list, URL dedupe, one media per occurrence.

Every filter works one item at a time with bounded memory, so it applies to any source.

Example:
    >>> record = {"key": 1, "media": [
    ...     {"type": "Sound", "identifier": "https://example.org/a.mp3"},
    ...     {"type": "StillImage", "identifier": "https://example.org/b.jpg"},
    ...     {"type": "StillImage", "references": "https://example.org/viewer"},
    ... ]}
    >>> [m["identifier"] for m in media_items(record)]
    ['https://example.org/b.jpg']
    >>> allowed = LicenseFilter(["CC0_1_0", "cc-by 4.0"])
    >>> allowed("http://creativecommons.org/licenses/by/4.0/"), allowed("All rights reserved")
    (True, False)
    >>> dedupe = UrlDeduper()
    >>> dedupe.seen("https://example.org/b.jpg"), dedupe.seen("https://example.org/b.jpg")
    (False, True)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from gbif_dl.errors import ConfigError
from gbif_dl.records import (
    KNOWN_LICENSES,
    is_http_url,
    license_code_of,
    normalize_license,
    url_digest,
)
from gbif_dl.sampling.ranks import media_rank

__all__ = [
    "DEFAULT_MEDIATYPE",
    "MEDIA_TYPES",
    "LicenseFilter",
    "UrlDeduper",
    "license_code_of",
    "media_items",
    "normalize_mediatype",
    "pick_media",
]

T = TypeVar("T")

#: GBIF's media types, and the MIME major type of a file of that type (None: any).
MEDIA_TYPES: dict[str, str | None] = {
    "StillImage": "image",
    "MovingImage": "video",
    "Sound": "audio",
    "InteractiveResource": None,
}


class _DefaultString(str):
    """A default string value that ``is`` can tell apart from the same text given explicitly."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _default_mediatype, ()  # unpickled as the one default object, not a copy


def _default_mediatype() -> str:
    return DEFAULT_MEDIATYPE


#: The default ``mediatype=`` of the search functions ("StillImage"). It is this very object
#: only when the caller did not give ``mediatype=``, so a ``mediaType`` in the query can win
#: over the default (``mediatype is DEFAULT_MEDIATYPE``) and still conflict with an explicit one.
DEFAULT_MEDIATYPE: str = _DefaultString("StillImage")

#: ``format`` values that describe a viewer or a descriptor, never the media file itself.
_NOT_A_FILE_FORMATS = frozenset(
    {"dzi", "application/ld+json", "application/json", "text/html", "application/xml", "text/xml"}
)


def _fold(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch not in "._- ")


@functools.lru_cache(maxsize=256)
def _lookup_mediatype(folded: str) -> str | None:
    for name in MEDIA_TYPES:
        if _fold(name) == folded:
            return name
    return None


def normalize_mediatype(mediatype: str) -> str:
    """GBIF's spelling of a media type, matched leniently as GBIF does (case, ``._-`` ignored).

    Raises:
        ConfigError: not one of StillImage, MovingImage, Sound, InteractiveResource.

    Example:
        >>> normalize_mediatype("stillimage"), normalize_mediatype("moving_image")
        ('StillImage', 'MovingImage')
    """
    name = _lookup_mediatype(_fold(str(mediatype)))
    if name is not None:
        return name
    raise ConfigError(
        f"unknown mediatype {mediatype!r}; use one of {', '.join(MEDIA_TYPES)} "
        "(GBIF's MediaType vocabulary)"
    )


def _type_of(media: dict[str, Any]) -> str | None:
    """The media type GBIF gives, else the one its ``format`` implies, else None."""
    kind = media.get("type")
    if isinstance(kind, str) and kind.strip():
        try:
            return normalize_mediatype(kind)
        except ConfigError:
            return None
    fmt = media.get("format")
    if isinstance(fmt, str) and "/" in fmt:
        major = fmt.split("/", 1)[0].strip().lower()
        for name, wanted in MEDIA_TYPES.items():
            if wanted == major:
                return name
    return None


def _format_allows(media: dict[str, Any], mediatype: str) -> bool:
    """False when ``format`` says the identifier is not a file of ``mediatype``."""
    fmt = media.get("format")
    if not isinstance(fmt, str) or not fmt.strip():
        return True
    fmt = fmt.strip().lower().split(";", 1)[0].strip()
    if fmt in _NOT_A_FILE_FORMATS:
        return False
    wanted = MEDIA_TYPES.get(mediatype)
    if wanted is None or "/" not in fmt:
        return True  # free-text formats ("jpeg") are hints we cannot contradict
    return fmt.split("/", 1)[0] == wanted


def media_items(record: dict[str, Any], mediatype: str = "StillImage") -> list[dict[str, Any]]:
    """The entries of ``record["media"]`` that are files of ``mediatype`` with a usable URL.

    GBIF matches ``mediaType=StillImage`` when *any* media object of a record is a still image,
    so a record may also carry sound files, IIIF manifests or viewer pages. An entry is kept
    when its ``type`` (or, if it has none, the MIME major type of its ``format``) is
    ``mediatype``, its ``format`` does not name something else (``dzi``, ``text/html``,
    ``application/ld+json``, another MIME major type), and its ``identifier`` is an http(s) URL.
    Entries without ``type`` or usable ``format`` are dropped: their kind is unknown.

    Example:
        >>> media_items({"media": [{"format": "image/png", "identifier": "https://x.org/1"},
        ...                        {"type": "StillImage", "format": "dzi",
        ...                         "identifier": "https://x.org/2.dzi"}]})
        [{'format': 'image/png', 'identifier': 'https://x.org/1'}]
    """
    wanted = normalize_mediatype(mediatype)
    media = record.get("media")
    if not isinstance(media, list):
        return []
    kept = []
    for entry in media:
        if not isinstance(entry, dict):
            continue
        if not is_http_url(entry.get("identifier")):
            continue
        if _type_of(entry) != wanted or not _format_allows(entry, wanted):
            continue
        kept.append(entry)
    return kept


def pick_media(
    media: Sequence[T],
    *,
    seed: int | str | None,
    key: object,
    positions: Sequence[int] | None = None,
) -> T:
    """Choose one element of ``media`` reproducibly: the lowest seeded rank wins.

    Each element is ranked by :func:`gbif_dl.sampling.ranks.media_rank` from ``(seed, key,
    position)``, ``key`` being the occurrence key and ``positions`` the elements' places among
    all the occurrence's media (default: ``0, 1, ...``). The archive reader ranks an
    occurrence's multimedia rows the same way, so both sources pick the same media. ``seed=None``
    is the fixed default seed 0.

    Raises:
        ValueError: ``media`` is empty.

    Example:
        >>> urls = ["a", "b", "c", "d"]
        >>> pick_media(urls, seed=1, key=42) == pick_media(urls, seed=1, key="42")
        True
    """
    if not media:
        raise ValueError("pick_media needs at least one media item")
    places = range(len(media)) if positions is None else positions
    ranks = [media_rank(seed, key, place) for place in places]
    return media[ranks.index(min(ranks))]


class LicenseFilter:
    """Keep media whose normalised licence is in an allow-list.

    Allowed entries and the licences checked are normalised with
    :func:`gbif_dl.records.normalize_license`, so ``"CC_BY_4_0"``, ``"CC BY 4.0"`` and
    ``"http://creativecommons.org/licenses/by/4.0/"`` are the same licence. Licences that cannot
    be recognised (``"All rights reserved"``, missing) are dropped unless ``keep_unknown=True``.
    ``allowed=None`` keeps everything.

    Raises:
        ConfigError: an allowed entry is not a recognisable licence.

    Example:
        >>> keep = LicenseFilter(["CC0_1_0"], keep_unknown=True)
        >>> keep("CC0_1_0"), keep("CC_BY_NC_4_0"), keep(None)
        (True, False, True)
    """

    def __init__(self, allowed: Iterable[str] | None, *, keep_unknown: bool = False) -> None:
        self.keep_unknown = keep_unknown
        if allowed is None:
            self.allowed: frozenset[str] | None = None
            return
        if isinstance(allowed, str):
            allowed = [allowed]
        codes = set()
        bad = []
        for entry in allowed:
            code = normalize_license(entry)
            if code is None:
                bad.append(entry)
            else:
                codes.add(code)
        if bad:
            raise ConfigError(
                f"unrecognised licence(s) in licenses=: {', '.join(map(repr, bad))}; use GBIF "
                f"codes such as 'CC0_1_0', 'CC_BY_4_0', 'CC_BY_NC_4_0' (known: "
                f"{', '.join(sorted(KNOWN_LICENSES))})"
            )
        self.allowed = frozenset(codes)

    def __call__(self, license_code: str | None) -> bool:
        """True when ``license_code`` (a code, a licence URL or free text) may be kept."""
        if self.allowed is None:
            return True
        code = license_code_of(license_code)
        if code is None:
            return self.keep_unknown
        return code in self.allowed

    def __repr__(self) -> str:
        allowed = None if self.allowed is None else sorted(self.allowed)
        return f"LicenseFilter({allowed!r}, keep_unknown={self.keep_unknown})"


class UrlDeduper:
    """Remember URLs by their 64-bit :func:`~gbif_dl.records.url_digest`; :meth:`seen` says
    whether a URL came before.

    Memory: a Python set of ints, about 70 MB per million URLs (a 64-bit int object plus its
    hash-table slot); the full URLs are never stored. Two different URLs share a digest with
    probability about ``n**2 / 2**65`` (about 3e-8 for a million URLs), in which case the
    second one is dropped as a duplicate.

    Example:
        >>> dedupe = UrlDeduper()
        >>> [dedupe.seen(u) for u in ["https://a.org/1", "https://a.org/2", "https://a.org/1"]]
        [False, False, True]
        >>> len(dedupe)
        2
    """

    __slots__ = ("_digests",)

    def __init__(self) -> None:
        self._digests: set[int] = set()

    def seen(self, url: str) -> bool:
        """True when ``url`` was passed before; otherwise remember it and return False."""
        digest = url_digest(url)
        if digest in self._digests:
            return True
        self._digests.add(digest)
        return False

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and url_digest(url) in self._digests

    def __len__(self) -> int:
        return len(self._digests)

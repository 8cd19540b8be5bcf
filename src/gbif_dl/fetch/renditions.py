"""Renditions: when the image is resized anyway, ask a known host for a smaller copy of it.

Many image hosts serve every photo in several sizes, the size named in the URL. When
``max_size`` is set, fetching an 800 kB original to keep a 40 kB thumbnail wastes the
publisher's bandwidth and ours, so :func:`rendition_for` rewrites the URL of a known host to
the smallest rendition that is still at least ``max_size`` on its longest side. The engine
fetches that first; when it fails (an error status, not an image, or smaller than
``max_size``: :func:`too_small`), it fetches the record's own URL in the same run, and the
outcome of that fetch is the item's result. The manifest keeps the record's ``url`` and the
URL actually fetched (``fetched_url``).

Only hosts whose URL scheme is publicly documented are known (the source is next to each rule).
A rendition is never larger than the record's own image: a URL that already names a size at or
below the one needed is fetched as it is. Cropped squares are never asked for.

Example:
    >>> rendition_for("https://static.inaturalist.org/photos/42/original.jpg?171", 512)
    Rendition(url='https://static.inaturalist.org/photos/42/large.jpg?171', side=1024)
    >>> rendition_for("https://static.inaturalist.org/photos/42/medium.jpg", 512) is None
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from gbif_dl.fetch.images import image_size
from gbif_dl.fetch.result import Reason

__all__ = [
    "FLICKR_SIZES",
    "INATURALIST_SIZES",
    "Rendition",
    "rendition_for",
    "too_small",
    "unusable",
]


class Rendition(NamedTuple):
    """A rendition to ask for: its URL and the nominal longest side of that size, in pixels."""

    url: str
    side: int


#: iNaturalist photo sizes by name (longest side, px), smallest first; ``square`` (75 x 75) is
#: a crop and never asked for. Source: the iNaturalist Open Dataset documentation
#: (https://github.com/inaturalist/inaturalist-open-data, "photos/<photo_id>/<size>.<extension>"
#: with sizes square 75, small 240, medium 500, large 1024, original 2048 on the longest side).
INATURALIST_SIZES: dict[str, int] = {"small": 240, "medium": 500, "large": 1024, "original": 2048}
_INATURALIST_HOSTS = frozenset({"inaturalist-open-data.s3.amazonaws.com", "static.inaturalist.org"})
_INATURALIST_PATH = re.compile(r"^(/photos/\d+/)(square|small|medium|large|original)(\.\w+)$")

#: Flickr size suffixes that share the photo's ``secret`` (longest side, px; ``""`` is the
#: unsuffixed 500 px medium), smallest first. Squares (``s``, ``q``) and the thumbnail (``t``)
#: are left out, and so are ``h``, ``k`` and ``o``: those have a secret of their own, so they
#: cannot be derived from another size's URL. Source: "Photo Image URLs", Flickr API
#: documentation, https://www.flickr.com/services/api/misc.urls.html (size suffixes m 240,
#: n 320, - 500, z 640, c 800, b 1024; https://live.staticflickr.com/{server}/{id}_{secret}_
#: {size}.jpg, and the older farm{n}.staticflickr.com / farm{n}.static.flickr.com hosts).
FLICKR_SIZES: dict[str, int] = {"m": 240, "n": 320, "": 500, "z": 640, "c": 800, "b": 1024}
_FLICKR_HOST = re.compile(r"(^|\.)(staticflickr\.com|static\.flickr\.com)$")
_FLICKR_PATH = re.compile(r"^(/(?:[^/]+/)*\d+_[0-9a-f]+)(?:_([a-z]))?(\.jpg)$")


def _pick(sizes: dict[str, int], current: str, max_size: int) -> str | None:
    """The name of the smallest size of ``sizes`` at least ``max_size`` (the largest if none
    is), when it is smaller than ``current``; None otherwise (``current`` is as small)."""
    if current not in sizes:
        return None
    wanted = next((name for name, side in sizes.items() if side >= max_size), None)
    if wanted is None:
        wanted = next(reversed(sizes))
    return wanted if sizes[wanted] < sizes[current] else None


def _inaturalist(host: str, path: str, max_size: int) -> tuple[str, int] | None:
    if host not in _INATURALIST_HOSTS:
        return None
    match = _INATURALIST_PATH.match(path)
    if match is None:
        return None
    folder, current, ext = match.groups()
    wanted = _pick(INATURALIST_SIZES, current, max_size)
    if wanted is None:
        return None
    return f"{folder}{wanted}{ext}", INATURALIST_SIZES[wanted]


def _flickr(host: str, path: str, max_size: int) -> tuple[str, int] | None:
    if _FLICKR_HOST.search(host) is None:
        return None
    match = _FLICKR_PATH.match(path)
    if match is None:
        return None
    stem, current, ext = match.groups()
    wanted = _pick(FLICKR_SIZES, current or "", max_size)
    if wanted is None:
        return None
    return f"{stem}{'_' + wanted if wanted else ''}{ext}", FLICKR_SIZES[wanted]


#: The host rules, tried in turn: ``(host, path, max_size) -> (new path, side) | None``.
_RULES: tuple[Callable[[str, str, int], tuple[str, int] | None], ...] = (_inaturalist, _flickr)


def rendition_for(url: str, max_size: int) -> Rendition | None:
    """The smallest rendition of ``url`` that is still ``max_size`` on its longest side, or
    None (an unknown host or URL shape, or the URL already names a size that small).

    Only the size in the path changes: scheme, host, port, credentials and query stay.

    Example:
        >>> rendition_for("https://inaturalist-open-data.s3.amazonaws.com/photos/7/large.png", 200)
        Rendition(url='https://inaturalist-open-data.s3.amazonaws.com/photos/7/small.png', side=240)
        >>> rendition_for("https://live.staticflickr.com/65535/123_abc9_b.jpg", 512).url
        'https://live.staticflickr.com/65535/123_abc9_z.jpg'
        >>> rendition_for("https://live.staticflickr.com/65535/123_abc9_b.jpg", 400).url
        'https://live.staticflickr.com/65535/123_abc9.jpg'
        >>> rendition_for("https://example.org/photos/7/original.jpg", 512) is None
        True
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # a malformed netloc (the engine reports the URL itself)
        return None
    for rule in _RULES:
        found = rule(host, parts.path, max_size)
        if found is not None:
            path, side = found
            return Rendition(urlunsplit(parts._replace(path=path)), side)
    return None


def too_small(body: bytes, max_size: int) -> str | None:
    """Why a rendition's ``body`` cannot stand for the original (its longest side is below
    ``max_size``), or None when it can (or its size cannot be read: the resize decides).

    Example:
        >>> import io
        >>> from PIL import Image
        >>> out = io.BytesIO(); Image.new("RGB", (300, 200)).save(out, "JPEG")
        >>> too_small(out.getvalue(), 512)
        'rendition is 300 x 200, smaller than max_size 512'
        >>> too_small(out.getvalue(), 300) is None
        True
    """
    size = image_size(body)
    if size is None or max(size) >= max_size:
        return None
    return f"rendition is {size[0]} x {size[1]}, smaller than max_size {max_size}"


def unusable(body: bytes | None, reason: Reason | None, detail: str, max_size: int) -> str | None:
    """Why the outcome of a rendition's fetch cannot be the item's result (it failed for
    ``reason``, or its ``body`` is :func:`too_small`), or None when it can.

    Example:
        >>> unusable(None, Reason.HTTP_STATUS, "HTTP 404", 512)
        'http_status HTTP 404'
    """
    if body is None:
        return f"{reason.value if reason else 'failed'} {detail}".strip()
    return too_small(body, max_size)

"""Image hosts that serve renditions, under real host names resolved to loopback.

Tests and benchmarks of :mod:`gbif_dl.fetch.renditions` need URLs with the real host names
(``static.inaturalist.org``, ...), since the rendition rules match on them, served by the
simulator's media hosts. :class:`LoopbackResolver` maps those names to the media hosts'
loopback addresses (``FetchConfig(resolver=...)``, with ``allow_private=True``), and
:func:`serve_inaturalist_photo` serves one photo at every iNaturalist size, each a resized copy
of the original, some of them missing (404), not an image, or smaller than they should be.

Example:
    >>> from gbif_dl.testing.mediahost import MediaHosts
    >>> with MediaHosts(n_hosts=1) as hosts:
    ...     urls = serve_inaturalist_photo(hosts, 7, photo_jpeg(1200, 900), missing={"large"})
    ...     sorted(urls)
    ['large', 'medium', 'original', 'small']
    >>> urls["original"].startswith("http://static.inaturalist.org:")
    True
"""

from __future__ import annotations

import io
import socket
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp.abc import AbstractResolver

from gbif_dl.fetch.renditions import INATURALIST_SIZES

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.testing.mediahost import MediaHosts

__all__ = ["INATURALIST_HOST", "LoopbackResolver", "photo_jpeg", "serve_inaturalist_photo"]

#: The iNaturalist static host name the served photos use.
INATURALIST_HOST = "static.inaturalist.org"

_NOT_AN_IMAGE = b"<!DOCTYPE html><html><body>Access denied</body></html>"


class LoopbackResolver(AbstractResolver):
    """Resolves the host names of ``names`` (name -> IPv4 address) and nothing else.

    A name it does not know fails as an unknown name does in DNS. ``asked`` lists the names
    looked up, in order.

    Example:
        >>> LoopbackResolver({"static.inaturalist.org": "127.0.0.1"}).names
        {'static.inaturalist.org': '127.0.0.1'}
    """

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = {name.lower(): address for name, address in names.items()}
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        """The address of ``host`` as aiohttp expects it; OSError for an unknown name."""
        self.asked.append(host)
        address = self.names.get(host.lower())
        if address is None:
            raise OSError(f"unknown host name {host!r} (not in the test's table)")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        """Nothing to release."""


def photo_jpeg(width: int, height: int, seed: int = 0, quality: int = 88) -> bytes:
    """A photo-like JPEG (smooth gradients and noise, so it costs what a photo costs to fetch
    and decode): about 0.3 bytes per pixel at the default quality.

    Example:
        >>> photo_jpeg(64, 48)[:3]
        b'\\xff\\xd8\\xff'
    """
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    k = seed % 7 + 1
    base = np.stack([(x * k) % 256, (y * (k + 1)) % 256, ((x + y) * (k + 2)) % 256], axis=-1)
    noisy = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _shrunk(original: bytes, side: int) -> bytes:
    """``original`` with its longest side at most ``side`` (never enlarged), as JPEG."""
    from PIL import Image

    with Image.open(io.BytesIO(original)) as image:
        image = image.convert("RGB")
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        return out.getvalue()


def serve_inaturalist_photo(
    hosts: MediaHosts,
    photo_id: int,
    original: bytes,
    *,
    missing: Collection[str] = (),
    not_image: Collection[str] = (),
    too_small: Collection[str] = (),
    host_name: str = INATURALIST_HOST,
    host_index: int = 0,
) -> dict[str, str]:
    """Serve photo ``photo_id`` at ``/photos/<id>/<size>.jpg`` for every iNaturalist size:
    ``original`` as it is, the other sizes resized from it (longest side at most the size's).

    Sizes in ``missing`` answer 404, in ``not_image`` an HTML page, in ``too_small`` an image
    a quarter of the size's side. Returns ``{size: URL}`` with ``host_name`` and the port of media
    host ``host_index`` (resolve ``host_name`` with :class:`LoopbackResolver`).

    Example:
        >>> from gbif_dl.testing.mediahost import MediaHosts
        >>> with MediaHosts(n_hosts=1) as hosts:
        ...     url = serve_inaturalist_photo(hosts, 1, photo_jpeg(300, 200))["small"]
        >>> url.endswith("/photos/1/small.jpg")
        True
    """
    port = hosts.base_urls[host_index].rsplit(":", 1)[1]
    urls = {}
    for size, side in INATURALIST_SIZES.items():
        path = f"/photos/{photo_id}/{size}.jpg"
        urls[size] = f"http://{host_name}:{port}{path}"
        if size in missing:
            hosts.serve(path, b"Not Found", "text/plain", status=404)
        elif size in not_image:
            hosts.serve(path, _NOT_AN_IMAGE, "text/html")
        elif size in too_small:
            hosts.serve(path, _shrunk(original, side // 4))
        else:
            hosts.serve(path, original if size == "original" else _shrunk(original, side))
    return urls

"""Image bytes: type sniffing, header size, full decode check, resize. Pure functions.

The functions that do CPU work (:func:`check_decodes`, :func:`resize_image`) are top-level and
take and return only bytes and numbers, so the engine can run them in a process pool.

Example:
    >>> sniff_image(b"\\x89PNG\\r\\n\\x1a\\n....")
    ImageType(ext='.png', mime='image/png')
    >>> sniff_image(b"<!DOCTYPE html>") is None
    True
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

__all__ = [
    "SNIFF_BYTES",
    "ImageType",
    "ResizedImage",
    "check_decodes",
    "image_size",
    "resize_image",
    "sniff_image",
]

#: How many leading bytes :func:`sniff_image` needs.
SNIFF_BYTES = 16


class ImageType(NamedTuple):
    """A sniffed image type: the file extension to use and the media type."""

    ext: str
    mime: str


class ResizedImage(NamedTuple):
    """The output of :func:`resize_image`."""

    body: bytes
    width: int
    height: int
    ext: str
    mime: str


_JPEG = ImageType(".jpg", "image/jpeg")
_PNG = ImageType(".png", "image/png")
_GIF = ImageType(".gif", "image/gif")
_WEBP = ImageType(".webp", "image/webp")
_TIFF = ImageType(".tif", "image/tiff")
_BMP = ImageType(".bmp", "image/bmp")


def sniff_image(head: bytes) -> ImageType | None:
    """The image type of bytes starting with ``head``, from magic numbers; None if not an image.

    Recognises JPEG, PNG, GIF, WebP, TIFF and BMP. Never looks at a URL or a Content-Type.

    Example:
        >>> sniff_image(b"\\xff\\xd8\\xff\\xe0").ext, sniff_image(b"GIF89a").ext
        ('.jpg', '.gif')
        >>> sniff_image(b"RIFF\\x00\\x00\\x00\\x00WEBPVP8 ").ext
        '.webp'
    """
    if head[:3] == b"\xff\xd8\xff":
        return _JPEG
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return _PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _WEBP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _TIFF
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return _BMP  # BITMAPFILEHEADER: reserved fields are zero
    return None


#: JPEG start-of-frame markers (they carry the pixel size); not DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
#: JPEG markers without a length field (TEM, RST0-7, SOI).
_JPEG_STANDALONE = frozenset({0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8})


def _jpeg_size(body: bytes) -> tuple[int, int] | None:
    """The frame size from a JPEG's SOF segment, walking the segment lengths; None if unsure."""
    end = len(body)
    i = 2
    while i + 4 <= end:
        if body[i] != 0xFF:
            return None
        while i < end and body[i] == 0xFF:  # fill bytes
            i += 1
        if i >= end:
            return None
        marker = body[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA) or i + 2 > end:  # EOI or scan data before any frame header
            return None
        length = (body[i] << 8) | body[i + 1]
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if length < 7 or i + 7 > end:
                return None
            height = (body[i + 3] << 8) | body[i + 4]
            width = (body[i + 5] << 8) | body[i + 6]
            return (width, height) if width and height else None
        i += length
    return None


def _png_size(body: bytes) -> tuple[int, int] | None:
    """The size in a PNG's IHDR chunk (always the first chunk); None if unsure."""
    if len(body) < 24 or body[12:16] != b"IHDR":
        return None
    width = int.from_bytes(body[16:20], "big")
    height = int.from_bytes(body[20:24], "big")
    return (width, height) if 0 < width < 2**31 and 0 < height < 2**31 else None


def image_size(body: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read from the image header (cheap: nothing is decoded), or None.

    JPEG and PNG headers are read directly (a few microseconds, the hot path of a download);
    other formats, and headers that do not parse plainly, go through Pillow.

    Example:
        >>> from PIL import Image
        >>> out = io.BytesIO(); Image.new("RGB", (30, 20)).save(out, "PNG")
        >>> image_size(out.getvalue())
        (30, 20)
    """
    if body[:3] == b"\xff\xd8\xff":
        size = _jpeg_size(body)
        if size is not None:
            return size
    elif body[:8] == b"\x89PNG\r\n\x1a\n":
        size = _png_size(body)
        if size is not None:
            return size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return int(width), int(height)


def check_decodes(body: bytes) -> str | None:
    """Decode the whole image; return None when it decodes, else a short description of the problem.

    Example:
        >>> check_decodes(b"\\xff\\xd8\\xff\\xe0garbage") is not None
        True
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
    except Image.DecompressionBombError as exc:
        return f"too many pixels: {exc}"
    except (
        Exception
    ) as exc:  # Pillow raises many types for corrupt data; all mean "does not decode"
        return f"{type(exc).__name__}: {exc}"
    return None


def resize_image(body: bytes, max_size: int, quality: int = 90) -> ResizedImage:
    """Scale an image so its longest side is at most ``max_size``; output RGB JPEG.

    The EXIF orientation is applied first (so the pixels are upright and the tag is dropped),
    the aspect ratio is kept, transparency is flattened onto white. An image that is already a
    JPEG in RGB, no larger than ``max_size`` and without an EXIF rotation is returned unchanged
    (no second lossy encode); anything else is re-encoded at ``quality``.

    Raises whatever Pillow raises for undecodable data (the engine reports ``RESIZE_ERROR``).

    Example:
        >>> from PIL import Image
        >>> out = io.BytesIO(); Image.new("RGB", (400, 100)).save(out, "PNG")
        >>> small = resize_image(out.getvalue(), 200)
        >>> small.width, small.height, small.ext
        (200, 50, '.jpg')
    """
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(body)) as opened:
        orientation = opened.getexif().get(0x0112, 1)
        width, height = opened.size
        upright = orientation in (1, None)
        if (
            opened.format == "JPEG"
            and opened.mode == "RGB"
            and upright
            and max(width, height) <= max_size
        ):
            return ResizedImage(body, width, height, ".jpg", "image/jpeg")
        if opened.format == "JPEG" and max(width, height) > 2 * max_size:
            # let the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding (much faster)
            opened.draft("RGB", (max_size, max_size))
        image = ImageOps.exif_transpose(opened)
        image = _to_rgb(image)
        width, height = image.size
        longest = max(width, height)
        if longest > max_size:
            scale = max_size / longest
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            size = (max_size, size[1]) if width >= height else (size[0], max_size)
            image = image.resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality, optimize=False)
        return ResizedImage(out.getvalue(), image.size[0], image.size[1], ".jpg", "image/jpeg")


def _to_rgb(image: PILImage) -> PILImage:
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")

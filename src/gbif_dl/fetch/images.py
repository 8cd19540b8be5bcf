"""Image bytes: type sniffing, header size, full decode check, resize. Pure functions.

The functions that do CPU work (:func:`check_decodes`, :func:`resize_image`, :func:`prepare`)
are top-level and take and return only bytes and numbers, so the engine can run them in a
process pool.

Pixel budget: a decode allocates about 4 bytes per pixel whatever the file size (a 688 KB PNG
can claim 13,300 x 13,300 pixels: 708 MB decoded). Every decode here first reads the pixel count
from the header and refuses more than ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`,
100 megapixels) with :class:`TooManyPixels`; resizing then decodes JPEG at the smallest scale
the decoder offers for ``max_size`` (``draft``) and shrinks other formats by an integer factor
(``reduce``) before any copy is made (EXIF rotation, flattening), so a worker holds at most the
decoded image plus one reduced copy.

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
    "DEFAULT_MAX_PIXELS",
    "SNIFF_BYTES",
    "ImageType",
    "ResizedImage",
    "TooManyPixels",
    "check_decodes",
    "image_size",
    "pixel_problem",
    "prepare",
    "resize_image",
    "sniff_image",
]

#: How many leading bytes :func:`sniff_image` needs.
SNIFF_BYTES = 16

#: Images claiming more pixels are refused before any decode (100 megapixels: about 400 MB
#: decoded as RGBA; Pillow's own bomb check only starts at 89 MP with a warning, 179 MP error).
DEFAULT_MAX_PIXELS = 100_000_000


class TooManyPixels(ValueError):
    """The image header claims more pixels than the budget allows (nothing was decoded)."""


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


def pixel_problem(size: tuple[int, int] | None, max_pixels: int) -> str | None:
    """A description of why an image of ``size`` is over the pixel budget, or None.

    Example:
        >>> pixel_problem((13_300, 13_300), DEFAULT_MAX_PIXELS)
        '13300 x 13300 = 176890000 pixels > max_pixels 100000000'
        >>> pixel_problem((4000, 3000), DEFAULT_MAX_PIXELS) is None
        True
    """
    if size is None or size[0] * size[1] <= max_pixels:
        return None
    width, height = size
    return f"{width} x {height} = {width * height} pixels > max_pixels {max_pixels}"


def check_decodes(body: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Decode the whole image; return None when it decodes, else a short description of the problem.

    Raises :class:`TooManyPixels` (before decoding) above ``max_pixels``.

    Example:
        >>> check_decodes(b"\\xff\\xd8\\xff\\xe0garbage") is not None
        True
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body)) as image:
            problem = pixel_problem(image.size, max_pixels)
            if problem is not None:
                raise TooManyPixels(problem)
            image.load()
    except TooManyPixels:
        raise
    except Image.DecompressionBombError as exc:
        return f"too many pixels: {exc}"
    except (
        Exception
    ) as exc:  # Pillow raises many types for corrupt data; all mean "does not decode"
        return f"{type(exc).__name__}: {exc}"
    return None


def resize_image(
    body: bytes, max_size: int, quality: int = 90, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ResizedImage:
    """Scale an image so its longest side is at most ``max_size``; output RGB JPEG.

    The EXIF orientation is applied first (so the pixels are upright and the tag is dropped),
    the aspect ratio is kept, transparency is flattened onto white. An image that is already a
    JPEG in RGB, no larger than ``max_size`` and without an EXIF rotation is returned unchanged
    (no second lossy encode); anything else is re-encoded at ``quality``.

    Memory: :class:`TooManyPixels` above ``max_pixels`` before decoding; a JPEG is decoded
    at a reduced scale (``draft``), another format shrunk by an integer factor right after
    decoding, before the copies that rotating and flattening make.

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
        problem = pixel_problem(opened.size, max_pixels)
        if problem is not None:
            raise TooManyPixels(problem)
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
            # let the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding (much faster), as
            # far as still covers the output size itself (asking for a max_size square would
            # keep twice the pixels of a 3:2 photo: about 12% more CPU per image)
            opened.draft("RGB", _fit(width, height, max_size))
        image = _reduced(opened, max_size)
        if not upright:  # (exif_transpose would copy an upright image for nothing)
            image = ImageOps.exif_transpose(image)
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


def _fit(width: int, height: int, max_size: int) -> tuple[int, int]:
    """``(width, height)`` scaled so that the longest side is ``max_size``."""
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


#: ``reduce`` keeps at least this many times ``max_size`` for the final LANCZOS resize (the
#: ``reducing_gap`` of Pillow's ``thumbnail``): the box average alone would alias.
_REDUCING_GAP = 2


def _reduced(opened: PILImage, max_size: int) -> PILImage:
    """``opened`` shrunk by the largest integer factor that keeps ``_REDUCING_GAP * max_size``;
    the full-size decode is released at once (only the reduced copy stays)."""
    opened.load()
    factor = max(opened.size) // (_REDUCING_GAP * max_size)
    if factor < 2 or opened.mode not in ("1", "L", "LA", "RGB", "RGBA", "I", "F", "CMYK"):
        return opened
    orientation = opened.getexif().get(0x0112)
    reduced = opened.reduce(factor)
    if orientation is not None:  # reduce() drops the metadata exif_transpose reads
        reduced.getexif()[0x0112] = orientation
    opened.close()  # frees the decoded pixels; the ``with`` closing it again is harmless
    return reduced


def prepare(
    body: bytes,
    max_size: int,
    quality: int = 90,
    decode_check: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ResizedImage | tuple[str, str]:
    """The resize job of the engine's process pool: optional decode check, then resize.

    Returns the :class:`ResizedImage`, or ``(reason, detail)`` with a
    :class:`~gbif_dl.fetch.result.Reason` value: ``too_many_pixels``, ``decode_error`` or
    ``resize_error``. Never raises for bad image data.

    Example:
        >>> prepare(b"\\xff\\xd8\\xff\\xe0garbage", 64)[0]
        'resize_error'
    """
    try:
        if decode_check:
            problem = check_decodes(body, max_pixels)
            if problem is not None:
                return ("decode_error", problem)
        return resize_image(body, max_size, quality, max_pixels)
    except TooManyPixels as exc:
        return ("too_many_pixels", str(exc))
    except Exception as exc:  # Pillow raises many types for undecodable data
        return ("resize_error", f"{type(exc).__name__}: {exc}"[:500])


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

"""Image bytes: magic-number sniffing, header size, decode check, resize with EXIF orientation."""

from __future__ import annotations

import io

import pytest
from PIL import Image, features

from gbif_dl.fetch.images import check_decodes, image_size, resize_image, sniff_image


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


FORMATS = [("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("TIFF", ".tif"), ("BMP", ".bmp")]
if features.check("webp"):
    FORMATS.append(("WEBP", ".webp"))


@pytest.mark.parametrize(("fmt", "ext"), FORMATS)
def test_sniff_recognises_real_encodings(fmt: str, ext: str) -> None:
    """Every supported format is recognised from the bytes Pillow writes, with its size."""
    body = encode(Image.new("RGB", (33, 21), (10, 200, 30)), fmt)
    sniffed = sniff_image(body[:16])
    assert sniffed is not None and sniffed.ext == ext
    assert sniffed.mime == Image.MIME[fmt]
    assert image_size(body) == (33, 21)


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html>",
        b"<html><body>Login</body></html>",
        b'{"error": "not found"}',
        b"%PDF-1.7\n",
        b"",
        b"\xff\xd8",  # too short to be a JPEG
        b"RIFF\x00\x00\x00\x00WAVEfmt ",  # RIFF, but audio
        b"BM-not-a-bitmap-header",
    ],
)
def test_sniff_rejects_non_images(body: bytes) -> None:
    """HTML, JSON, PDF, audio and fragments are not images, whatever a URL or header says."""
    assert sniff_image(body) is None


def test_image_size_of_garbage_is_none() -> None:
    """Header parsing never raises on garbage."""
    assert image_size(b"\xff\xd8\xff\xe0 not really") is None


def test_check_decodes_finds_truncated_data() -> None:
    """A JPEG cut short sniffs as JPEG but fails the full decode; the intact one passes."""
    noise = Image.effect_noise((200, 200), 64).convert("RGB")
    body = encode(noise, "JPEG")
    assert check_decodes(body) is None
    problem = check_decodes(body[: len(body) // 2])
    assert problem is not None and sniff_image(body[: len(body) // 2]) is not None


def exif_jpeg(width: int, height: int, orientation: int) -> bytes:
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def test_resize_applies_exif_orientation_and_keeps_aspect() -> None:
    """Orientation 6 (rotate 90° clockwise) is applied: a 600x200 photo becomes 50x150 at 150."""
    out = resize_image(exif_jpeg(600, 200, orientation=6), 150)
    assert (out.width, out.height, out.ext, out.mime) == (50, 150, ".jpg", "image/jpeg")
    image = Image.open(io.BytesIO(out.body))
    assert image.size == (50, 150) and image.format == "JPEG" and image.mode == "RGB"
    assert image.getexif().get(0x0112, 1) == 1
    red, blue = image.getpixel((25, 10)), image.getpixel((25, 140))
    assert red[0] > 200 and red[2] < 60 and blue[2] > 200 and blue[0] < 60


def test_small_rotated_jpeg_is_still_re_encoded_upright() -> None:
    """An image already small enough but with an EXIF rotation is rotated (not returned as is)."""
    body = exif_jpeg(120, 40, orientation=8)
    out = resize_image(body, 500)
    assert out.body != body and (out.width, out.height) == (40, 120)


def test_small_upright_jpeg_is_returned_unchanged() -> None:
    """No second lossy encode for a JPEG that is already RGB, upright and small enough."""
    body = encode(Image.new("RGB", (300, 200), (1, 2, 3)), "JPEG")
    out = resize_image(body, 300)
    assert out.body is body and (out.width, out.height) == (300, 200)


def test_png_with_alpha_becomes_rgb_jpeg_on_white() -> None:
    """Transparency is flattened onto white; the output is an RGB JPEG even when not shrunk."""
    image = Image.new("RGBA", (80, 40), (0, 0, 0, 0))
    out = resize_image(encode(image, "PNG"), 500)
    decoded = Image.open(io.BytesIO(out.body))
    assert decoded.format == "JPEG" and decoded.mode == "RGB" and decoded.size == (80, 40)
    assert min(decoded.getpixel((40, 20))) > 245


def test_large_jpeg_uses_draft_and_hits_exact_size() -> None:
    """A large JPEG (decoded at reduced scale) still ends with its longest side exactly max_size."""
    body = encode(Image.effect_noise((2000, 1500), 40).convert("RGB"), "JPEG")
    out = resize_image(body, 256)
    assert (out.width, out.height) == (256, 192)
    assert Image.open(io.BytesIO(out.body)).size == (256, 192)


@pytest.mark.parametrize(
    ("size", "orientation", "expected"),
    [((2400, 1600), 1, (512, 341)), ((1600, 2400), 1, (341, 512)), ((2400, 1600), 6, (341, 512)),
     ((2100, 1050), 1, (512, 256)), ((3000, 1000), 8, (171, 512))],
)  # fmt: skip
def test_draft_to_the_output_size_keeps_sizes_and_orientation(
    size: tuple[int, int], orientation: int, expected: tuple[int, int]
) -> None:
    """JPEGs decoded at the scale that still covers the output size (1/4 for a 3:2 photo of
    2,400 px at 512, where a 512 square would need 1/2): exact sizes, rotation applied."""
    out = resize_image(exif_jpeg(*size, orientation=orientation), 512)
    assert (out.width, out.height) == expected
    image = Image.open(io.BytesIO(out.body))
    assert image.size == expected and image.getexif().get(0x0112, 1) == 1
    width, height = expected  # where the left (red) half went: rotated 90° cw by 6, ccw by 8
    red_at = {1: (2, height // 2), 6: (width // 2, 2), 8: (width // 2, height - 3)}[orientation]
    assert image.getpixel(red_at)[0] > 200


def test_resize_raises_on_garbage() -> None:
    """Undecodable bytes raise (the engine turns that into RESIZE_ERROR)."""
    with pytest.raises(Exception):  # noqa: B017 - Pillow's exception type varies by format
        resize_image(b"\xff\xd8\xff\xe0 definitely not a jpeg", 100)


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("RGB", {}),
        ("RGB", {"progressive": True}),
        ("RGB", {"optimize": True, "subsampling": 0}),
        ("L", {}),
        ("CMYK", {}),
        ("RGB", {"icc_profile": b"\x00" * 70_000}),  # APP2 segments before the frame header
        ("RGB", {"exif": Image.Exif()}),
    ],
)
def test_jpeg_header_size_matches_pillow(mode: str, options: dict[str, object]) -> None:
    """The direct JPEG header reader gives Pillow's size for common encodings."""
    body = encode(Image.new(mode, (1234, 567)), "JPEG", **options)
    with Image.open(io.BytesIO(body)) as image:
        assert image_size(body) == image.size == (1234, 567)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1", "I;16"])
def test_png_header_size_matches_pillow(mode: str) -> None:
    body = encode(Image.new(mode, (321, 45)), "PNG")
    assert image_size(body) == (321, 45)


def test_image_size_of_cut_headers_never_raises() -> None:
    """Headers cut anywhere give a size or None, never an exception."""
    body = encode(Image.new("RGB", (64, 48)), "JPEG", icc_profile=b"\x00" * 3000)
    for cut in range(0, 3200, 7):
        assert image_size(body[:cut]) in (None, (64, 48))

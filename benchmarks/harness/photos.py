"""A pool of photo-sized JPEGs (1,600 to 2,400 px, about 800 kB) for the resize case.

Made once and cached in ``benchmarks/.work/photo-pool`` as ``000.jpg`` .. ``999.jpg``, the
names the harness's nginx maps URLs onto (a URL's last three digits pick the file). Photo-like:
smooth gradients, a few shapes and sensor-like noise, so decoding, resizing and encoding cost
what a real photo costs (flat synthetic images compress and decode much faster).
"""

from __future__ import annotations

import io
from pathlib import Path

POOL_SIZE = 1000
SIDES = (1600, 2400)  # longest side, px
ASPECTS = (4 / 3, 3 / 2, 1.0, 3 / 4, 2 / 3)
NOISE = 9.5  # standard deviation of the noise, in levels: sets the file size


def photo(index: int, seed: int = 0) -> bytes:
    """Photo ``index``: deterministic, its longest side in :data:`SIDES`, about 800 kB."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng((seed, index))
    longest = int(rng.integers(SIDES[0], SIDES[1] + 1))
    aspect = ASPECTS[index % len(ASPECTS)]
    width, height = (
        (longest, round(longest / aspect))
        if aspect >= 1
        else (
            round(longest * aspect),
            longest,
        )
    )
    # the smooth part on a grid 8 times smaller, enlarged (cheap), then full-size noise
    small_w, small_h = -(-width // 8), -(-height // 8)
    y = np.linspace(0, 1, small_h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, small_w, dtype=np.float32)[None, :]
    colour = rng.uniform(40, 215, size=(2, 3)).astype(np.float32)
    t = (x * rng.uniform(0.2, 0.8) + y * rng.uniform(0.2, 0.8))[..., None]
    field = colour[0] * (1 - t) + colour[1] * t
    for _ in range(6):  # soft blobs
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        field += blob * rng.uniform(-60, 60, size=3).astype(np.float32)
    smooth = Image.fromarray(np.clip(field, 20, 235).astype("uint8"), "RGB")
    base = np.asarray(smooth.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    tile = rng.normal(0, NOISE, size=(256, 256, 3)).astype(np.int16)  # sensor noise
    reps = (-(-height // 256), -(-width // 256), 1)
    pixels = base + np.tile(tile, reps)[:height, :width]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"), "RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def make_photo_pool(folder: Path, n: int = POOL_SIZE, seed: int = 0) -> Path:
    """Write ``n`` photos to ``folder`` as ``NNN.jpg`` (once; cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / ".complete"
    if done.exists() and done.read_text() == f"{n} {seed}":
        return folder
    for i in range(n):
        (folder / f"{i:03d}.jpg").write_bytes(photo(i, seed))
    done.write_text(f"{n} {seed}")
    return folder

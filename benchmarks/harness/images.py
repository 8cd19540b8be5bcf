"""A pool of pre-generated JPEGs for nginx to serve (made once, cached in benchmarks/.work/)."""

from __future__ import annotations

import io
from pathlib import Path

POOL_SIZE = 1000  # nginx maps a URL's last three digits onto 000.jpg .. 999.jpg


def pool_digits(n: int) -> int:
    """The digits of a pool file's name (``000.jpg`` for 1,000 files, ``0000.jpg`` for 10,000):
    nginx serves a URL's last that many digits."""
    return max(3, len(str(n - 1)))


def make_pool(folder: Path, n: int = POOL_SIZE, seed: int = 0) -> Path:
    """Write ``n`` deterministic, varied JPEGs (about 5 to 40 kB, 160..480 px a side), named
    with :func:`pool_digits` digits."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / ".complete"
    if done.exists() and len(list(folder.glob("*.jpg"))) == n:
        return folder
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = (int(x) for x in rng.integers(160, 481, size=2))
        cells = rng.integers(0, 256, size=(int(rng.integers(4, 17)), int(rng.integers(4, 17)), 3))
        img = Image.fromarray(cells.astype("uint8"), "RGB").resize((w, h), Image.BICUBIC)
        noise = rng.normal(0, 6, size=(h, w, 3))
        pixels = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype("uint8")
        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=85)
        (folder / f"{i:0{pool_digits(n)}d}.jpg").write_bytes(buf.getvalue())
    done.write_text(str(n))
    return folder

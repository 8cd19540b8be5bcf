"""The near-duplicate threshold, measured on the simulator's images (issue 18).

False positives: pairs of distinct images (``/media/...`` paths) whose dHashes are within the
distance. True positives: copies of a photo (resized to 50% and 25%, re-encoded at quality 60
and 30, as :func:`gbif_dl.testing.mediahost.photo_copy` makes them) within the distance of
the original. Prints one line per distance; runs in a few seconds on one core.

    PYTHONPATH=src python benchmarks/dedupe_threshold.py [--images 2000] [--originals 400]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gbif_dl.dedupe.phash import dhash, hamming_many
from gbif_dl.testing.mediahost import photo_copy, render_image

COPIES = (("resized", 50), ("resized", 25), ("reencoded", 60), ("reencoded", 30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--originals", type=int, default=400)
    args = parser.parse_args()
    started = time.perf_counter()
    bodies = [render_image(f"/media/{i}/0.jpg")[0] for i in range(args.images)]
    hashed = time.perf_counter()
    hashes = np.array([dhash(body) for body in bodies], dtype=np.uint64)
    per_image_ms = (time.perf_counter() - hashed) / len(bodies) * 1e3
    pairs = np.concatenate(
        [hamming_many(hashes[i + 1 :], int(hashes[i])) for i in range(len(hashes) - 1)]
    )
    copies: dict[str, list[int]] = {f"{kind} {amount}": [] for kind, amount in COPIES}
    for i in range(args.originals):
        original = dhash(photo_copy("copy", 0, f"k{i}")[0])
        assert original is not None
        for kind, amount in COPIES:
            value = dhash(photo_copy(kind, amount, f"k{i}")[0])
            assert value is not None
            copies[f"{kind} {amount}"].append((original ^ value).bit_count())
    print(
        f"{len(bodies)} images, {len(pairs):,} pairs; dHash {per_image_ms:.3f} ms/image; "
        f"closest distinct pair: {int(pairs.min())} bits ({time.perf_counter() - started:.1f} s)"
    )
    print("distance  false-positive pairs  " + "  ".join(f"{name:>13}" for name in copies))
    for distance in range(0, 17, 2):
        fp = int(np.count_nonzero(pairs <= distance))
        tps = [np.mean(np.array(values) <= distance) for values in copies.values()]
        print(
            f"{distance:8d}  {fp:8d} ({fp / len(pairs):.1e})  "
            + "  ".join(f"{100 * tp:12.1f}%" for tp in tps)
        )


if __name__ == "__main__":
    main()

"""Sample thumbnails for the HTML report: which images (a bounded sample) and their JPEGs.

The sample goes round the classes in label order (the first image of each class, then the
second of each, ...), so the grid shows as many classes as it can. It is taken while the manifest
streams past and holds a bounded number of candidates, whatever the number of rows.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("a1", "a2", "b1", "b2"):
    ...     _ = (root / name).write_bytes(b"")
    >>> sampler = ThumbnailSampler(3, root)
    >>> sampler.offer(["b", "a", "b", "a"], ["b1", "a1", "b2", "a2"], ["CC0_1_0"] * 4)
    >>> [(label, file.name) for label, file, _ in sampler.candidates()][:3]
    [('a', 'a1'), ('b', 'b1'), ('a', 'a2')]
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DEFAULT_THUMBNAILS",
    "THUMBNAIL_PX",
    "Thumbnail",
    "ThumbnailSampler",
    "image_path",
    "thumbnail_uri",
]

logger = logging.getLogger(__name__)

#: How many sample thumbnails the HTML page embeds by default.
DEFAULT_THUMBNAILS = 48
#: Longest side of an embedded thumbnail, in pixels.
THUMBNAIL_PX = 120


@dataclass(frozen=True)
class Thumbnail:
    """One embedded sample image: its class, its licence and a ``data:`` URI of a small JPEG.

    Example:
        >>> Thumbnail("bee", "CC0_1_0", "data:image/jpeg;base64,").label
        'bee'
    """

    label: str
    license: str
    data_uri: str


class ThumbnailSampler:
    """The first images in round-robin order over the labels, at most ``capacity`` kept.

    A candidate is ``(label, path, licence)``; its place is ``(depth, label)``, where ``depth``
    counts the earlier candidates of its label. The sampler keeps the ``capacity`` smallest places
    whose file is inside ``root`` (default: twice ``limit``, the spares standing in for files
    that turn out not to be images) and a count per label; a label whose next depth cannot make it
    into the sample any more is skipped in whole batches.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("x1", "x2", "y1"):
        ...     _ = (root / name).write_bytes(b"")
        >>> sampler = ThumbnailSampler(2, root, capacity=2)
        >>> sampler.offer(["x", "x", "y", "z"], ["x1", "x2", "y1", "gone"], ["L", "L", "L", "L"])
        >>> [path.name for _, path, _ in sampler.candidates()]
        ['x1', 'y1']
    """

    def __init__(self, limit: int, root: Path, *, capacity: int | None = None) -> None:
        self.limit = max(0, limit)
        self.root = root
        self.capacity = capacity if capacity is not None else 2 * self.limit
        self._seen: dict[str, int] = {}  # label -> candidates of it seen so far
        self._slots: list[tuple[int, str, Path, str | None]] = []  # depth, label, file, licence
        self._worst: tuple[int, str] | None = None  # the place to beat once the sample is full

    def offer(
        self, labels: Sequence[str], paths: Sequence[str], licenses: Sequence[str | None]
    ) -> None:
        """Consider candidates, in manifest order (equal-length sequences; the licences as the
        manifest has them, named only for the images shown). A candidate whose file is missing
        or outside the root keeps its place in the round but is never shown."""
        if self.capacity <= 0:
            return
        seen, worst = self._seen, self._worst
        for label, path, licence in zip(labels, paths, licenses, strict=True):
            depth = seen.get(label, 0)
            seen[label] = depth + 1
            if worst is None or (depth, label) < worst:
                file = image_path(self.root, path)
                if file is None:
                    continue
                self._slots.append((depth, label, file, licence))
                if len(self._slots) >= 2 * self.capacity:
                    worst = self._trim()
        self._trim()

    def offer_batch(
        self,
        labels: pa.Array | pa.ChunkedArray,
        paths: pa.Array | pa.ChunkedArray,
        licenses: pa.Array | pa.ChunkedArray,
    ) -> None:
        """:meth:`offer` for string columns, skipping the rows of labels already out of reach
        (whole batches cost no Python object per row once the sample is settled)."""
        if self.capacity <= 0 or not len(labels):
            return
        if self._worst is not None:
            depth = self._worst[0]
            done = [label for label, n in self._seen.items() if n > depth]
            if done:
                keep = pc.invert(pc.is_in(labels, value_set=pa.array(done, pa.string())))
                labels, paths, licenses = (a.filter(keep) for a in (labels, paths, licenses))
        self.offer(labels.to_pylist(), paths.to_pylist(), licenses.to_pylist())

    def _trim(self) -> tuple[int, str] | None:
        self._slots.sort(key=lambda slot: slot[:2])
        del self._slots[self.capacity :]
        if len(self._slots) == self.capacity:
            self._worst = self._slots[-1][:2]
        return self._worst

    def candidates(self) -> list[tuple[str, Path, str | None]]:
        """The kept ``(label, file, licence)`` in sample order."""
        return [(label, file, lic) for _, label, file, lic in self._slots]

    def thumbnails(self, license_name: Callable[[str | None], str] = str) -> list[Thumbnail]:
        """Up to ``limit`` thumbnails of the candidates whose file is a readable image;
        ``license_name`` names a candidate's licence for the caption."""
        out: list[Thumbnail] = []
        for label, file, licence in self.candidates():
            if len(out) >= self.limit:
                break
            uri = thumbnail_uri(file)
            if uri:
                out.append(Thumbnail(label, license_name(licence), uri))
        return out


def image_path(root: Path, value: str | None) -> Path | None:
    """The file ``value`` names (relative to ``root``), or None when it is missing or outside
    ``root``.

    Example:
        >>> image_path(Path("/tmp"), "../etc/passwd") is None
        True
    """
    if not value:
        return None
    path = os.path.join(root, value)  # (an absolute value stays itself)
    if not os.path.isfile(path):  # the cheap test first: a dataset may have lost its files
        return None
    try:
        resolved = Path(path).resolve()
        resolved.relative_to(root.resolve())
    except (OSError, ValueError):
        return None  # never read outside the dataset root
    return resolved if resolved.is_file() else None


def thumbnail_uri(path: Path | None) -> str | None:
    """A ``data:`` URI of a JPEG of the image at ``path``, at most :data:`THUMBNAIL_PX` a side;
    None when there is no readable image.

    Example:
        >>> thumbnail_uri(None) is None
        True
    """
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))  # fast JPEG decode
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=70)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        logger.debug("no thumbnail for %s: %s", path, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

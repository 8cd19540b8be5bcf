"""The images of one split of an ImageFolder or Hugging Face root, without torch.

:class:`ImageRecords` reads the manifest (rows with status ``success``) and the class index of a
local folder or a store root, and opens each image with Pillow as RGB.
:class:`gbif_dl.loaders.torch.GBIFImageDataset` serves it as a torch ``Dataset``; any other
framework can index it directly.

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "bee").mkdir()
    >>> Image.new("L", (4, 3)).save(root / "bee" / "a.png")
    >>> pq.write_table(pa.table({"url": ["http://h/a.png"], "status": ["success"],
    ...     "path": ["bee/a.png"], "label": ["bee"]}), root / "manifest.parquet")
    >>> records = ImageRecords(root, split=None)
    >>> len(records), records.classes, records.image(0).size, records.targets
    (1, ['bee'], (4, 3), [0])
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from PIL import Image

from gbif_dl.errors import ConfigError, OutputError
from gbif_dl.loaders import DEFAULT_SPLIT, read_classes
from gbif_dl.manifest.table import MANIFEST_NAME, SUCCESS
from gbif_dl.storage.read import DatasetRoot

__all__ = ["ImageRecords"]

_SHARD_MEMBER = ".tar/"


class ImageRecords:
    """The images of one split of a downloaded root, with their records and class indices.

    Args:
        root: the output root of :func:`gbif_dl.io.download` (``output="imagefolder"`` or
            ``"hf"``): a folder, or a store root such as ``"s3://bucket/ds"``.
        split: the split to read (records without a split count as ``"train"``); None = all.
        storage_options: passed to fsspec for a store root (credentials, ``endpoint_url``...).

    Attributes:
        classes: class labels; position = class index (same for every split and loader).
        class_to_idx: label -> class index.
        records: one manifest row (a dict) per item, in item order.
        targets: the class index of each item.

    Raises:
        OutputError: the root has no manifest.
        ConfigError: the split has no images, or the root holds WebDataset shards.

    Example:
        >>> ImageRecords("s3://bucket/ds", storage_options={"anon": True})  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = DEFAULT_SPLIT,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.data = DatasetRoot(root, storage_options)
        self.split = split
        where = self.data.display
        manifest = self.data.read_manifest()
        if manifest is None:
            raise OutputError(
                f"no {MANIFEST_NAME} in {where!r}; pass the root= of a finished "
                "gbif_dl.io.download run"
            )
        done = manifest.filter(
            pc.and_(pc.equal(manifest["status"], SUCCESS), pc.is_valid(manifest["path"]))
        )
        rows = [_plain(row) for row in done.to_pylist()]
        if any(_SHARD_MEMBER in row["path"] for row in rows):
            raise ConfigError(
                f"{where!r} holds WebDataset shards; read it with "
                "gbif_dl.loaders.webdataset.load(root) instead"
            )
        splits = sorted({row["subset"] or DEFAULT_SPLIT for row in rows})
        if split is not None:
            rows = [row for row in rows if (row["subset"] or DEFAULT_SPLIT) == split]
            if not rows:
                raise ConfigError(
                    f"no images in split {split!r} of {where!r}; its splits are "
                    f"{splits}; pass one of them, or split=None for all images"
                )
        class_index = read_classes(root, storage_options)
        self.classes: list[str] = list(class_index.labels)
        self.class_to_idx: dict[str, int] = {label: i for i, label in enumerate(self.classes)}
        self.records: list[dict[str, Any]] = rows
        self.targets: list[int] = [class_index.get(row["label"]) for row in rows]

    def __len__(self) -> int:
        return len(self.records)

    def path(self, index: int) -> Path:
        """The image file of item ``index`` in a local root (always inside the root).

        Raises:
            OutputError: the path points outside the root, or the root is a store root
                (read it with :meth:`read`).
        """
        if self.data.is_store:
            raise OutputError(
                f"{self.data.display!r} is a store root: its images have no local path; "
                "use read(index) or image(index)"
            )
        prefix = os.path.normpath(os.path.abspath(self.data.local)) + os.sep
        rel = self.records[index]["path"]
        full = os.path.normpath(os.path.join(prefix, rel))
        if os.path.isabs(rel) or not full.startswith(prefix):
            raise OutputError(f"manifest path {rel!r} points outside {self.data.display!r}")
        return Path(full)

    def read(self, index: int) -> bytes:
        """The stored bytes of item ``index`` (a local file or an object)."""
        if not self.data.is_store:
            return self.path(index).read_bytes()
        return self.data.read_bytes(self.records[index]["path"])

    def image(self, index: int) -> Image.Image:
        """Item ``index`` as an RGB ``PIL.Image``."""
        source: Any = self.path(index) if not self.data.is_store else io.BytesIO(self.read(index))
        with Image.open(source) as image:
            return image.convert("RGB")


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A manifest row without the pyarrow timestamp (keeps records picklable and small)."""
    row.pop("updated", None)
    return row

"""A map-style ``torch`` Dataset over a downloaded ImageFolder or Hugging Face root.

:class:`GBIFImageDataset` reads ``manifest.parquet`` (rows with status ``success``) and the class
index (:func:`gbif_dl.loaders.read_classes`), opens each image with Pillow as RGB and returns
``(image, class_index)``, or ``(transform(image), class_index)``. A record without a label has
class index ``-1``. Needs the ``torch`` extra (``pip install 'gbif-dl[torch]'``); torchvision is
not needed. For WebDataset shards use :func:`gbif_dl.loaders.webdataset.load`.

Example:
    >>> from gbif_dl.loaders.torch import GBIFImageDataset  # doctest: +SKIP
    >>> data = GBIFImageDataset("data", split="train")  # doctest: +SKIP
    >>> image, target = data[0]  # doctest: +SKIP
    >>> data.classes[target], data.records[0]["gbifID"]  # doctest: +SKIP
    ('Apis mellifera', '1234567')
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from gbif_dl.errors import ConfigError, OutputError, require
from gbif_dl.loaders import DEFAULT_SPLIT, read_classes
from gbif_dl.manifest.table import MANIFEST_NAME, SUCCESS, read_manifest

require("torch", extra="torch")

from PIL import Image  # noqa: E402 - after the extra check
from torch.utils.data import Dataset  # noqa: E402

__all__ = ["GBIFImageDataset"]

_SHARD_MEMBER = ".tar/"


class GBIFImageDataset(Dataset):
    """The images of one split of a downloaded root, as ``(image, class_index)`` pairs.

    Args:
        root: the output root of :func:`gbif_dl.io.download` (``output="imagefolder"`` or
            ``"hf"``).
        split: the split to read (records without a split count as ``"train"``); None = all.
        transform: applied to each RGB ``PIL.Image``.

    Attributes:
        classes: class labels; position = class index (same for every split and loader).
        class_to_idx: label -> class index.
        records: one manifest row (a dict: ``path``, ``label``, ``gbifID``, ``license``,
            ``rightsHolder``, ...) per item, in item order.
        targets: the class index of each item.

    Raises:
        OutputError: the root has no manifest.
        ConfigError: the split has no images, or the root holds WebDataset shards.

    Example:
        >>> data = GBIFImageDataset("data", split=None)  # doctest: +SKIP
        >>> len(data), len(data.classes)  # doctest: +SKIP
        (1200, 12)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = DEFAULT_SPLIT,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.root = Path(os.fspath(root))
        self.split = split
        self.transform = transform
        manifest = read_manifest(self.root)
        if manifest is None:
            raise OutputError(
                f"no {MANIFEST_NAME} in {str(self.root)!r}; pass the root= of a finished "
                "gbif_dl.io.download run"
            )
        done = manifest.filter(
            pc.and_(pc.equal(manifest["status"], SUCCESS), pc.is_valid(manifest["path"]))
        )
        rows = [_plain(row) for row in done.to_pylist()]
        if any(_SHARD_MEMBER in row["path"] for row in rows):
            raise ConfigError(
                f"{str(self.root)!r} holds WebDataset shards; read it with "
                "gbif_dl.loaders.webdataset.load(root) instead"
            )
        splits = sorted({row["subset"] or DEFAULT_SPLIT for row in rows})
        if split is not None:
            rows = [row for row in rows if (row["subset"] or DEFAULT_SPLIT) == split]
            if not rows:
                raise ConfigError(
                    f"no images in split {split!r} of {str(self.root)!r}; its splits are "
                    f"{splits}; pass one of them, or split=None for all images"
                )
        class_index = read_classes(self.root)
        self.classes: list[str] = list(class_index.labels)
        self.class_to_idx: dict[str, int] = {label: i for i, label in enumerate(self.classes)}
        self.records: list[dict[str, Any]] = rows
        self.targets: list[int] = [class_index.get(row["label"]) for row in rows]
        self._prefix = os.path.normpath(os.path.abspath(self.root)) + os.sep

    def __len__(self) -> int:
        return len(self.records)

    def path(self, index: int) -> Path:
        """The image file of item ``index`` (always inside the root)."""
        rel = self.records[index]["path"]
        full = os.path.normpath(os.path.join(self._prefix, rel))
        if os.path.isabs(rel) or not full.startswith(self._prefix):
            raise OutputError(f"manifest path {rel!r} points outside {str(self.root)!r}")
        return Path(full)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        with Image.open(self.path(index)) as image:
            rgb = image.convert("RGB")
        if self.transform is not None:
            return self.transform(rgb), self.targets[index]
        return rgb, self.targets[index]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A manifest row without the pyarrow timestamp (keeps records picklable and small)."""
    row.pop("updated", None)
    return row

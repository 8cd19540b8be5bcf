"""A map-style ``torch`` Dataset over a downloaded ImageFolder or Hugging Face root.

:class:`GBIFImageDataset` reads ``manifest.parquet`` (rows with status ``success``) and the class
index (:func:`gbif_dl.loaders.read_classes`) of a folder or a store root (``"s3://bucket/ds"``
with ``storage_options=``), opens each image with Pillow as RGB and returns
``(image, class_index)``, or ``(transform(image), class_index)``; the reading is
:class:`gbif_dl.loaders.images.ImageRecords`, which needs no torch. A record without a label has
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gbif_dl.errors import require
from gbif_dl.loaders import DEFAULT_SPLIT
from gbif_dl.loaders.images import ImageRecords

require("torch", extra="torch")

from torch.utils.data import Dataset  # noqa: E402 - after the extra check

__all__ = ["GBIFImageDataset"]


class GBIFImageDataset(Dataset):
    """The images of one split of a downloaded root, as ``(image, class_index)`` pairs.

    Args:
        root: the output root of :func:`gbif_dl.io.download` (``output="imagefolder"`` or
            ``"hf"``): a folder, or a store root such as ``"s3://bucket/ds"``.
        split: the split to read (records without a split count as ``"train"``); None = all.
        transform: applied to each RGB ``PIL.Image``.
        storage_options: passed to fsspec for a store root (credentials, ``endpoint_url``...).

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
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = root if isinstance(root, str) and "://" in root else Path(os.fspath(root))
        self.split = split
        self.transform = transform
        self.images = ImageRecords(root, split, storage_options)
        self.classes: list[str] = self.images.classes
        self.class_to_idx: dict[str, int] = self.images.class_to_idx
        self.records: list[dict[str, Any]] = self.images.records
        self.targets: list[int] = self.images.targets

    def __len__(self) -> int:
        return len(self.images)

    def path(self, index: int) -> Path:
        """The image file of item ``index`` (always inside the root; local roots only)."""
        return self.images.path(index)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        rgb = self.images.image(index)
        if self.transform is not None:
            return self.transform(rgb), self.targets[index]
        return rgb, self.targets[index]

"""A ready ``webdataset`` pipeline over the shards of a downloaded root.

:func:`load` yields ``(image, class_index)`` pairs (or ``(image, class_index, record)``), with
the image decoded by Pillow as RGB, exactly as :class:`gbif_dl.loaders.torch.GBIFImageDataset`
returns them; the class index is the ``.cls`` member, which agrees with ``classes.json``. The
pipeline is an ``IterableDataset``: hand it to ``torch.utils.data.DataLoader`` (shards are
split between workers). A store root (``"s3://bucket/ds"`` with ``storage_options=``) is read
the same way, each shard streamed through fsspec. Needs the ``webdataset`` extra
(``pip install 'gbif-dl[webdataset]'``).

Example:
    >>> from gbif_dl.loaders.webdataset import load  # doctest: +SKIP
    >>> for image, target in load("data", split="train"):  # doctest: +SKIP
    ...     break
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from gbif_dl.errors import ConfigError, require
from gbif_dl.loaders import DEFAULT_SPLIT, read_classes
from gbif_dl.storage.read import DatasetRoot
from gbif_dl.writers.classes import ClassIndex

wds: Any = require("webdataset", extra="webdataset")

from PIL import Image  # noqa: E402 - after the extra check

__all__ = ["IMAGE_KEYS", "classes", "decode_sample", "load", "shard_paths"]

#: Sample members that hold the image, in the order they are looked for.
IMAGE_KEYS = ("jpg", "png", "gif", "webp", "tif", "bmp", "jpeg")


def shard_paths(
    root: str | os.PathLike[str],
    split: str | None = DEFAULT_SPLIT,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """The finished shards of ``split`` (None = all splits), in order: file paths, or URLs
    (``s3://bucket/ds/train-000000.tar``) for a store root.

    Raises:
        ConfigError: there is no such shard.

    Example:
        >>> import tempfile
        >>> shard_paths(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: no WebDataset shards of split 'train' in ...
    """
    data = DatasetRoot(root, storage_options)
    paths = [data.url_of(name) for name in data.shard_names(split)]
    if not paths:
        found = sorted({name.rpartition("-")[0] for name in data.shard_names()})
        what = f"of split {split!r} " if split is not None else ""
        raise ConfigError(
            f"no WebDataset shards {what}in {data.display!r} (splits found: {found}); "
            "download with output='webdataset', or pass split= one of the splits found"
        )
    return paths


def classes(
    root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> ClassIndex:
    """The class index of ``root`` (``classes.json``), shared with the other loaders."""
    return read_classes(root, storage_options)


def decode_sample(sample: dict[str, Any], *, with_record: bool = False) -> tuple[Any, ...]:
    """``(RGB PIL image, class index[, record])`` from one raw webdataset sample.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (4, 3)).save(buffer, format="PNG")
        >>> image, target = decode_sample({"png": buffer.getvalue(), "cls": b"0000000002"})
        >>> image.mode, image.size, target
        ('RGB', (4, 3), 2)
    """
    data = next((sample[key] for key in IMAGE_KEYS if key in sample), None)
    if data is None:
        raise ValueError(f"sample {sample.get('__key__')!r} has no image member")
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    target = int(sample["cls"]) if "cls" in sample else -1
    if with_record:
        record = json.loads(sample["json"]) if "json" in sample else {}
        return rgb, target, record
    return rgb, target


def load(
    root: str | os.PathLike[str],
    split: str | None = DEFAULT_SPLIT,
    transform: Callable[[Any], Any] | None = None,
    *,
    shuffle: int = 0,
    with_record: bool = False,
    seed: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """A ``webdataset.WebDataset`` pipeline of ``(image, class_index)`` over ``root``'s shards.

    Args:
        root: the output root of ``download(..., output="webdataset")``.
        split: the split to read (records without a split are in ``"train"``); None = all.
        transform: applied to each RGB ``PIL.Image``.
        shuffle: shuffle shards and samples within a buffer of this many samples (0 = in order).
        with_record: also yield each sample's record (its ``.json``: label, gbifID, licence...).
        seed: seed of the shuffling.
        storage_options: for a store root (``"s3://bucket/ds"``): passed to fsspec, which
            then streams each shard (credentials, ``endpoint_url``...).

    Example:
        >>> pipeline = load("data", split="val", shuffle=1000)  # doctest: +SKIP
        >>> loader = torch.utils.data.DataLoader(pipeline, batch_size=64, num_workers=2)
        ... # doctest: +SKIP
    """
    urls = shard_paths(root, split, storage_options)
    decode = partial(_decode, transform=transform, with_record=with_record)
    data = DatasetRoot(root, storage_options)
    if data.is_store:
        return _store_pipeline(data, urls, shuffle=shuffle, seed=seed, decode=decode)
    pipeline = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle else False,
        empty_check=False,
        seed=seed,
    )
    if shuffle:
        pipeline = pipeline.shuffle(shuffle, seed=seed)
    return pipeline.map(decode)


def _store_pipeline(
    data: DatasetRoot,
    urls: list[str],
    *,
    shuffle: int,
    seed: int | None,
    decode: Callable[[dict[str, Any]], Any],
) -> Any:
    """The decoded samples of a store root's shards, each shard streamed through fsspec."""
    names = [url.rpartition("/")[2] for url in urls]
    stages: list[Any] = [wds.SimpleShardList(names)]
    if shuffle:
        stages.append(wds.shuffle(len(names), seed=seed))  # shard order
    stages += [
        wds.split_by_worker,
        partial(_open_shards, data=data),
        wds.tariterators.tar_file_expander,
        wds.tariterators.group_by_keys,
    ]
    if shuffle:
        stages.append(wds.shuffle(shuffle, seed=seed))
    stages.append(wds.map(decode))
    return wds.DataPipeline(*stages)


def _open_shards(shards: Iterable[dict[str, Any]], *, data: DatasetRoot) -> Iterator[Any]:
    """``{"url": ..., "stream": ...}`` for each shard name (streamed from the store)."""
    for shard in shards:
        with data.open(shard["url"]) as stream:
            yield {**shard, "url": data.url_of(shard["url"]), "stream": stream}


def _decode(
    sample: dict[str, Any], *, transform: Callable[[Any], Any] | None, with_record: bool
) -> tuple[Any, ...]:
    item = decode_sample(sample, with_record=with_record)
    if transform is None:
        return item
    return (transform(item[0]), *item[1:])

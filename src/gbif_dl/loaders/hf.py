"""Load a Hugging Face layout root with ``datasets``, labels as ``ClassLabel``.

``datasets.load_dataset("imagefolder", data_dir=root)`` alone already loads the images, the
``label`` text, the ``class_index`` and the GBIF metadata columns of ``metadata.jsonl``
(:mod:`gbif_dl.writers.hf`). :func:`load` does that and turns ``class_index`` into the
``label`` column, a ``datasets.ClassLabel`` whose names are ``classes.json``'s labels, so the
integers agree with every other loader. A store root (``"s3://bucket/ds"`` with
``storage_options=``) is copied to a local folder first (``copy_dir=``), as ``datasets`` reads
``metadata.jsonl`` next to local files. Needs the ``hf`` extra (``pip install 'gbif-dl[hf]'``).

Example:
    >>> from gbif_dl.loaders.hf import load  # doctest: +SKIP
    >>> dataset = load("data")  # doctest: +SKIP
    >>> dataset["train"].features["label"].names[:2]  # doctest: +SKIP
    ['Apis mellifera', 'Bombus terrestris']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError, require
from gbif_dl.loaders import read_classes
from gbif_dl.storage.location import default_work_dir
from gbif_dl.storage.read import DatasetRoot
from gbif_dl.writers.hf import METADATA_NAME

datasets: Any = require("datasets", extra="hf")

__all__ = ["load"]


def load(
    root: str | os.PathLike[str],
    split: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    copy_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Any:
    """``datasets.load_dataset("imagefolder", data_dir=root)`` with ``ClassLabel`` labels.

    Args:
        root: the output root of ``download(..., output="hf")``: a folder, or a store root
            (``"s3://bucket/ds"``).
        split: one split (returns a ``Dataset``), or None for all (a ``DatasetDict``).
        storage_options: for a store root: passed to fsspec (credentials, ``endpoint_url``).
        copy_dir: for a store root: the local folder its objects are copied to first
            (``datasets`` reads ``metadata.jsonl`` next to local images; objects already
            copied are kept); default: a folder per root under ``~/.cache/gbif-dl/copies``.
        **kwargs: passed to ``datasets.load_dataset`` (``cache_dir=``, ``num_proc=``...).

    Raises:
        ConfigError: the root has no ``metadata.jsonl`` (not written with ``output="hf"``).

    Example:
        >>> train = load("data", split="train", cache_dir="/tmp/hf")  # doctest: +SKIP
        >>> train.features["label"].int2str(train[0]["label"])  # doctest: +SKIP
        'Apis mellifera'
    """
    data = DatasetRoot(root, storage_options)
    path = _local_copy(data, copy_dir) if data.is_store else Path(os.fspath(data.root))
    if not any(path.glob(METADATA_NAME)) and not any(path.glob(f"*/{METADATA_NAME}")):
        raise ConfigError(
            f"no {METADATA_NAME} in {data.display!r}; download with output='hf' (a rerun with "
            "output='hf' over an ImageFolder root writes it without fetching again)"
        )
    loaded = datasets.load_dataset("imagefolder", data_dir=str(path), split=split, **kwargs)
    names = read_classes(root, storage_options).labels
    if isinstance(loaded, datasets.DatasetDict):
        return datasets.DatasetDict(
            {name: _with_class_label(part, names) for name, part in loaded.items()}
        )
    return _with_class_label(loaded, names)


def _local_copy(data: DatasetRoot, copy_dir: str | os.PathLike[str] | None) -> Path:
    """Copy a store root's Hugging Face files (``metadata.jsonl`` and the images in the split
    folders) into a local folder; return it."""
    target = Path(os.fspath(copy_dir)) if copy_dir else default_work_dir(data.display, "copies")
    names = [name for name in data.walk() if "/" in name or name == METADATA_NAME]
    return data.copy_to(target, [name for name in names if not name.startswith(".")])


def _with_class_label(dataset: Any, names: list[str]) -> Any:
    if "class_index" not in dataset.column_names or not names:
        return dataset
    dataset = dataset.remove_columns("label").rename_column("class_index", "label")
    return dataset.cast_column("label", datasets.ClassLabel(names=names))

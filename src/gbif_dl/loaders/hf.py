"""Load a Hugging Face layout root with ``datasets``, labels as ``ClassLabel``.

``datasets.load_dataset("imagefolder", data_dir=root)`` alone already loads the images, the
``label`` text, the ``class_index`` and the GBIF metadata columns of ``metadata.jsonl``
(:mod:`gbif_dl.writers.hf`). :func:`load` does that and turns ``class_index`` into the
``label`` column, a ``datasets.ClassLabel`` whose names are ``classes.json``'s labels, so the
integers agree with every other loader. Needs the ``hf`` extra (``pip install 'gbif-dl[hf]'``).

Example:
    >>> from gbif_dl.loaders.hf import load  # doctest: +SKIP
    >>> dataset = load("data")  # doctest: +SKIP
    >>> dataset["train"].features["label"].names[:2]  # doctest: +SKIP
    ['Apis mellifera', 'Bombus terrestris']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError, require
from gbif_dl.loaders import read_classes
from gbif_dl.writers.hf import METADATA_NAME

datasets: Any = require("datasets", extra="hf")

__all__ = ["load"]


def load(root: str | os.PathLike[str], split: str | None = None, **kwargs: Any) -> Any:
    """``datasets.load_dataset("imagefolder", data_dir=root)`` with ``ClassLabel`` labels.

    Args:
        root: the output root of ``download(..., output="hf")``.
        split: one split (returns a ``Dataset``), or None for all (a ``DatasetDict``).
        **kwargs: passed to ``datasets.load_dataset`` (``cache_dir=``, ``num_proc=``...).

    Raises:
        ConfigError: the root has no ``metadata.jsonl`` (not written with ``output="hf"``).

    Example:
        >>> train = load("data", split="train", cache_dir="/tmp/hf")  # doctest: +SKIP
        >>> train.features["label"].int2str(train[0]["label"])  # doctest: +SKIP
        'Apis mellifera'
    """
    path = Path(os.fspath(root))
    if not any(path.glob(METADATA_NAME)) and not any(path.glob(f"*/{METADATA_NAME}")):
        raise ConfigError(
            f"no {METADATA_NAME} in {str(path)!r}; download with output='hf' (a rerun with "
            "output='hf' over an ImageFolder root writes it without fetching again)"
        )
    loaded = datasets.load_dataset("imagefolder", data_dir=str(path), split=split, **kwargs)
    names = read_classes(path).labels
    if isinstance(loaded, datasets.DatasetDict):
        return datasets.DatasetDict(
            {name: _with_class_label(part, names) for name, part in loaded.items()}
        )
    return _with_class_label(loaded, names)


def _with_class_label(dataset: Any, names: list[str]) -> Any:
    if "class_index" not in dataset.column_names or not names:
        return dataset
    dataset = dataset.remove_columns("label").rename_column("class_index", "label")
    return dataset.cast_column("label", datasets.ClassLabel(names=names))

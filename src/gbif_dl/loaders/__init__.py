"""Read a downloaded dataset back for training.

::

    gbif_dl.loaders.images       ImageRecords: the images of a split, their records and class
                                 indices, without torch (what GBIFImageDataset serves)
    gbif_dl.loaders.torch        GBIFImageDataset: a map-style torch Dataset over the manifest
                                 (ImageFolder and Hugging Face layouts)      extra: torch
    gbif_dl.loaders.webdataset   load(): a webdataset pipeline over the shards  extra: webdataset
    gbif_dl.loaders.hf           load(): datasets.load_dataset("imagefolder") with ClassLabel
                                 labels                                       extra: hf

Every loader returns the same class index for a label: the one in ``root/classes.json``
(:mod:`gbif_dl.writers.classes`), or, for an ImageFolder root without that file, the position of
the label in the sorted labels of the manifest (what ``classes.json`` would say after one run,
and the order ``torchvision.datasets.ImageFolder`` uses). Records without a split count as
``train``. Every loader reads a local folder or a store root (``"s3://bucket/ds"`` with
``storage_options=``, as :func:`gbif_dl.io.download` wrote it). Importing this package imports
none of torch, webdataset or datasets; each submodule raises
:class:`~gbif_dl.errors.MissingExtraError` at import, naming the ``pip install`` command, when
its extra is missing.

Example:
    >>> import tempfile
    >>> len(read_classes(tempfile.mkdtemp()))
    0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pyarrow.compute as pc

from gbif_dl.manifest.table import SUCCESS
from gbif_dl.storage.read import DatasetRoot
from gbif_dl.writers.classes import ClassIndex

__all__ = ["DEFAULT_SPLIT", "read_classes"]

DEFAULT_SPLIT = "train"


def read_classes(
    root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> ClassIndex:
    """The class index every loader uses for ``root`` (see the module docstring); ``root`` may
    be a store root (``"s3://bucket/ds"``, with ``storage_options``).

    Example:
        >>> import tempfile
        >>> from gbif_dl.writers.classes import update_classes
        >>> root = tempfile.mkdtemp()
        >>> _ = update_classes(root, ["wasp", "bee"])
        >>> read_classes(root).labels
        ['bee', 'wasp']
    """
    data = DatasetRoot(root, storage_options)
    found = data.read_classes()
    if found is not None:
        return found
    classes = ClassIndex()
    manifest = data.read_manifest(columns=("label", "status", "scientificName"))
    if manifest is not None:
        done = manifest.filter(pc.equal(manifest["status"], SUCCESS))
        labels = done["label"].to_pylist()
        names = {
            label: name
            for label, name in zip(labels, done["scientificName"].to_pylist(), strict=True)
            if label is not None and name
        }
        classes.add(labels, names)
    return classes

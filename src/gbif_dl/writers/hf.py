"""Hugging Face layout: the ImageFolder tree plus ``metadata.jsonl`` per split and ``classes.json``.

Images go where :class:`~gbif_dl.writers.imagefolder.ImageFolderWriter` puts them
(``root/[split/]label/<basename>.<ext>``). After every run, from the whole manifest, each split
folder gets a ``metadata.jsonl`` (one line per stored image: ``file_name`` relative to the split
folder, ``label``, ``class_index`` and the GBIF fields of :data:`METADATA_COLUMNS`) and the root
gets ``classes.json`` (:mod:`gbif_dl.writers.classes`). Images without a split are described by
``root/metadata.jsonl``. Both files are rewritten atomically, so reruns stay consistent.

So ``datasets.load_dataset("imagefolder", data_dir=root)`` loads images, labels and metadata;
:func:`gbif_dl.loaders.hf.load` also casts the labels to a ``ClassLabel`` whose names follow
``classes.json``. Missing text values are written as ``""`` (never null), so every split has the
same column types.

Example:
    >>> import json, pathlib, tempfile
    >>> from gbif_dl.fetch.result import FetchResult
    >>> from gbif_dl.writers.manifest import SUCCESS, manifest_row, _rows_to_table
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> writer = HFWriter(root)
    >>> record = {"url": "http://h/a.jpg", "basename": "abc", "label": "bee", "subset": "train"}
    >>> result = FetchResult(record=record, ok=True, body=b"\\xff\\xd8\\xff", ext=".jpg")
    >>> path = writer.write(result)
    >>> writer.finalize(_rows_to_table([manifest_row(record, status=SUCCESS, path=path)]))
    >>> line = json.loads((root / "train" / METADATA_NAME).read_text())
    >>> line["file_name"], line["label"], line["class_index"]
    ('bee/abc.jpg', 'bee', 0)
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.writers._atomic import atomic_path
from gbif_dl.writers.classes import NO_CLASS, class_label, update_classes_from_manifest
from gbif_dl.writers.imagefolder import ImageFolderWriter
from gbif_dl.writers.manifest import SUCCESS

__all__ = ["METADATA_COLUMNS", "METADATA_NAME", "HFWriter", "write_metadata"]

logger = logging.getLogger(__name__)

METADATA_NAME = "metadata.jsonl"
#: Manifest columns copied into ``metadata.jsonl`` (besides file_name, label, class_index).
METADATA_COLUMNS = (
    "gbifID",
    "datasetKey",
    "license",
    "rightsHolder",
    "creator",
    "publisher",
    "url",
    "scientificName",
)


def write_metadata(root: Path | str, manifest: pa.Table) -> int:
    """Rewrite ``classes.json`` and every split's ``metadata.jsonl`` from ``manifest``.

    Returns the number of images described. Only rows with status ``success`` count.
    """
    root = Path(root)
    done = manifest.filter(
        pc.and_(pc.equal(manifest["status"], SUCCESS), pc.is_valid(manifest["path"]))
    )
    columns = {name: done[name].to_pylist() for name in ("path", "subset", "label")}
    extra = {name: done[name].to_pylist() for name in METADATA_COLUMNS}
    classes = update_classes_from_manifest(root, done)
    by_split: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row, (path, subset, label) in enumerate(
        zip(columns["path"], columns["subset"], columns["label"], strict=True)
    ):
        folder, _, file_name = path.partition("/") if subset is not None else ("", "", path)
        if not file_name:  # a path without a split folder
            folder, file_name = "", path
        text = class_label(label)
        line: dict[str, Any] = {
            "file_name": file_name,
            "label": text or "",
            "class_index": classes.get(text, NO_CLASS) if text is not None else NO_CLASS,
        }
        for name in METADATA_COLUMNS:
            value = extra[name][row]
            line[name] = "" if value is None else str(value)
        by_split[folder].append(line)
    for folder, lines in by_split.items():
        target = (root / folder if folder else root) / METADATA_NAME
        with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    logger.debug("wrote metadata.jsonl for %d splits of %s", len(by_split), root)
    return done.num_rows


class HFWriter(ImageFolderWriter):
    """ImageFolder files plus ``metadata.jsonl`` and ``classes.json`` (see the module docstring).

    Example:
        >>> import tempfile
        >>> HFWriter(tempfile.mkdtemp()).find_existing({"url": "http://h/a.jpg"}) is None
        True
    """

    def finalize(self, manifest: pa.Table) -> None:
        """Rewrite the files derived from the whole manifest (called after every run)."""
        write_metadata(self.root, manifest)

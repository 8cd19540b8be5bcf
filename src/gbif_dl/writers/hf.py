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
    >>> from gbif_dl.manifest import SUCCESS, manifest_row, rows_to_table
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> writer = HFWriter(root)
    >>> record = {"url": "http://h/a.jpg", "basename": "abc", "label": "bee", "subset": "train"}
    >>> result = FetchResult(record=record, ok=True, body=b"\\xff\\xd8\\xff", ext=".jpg")
    >>> path = writer.write(result)
    >>> writer.finalize(rows_to_table([manifest_row(record, status=SUCCESS, path=path)]))
    >>> line = json.loads((root / "train" / METADATA_NAME).read_text())
    >>> line["file_name"], line["label"], line["class_index"]
    ('bee/abc.jpg', 'bee', 0)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.manifest import SUCCESS, iter_manifest
from gbif_dl.writers._atomic import atomic_path
from gbif_dl.writers.classes import NO_CLASS, class_label, update_classes_from_manifest
from gbif_dl.writers.imagefolder import ImageFolderWriter
from gbif_dl.writers.paths import SafeFolders

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


def write_metadata(root: Path | str, manifest: pa.Table | str | os.PathLike[str]) -> int:
    """Rewrite ``classes.json`` and every split's ``metadata.jsonl`` from ``manifest``.

    ``manifest`` is a table or the path of a manifest parquet file, read a batch at a time
    (twice: the classes, then the lines), so memory stays flat however many rows it has.
    Returns the number of images described. Only rows with status ``success`` count.
    """
    root = Path(root)
    classes = update_classes_from_manifest(root, manifest)
    folders = SafeFolders(root)  # a split folder that is a link: UnsafePathError, not written
    written = 0
    with contextlib.ExitStack() as stack:
        handles: dict[str, TextIO] = {}
        columns = ["status", "path", "subset", "label", *METADATA_COLUMNS]
        for batch in iter_manifest(manifest, columns):
            done = batch.filter(
                pc.and_(pc.equal(batch["status"], SUCCESS), pc.is_valid(batch["path"]))
            )
            written += done.num_rows
            extra = {name: done[name].to_pylist() for name in METADATA_COLUMNS}
            for row, (path, subset, label) in enumerate(
                zip(*(done[name].to_pylist() for name in ("path", "subset", "label")), strict=True)
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
                handle = handles.get(folder)
                if handle is None:
                    target = folders.ensure(folder) / METADATA_NAME  # type: ignore[operator]
                    tmp = stack.enter_context(atomic_path(target))
                    handle = stack.enter_context(open(tmp, "w", encoding="utf-8"))
                    handles[folder] = handle
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    logger.debug("wrote metadata.jsonl for %d splits of %s", len(handles), root)
    return written


class HFWriter(ImageFolderWriter):
    """ImageFolder files plus ``metadata.jsonl`` and ``classes.json`` (see the module docstring).

    Example:
        >>> import tempfile
        >>> HFWriter(tempfile.mkdtemp()).find_existing({"url": "http://h/a.jpg"}) is None
        True
    """

    def finalize(self, manifest: pa.Table | str | os.PathLike[str]) -> None:
        """Rewrite the files derived from the whole manifest (a table or its parquet path)."""
        write_metadata(self.root, manifest)

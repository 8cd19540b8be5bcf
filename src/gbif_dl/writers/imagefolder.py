"""ImageFolder layout: ``root/[subset/]label/<basename>.<ext>``, as gbif-dl 0.1 wrote it.

- ``label`` None (or ``""``): no label folder. A ``dict`` label (``generate_urls(label=None)``
  yields whole records) also gets no folder, but a ``<basename>.json`` sidecar next to the image,
  as in gbif-dl 0.1. Any other label becomes one safe path component
  (:func:`gbif_dl.records.safe_component`): no ``..``, separators or control characters, and
  distinct labels stay distinct.
- The extension comes from the bytes (the fetch engine sniffs it), never from the URL.
- Every file is written to a temp file in its folder and renamed (:mod:`gbif_dl.writers._atomic`).
- After each run, ``root/classes.json`` (:mod:`gbif_dl.writers.classes`) gets the labels of the
  stored images, so every layout and loader shares one class index.
- Nothing is ever written outside ``root``.

Example:
    >>> import tempfile
    >>> from gbif_dl.fetch.result import FetchResult
    >>> writer = ImageFolderWriter(tempfile.mkdtemp())
    >>> record = {"url": "http://h/a.jpg", "basename": "abc", "label": "../../etc",
    ...           "subset": "train"}
    >>> result = FetchResult(record=record, ok=True, body=b"\\xff\\xd8\\xff", ext=".jpg")
    >>> path = writer.write(result)
    >>> path.startswith("train/"), path.endswith("/abc.jpg"), ".." in path.split("/")
    (True, True, False)
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gbif_dl.records import safe_component, url_basename
from gbif_dl.writers._atomic import atomic_write_bytes, remove_temp_files
from gbif_dl.writers.base import Writer
from gbif_dl.writers.classes import update_classes_from_manifest

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from gbif_dl.fetch.result import FetchResult

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderWriter", "record_folder", "safe_basename"]

logger = logging.getLogger(__name__)

#: Extensions the fetch engine can produce, most frequent first (probed on resume).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".png", ".gif", ".webp", ".tif", ".bmp")

_PLAIN_BASENAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_MAX_CACHED_COMPONENTS = 100_000


def safe_basename(record: Mapping[str, Any]) -> str:
    """The file name stem for ``record``: its ``basename`` if harmless, else a safe form of it.

    Example:
        >>> safe_basename({"url": "http://h/a.jpg", "basename": "abc"})
        'abc'
        >>> "/" in safe_basename({"url": "http://h/a.jpg", "basename": "../x"})
        False
    """
    basename = record.get("basename")
    if basename is None or basename == "":
        return url_basename(str(record.get("url") or ""))
    text = str(basename)
    if _PLAIN_BASENAME.match(text) and text not in (".", ".."):
        return text
    return safe_component(text)


class _ComponentCache:
    """safe_component() per distinct label/subset, computed once."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def __call__(self, value: object) -> str | None:
        if value is None or isinstance(value, dict):
            return None
        text = value if isinstance(value, str) else str(value)
        if text == "":
            return None
        component = self._cache.get(text)
        if component is None:
            component = safe_component(text)
            if len(self._cache) < _MAX_CACHED_COMPONENTS:
                self._cache[text] = component
        return component


_components = _ComponentCache()


def record_folder(record: Mapping[str, Any]) -> str:
    """The folder of ``record`` relative to the root: ``"subset/label"``, ``"label"`` or ``""``.

    Example:
        >>> record_folder({"label": "Apis mellifera", "subset": "train"})
        'train/Apis mellifera'
        >>> record_folder({"label": {"gbifID": 1}})
        ''
    """
    parts = [
        part
        for part in (_components(record.get("subset")), _components(record.get("label")))
        if part is not None
    ]
    return "/".join(parts)


class ImageFolderWriter(Writer):
    """Write images into ``root/[subset/]label/<basename>.<ext>``.

    Args:
        root: the output root (must exist).
        fsync: flush each file to disk before renaming it (slower, survives power loss).
        clean_temp_files: remove temp files a killed run left in a folder on its first use.
            Shards that run at the same time share folders, so their writers pass False (the
            sharded job cleans up once no shard runs).

    Example:
        >>> import tempfile
        >>> writer = ImageFolderWriter(tempfile.mkdtemp())
        >>> writer.find_existing({"url": "http://h/a.jpg", "label": "x"}) is None
        True
    """

    shardable = True

    def __init__(
        self, root: Path | str, *, fsync: bool = False, clean_temp_files: bool = True
    ) -> None:
        super().__init__(root)
        self.fsync = fsync
        self.clean_temp_files = clean_temp_files
        self._root_prefix = os.path.normpath(os.path.abspath(self.root)) + os.sep
        self._folders: dict[str, bool] = {}  # relative folder -> existed before this run
        self._made: set[str] = set()  # relative folders known to exist (made by write)

    @classmethod
    def for_shard(cls, root: Path | str, **options: Any) -> ImageFolderWriter:
        """A writer for one shard: shards share folders, so the job (not each shard) sweeps
        temp files, once no shard runs.

        Example:
            >>> import tempfile
            >>> ImageFolderWriter.for_shard(tempfile.mkdtemp()).clean_temp_files
            False
        """
        return cls(root, **{**options, "clean_temp_files": False})

    def _folder(self, rel: str) -> tuple[Path, bool]:
        """The absolute folder for ``rel`` and whether it existed before this run.

        On first use in a run, a pre-existing folder is cleaned of temp files a killed run left.
        """
        path = self.root / rel if rel else self.root
        existed = self._folders.get(rel)
        if existed is None:
            existed = path.is_dir()
            if existed and self.clean_temp_files:
                removed = remove_temp_files(path)
                if removed:
                    logger.info("removed %d leftover temp files in %s", removed, path)
            self._folders[rel] = existed
        return path, existed

    def _check_inside(self, path: Path) -> None:
        if not os.path.normpath(os.path.abspath(path)).startswith(self._root_prefix):
            raise PermissionError(f"refusing to write outside the output root: {path}")

    def write(self, result: FetchResult) -> str:
        """Store ``result.body``; return the path relative to the root.

        Raises:
            OSError: the file could not be written (disk full, permissions, ...).
        """
        record = result.record
        if result.body is None:
            raise ValueError("ImageFolderWriter.write needs a successful result with a body")
        rel = record_folder(record)
        folder, _ = self._folder(rel)
        if rel not in self._made:  # one mkdir per folder and run, not per file
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(rel)
        stem = safe_basename(record)
        ext = result.ext if result.ext in IMAGE_EXTENSIONS else ".bin"
        final = folder / f"{stem}{ext}"
        self._check_inside(final)
        label = record.get("label")
        files = [(final, result.body)]
        if isinstance(label, dict):
            sidecar = json.dumps(label, ensure_ascii=False, default=str).encode("utf-8", "replace")
            files.insert(0, (folder / f"{stem}.json", sidecar))
        for path, data in files:
            try:
                atomic_write_bytes(path, data, fsync=self.fsync)
            except FileNotFoundError:  # the folder was removed during the run: make it again
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, data, fsync=self.fsync)
        return f"{rel}/{stem}{ext}" if rel else f"{stem}{ext}"

    def expected_folder(self, record: Mapping[str, Any]) -> str:
        """The relative folder ``record`` goes to."""
        return record_folder(record)

    def find_existing(self, record: Mapping[str, Any]) -> str | None:
        """The relative path of an image already stored for ``record`` (a few ``stat`` calls).

        Only folders that existed before this run are probed: a folder created by this run
        cannot hold an unjournaled file from an earlier one.
        """
        rel = record_folder(record)
        folder, existed = self._folder(rel)
        if not existed:
            return None
        stem = safe_basename(record)
        for ext in IMAGE_EXTENSIONS:
            try:
                if os.stat(folder / f"{stem}{ext}").st_size > 0:
                    return f"{rel}/{stem}{ext}" if rel else f"{stem}{ext}"
            except OSError:
                continue
        return None

    def close(self) -> None:
        """Nothing to flush: every file is complete once :meth:`write` returns."""

    def placement(self, record: Mapping[str, Any], path: str) -> str:
        """``path`` moved into ``record``'s folder (a rerun changed its split or label).

        Example:
            >>> import tempfile
            >>> writer = ImageFolderWriter(tempfile.mkdtemp())
            >>> writer.placement({"label": "bee", "subset": "val"}, "train/bee/a.jpg")
            'val/bee/a.jpg'
        """
        folder = record_folder(record)
        name = path.rpartition("/")[2]
        return f"{folder}/{name}" if folder else name

    def move_stored(self, path: str, target: str) -> None:
        """Move the stored file at ``path`` to ``target`` (both relative to the root)."""
        destination = self.root / target
        self._check_inside(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / path, destination)

    def finalize(self, manifest: pa.Table | str | os.PathLike[str]) -> None:
        """Add the labels of the stored images to ``root/classes.json`` (called after a run).

        Indices follow :mod:`gbif_dl.writers.classes`: sorted on the first run (the
        torchvision order), new labels appended on later ones. A root without any labelled
        image gets no ``classes.json``.
        """
        update_classes_from_manifest(self.root, manifest, skip_empty=True)

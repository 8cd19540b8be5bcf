"""What the loaders and the report read from a dataset root, local folder or store root.

:class:`DatasetRoot` is the one reader: the manifest (as a table), ``classes.json``, the bytes of
a stored image, the finished WebDataset shards and their URLs. For a local folder it reads the
files; for a store root (``s3://bucket/ds`` + ``storage_options``) it reads the objects. It
needs neither torch nor webdataset nor datasets, so it is tested without them.

Example:
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> from gbif_dl.storage.location import open_store
    >>> mirror = StoreMirror(open_store("memory://doc-read/ds"))
    >>> buffer = pa.BufferOutputStream()
    >>> pq.write_table(pa.table({"url": ["http://h/a.jpg"], "status": ["success"],
    ...                          "path": ["bee/a.jpg"]}), buffer)
    >>> mirror.put_bytes("manifest.parquet", buffer.getvalue().to_pybytes())
    >>> mirror.put_bytes("bee/a.jpg", b"\\xff\\xd8\\xff")
    >>> data = DatasetRoot("memory://doc-read/ds")
    >>> data.read_manifest(["path"])["path"].to_pylist(), data.read_bytes("bee/a.jpg")
    (['bee/a.jpg'], b'\\xff\\xd8\\xff')
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from gbif_dl.errors import OutputError
from gbif_dl.manifest.table import MANIFEST_NAME, conform, read_manifest
from gbif_dl.storage.location import is_store_root, local_root, open_store
from gbif_dl.storage.mirror import StoreMirror
from gbif_dl.writers.classes import CLASSES_NAME, ClassIndex, load_classes
from gbif_dl.writers.webdataset import list_shards, parse_shard_name

__all__ = ["DatasetRoot"]


class DatasetRoot:
    """A downloaded dataset, in a local folder or a store root (see the module docstring).

    Args:
        root: a folder, or an fsspec URL (``s3://bucket/ds``).
        storage_options: passed to fsspec for a URL (credentials, ``endpoint_url``...).

    Attributes:
        root: the root as given (a ``file://`` prefix removed).
        mirror: the store root's :class:`StoreMirror`, or None for a local folder.

    Example:
        >>> import tempfile
        >>> DatasetRoot(tempfile.mkdtemp()).read_manifest() is None
        True
    """

    def __init__(
        self, root: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
    ) -> None:
        self.root = local_root(root)
        self.mirror: StoreMirror | None = None
        if is_store_root(self.root):
            self.mirror = StoreMirror(open_store(str(self.root), storage_options))
        elif storage_options:
            raise OutputError(
                f"storage_options= applies to a store root such as 's3://bucket/ds'; "
                f"{os.fspath(root)!r} is a local folder (drop storage_options=)"
            )

    @property
    def is_store(self) -> bool:
        """True for a store root."""
        return self.mirror is not None

    @property
    def display(self) -> str:
        """The root as a user wrote it (for messages)."""
        return self.mirror.url if self.mirror is not None else os.fspath(self.root)

    @property
    def local(self) -> Path:
        """The local folder (only for a local root)."""
        assert self.mirror is None, "a store root has no local folder"
        return Path(os.fspath(self.root))

    def read_manifest(self, columns: Iterable[str] | None = None) -> pa.Table | None:
        """The manifest (only ``columns`` when given), or None when there is none."""
        if self.mirror is None:
            return read_manifest(self.local, columns=columns)
        try:
            handle = self.mirror.open(MANIFEST_NAME)
        except FileNotFoundError:
            return None
        with handle:
            parquet = pq.ParquetFile(handle)
            present = set(parquet.schema_arrow.names)
            wanted = list(columns) if columns is not None else list(parquet.schema_arrow.names)
            table = parquet.read(columns=[name for name in wanted if name in present])
        return conform(table, wanted if columns is not None else None)

    def read_classes(self) -> ClassIndex | None:
        """The content of ``classes.json``, or None when there is none."""
        if self.mirror is None:
            if not (self.local / CLASSES_NAME).exists():
                return None
            return load_classes(self.local)
        data = self.mirror.get_bytes(CLASSES_NAME)
        if data is None:
            return None
        try:
            return ClassIndex.from_json(json.loads(data), source=self.mirror.url_of(CLASSES_NAME))
        except ValueError as exc:
            raise OutputError(
                f"cannot read {self.mirror.url_of(CLASSES_NAME)}: {exc}; delete it to have it "
                "rebuilt from the manifest"
            ) from exc

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of the stored file ``rel`` (``/``-separated, inside the root).

        Raises:
            OutputError: ``rel`` points outside the root.
            FileNotFoundError: there is no such file.
        """
        parts = rel.split("/")
        if not rel or rel.startswith("/") or ".." in parts or "\\" in rel:
            raise OutputError(f"manifest path {rel!r} points outside {self.display!r}")
        if self.mirror is None:
            return (self.local / rel).read_bytes()
        data = self.mirror.get_bytes(rel)
        if data is None:
            raise FileNotFoundError(f"no object {rel!r} in {self.mirror.url}")
        return data

    def shard_names(self, split: str | None = None) -> list[str]:
        """The finished WebDataset shards (of ``split``, or all), by split then number."""
        if self.mirror is None:
            return [path.name for path in list_shards(self.local, split)]
        found = []
        for name in self.mirror.names():
            parsed = parse_shard_name(name)
            if parsed is not None and (split is None or parsed[0] == split):
                found.append((parsed, name))
        return [name for _, name in sorted(found)]

    def url_of(self, name: str) -> str:
        """The path (local) or URL (store) of ``name``."""
        if self.mirror is None:
            return str(self.local / name)
        return self.mirror.url_of(name)

    def open(self, name: str) -> IO[bytes]:
        """A binary reader of ``name`` (a shard, an image)."""
        if self.mirror is None:
            return open(self.local / name, "rb")
        return self.mirror.open(name)

    def copy_to(self, target: Path, names: Iterable[str]) -> Path:
        """Copy the objects ``names`` into the local folder ``target`` (those already there
        with the same size are kept); returns ``target``. For libraries that read local files
        only (``datasets``' imagefolder reads ``metadata.jsonl`` next to the images)."""
        assert self.mirror is not None, "copy_to reads a store root"
        for name in names:
            local = target / name
            with contextlib.suppress(OSError):
                if local.stat().st_size == self.mirror.fs.size(self.mirror.store.key(name)):
                    continue
            local.parent.mkdir(parents=True, exist_ok=True)
            self.mirror.get_file(name, local)
        return target

    def walk(self) -> Iterator[str]:
        """Every object (store) or file (local) under the root, relative to it."""
        if self.mirror is not None:
            yield from sorted(self.mirror.walk())
            return
        for path in sorted(self.local.rglob("*")):
            if path.is_file():
                yield path.relative_to(self.local).as_posix()

"""The layouts of a store root: each object written whole, and a rerun resumes from the store.

- :class:`StoreWebDatasetWriter`: a shard is built in the local work folder as usual and, once
  complete, uploaded whole to ``{split}-{shard:06d}.tar``; only then does :meth:`committed`
  list its samples, so the journal never claims a sample the store does not hold. Before the
  shard, a small ``.{shard}.keys`` object lists its image members: a rerun finds the samples of
  shards whose rows were lost (a run killed between the upload and the journal) without
  reading the shards.
- :class:`StoreHFWriter`: each image is written locally, uploaded whole to
  ``[split/]label/<basename>.<ext>`` and removed locally; ``metadata.jsonl`` files and
  ``classes.json`` are uploaded after every run. A rerun leaves stored images where they are
  (no move in a store).

Example:
    >>> import tempfile
    >>> from gbif_dl.fetch.result import FetchResult
    >>> from gbif_dl.storage.location import open_store
    >>> mirror = StoreMirror(open_store("memory://doc-writers/ds"))
    >>> writer = StoreWebDatasetWriter(tempfile.mkdtemp(), mirror=mirror, shard_size=1)
    >>> record = {"url": "http://h/0.jpg", "basename": "k0", "label": "bee"}
    >>> _ = writer.write(FetchResult(record=record, ok=True, body=b"\\xff\\xd8\\xff", ext=".jpg"))
    >>> writer.committed(), sorted(mirror.names())
    (['train-000000.tar/k0.jpg'], ['.train-000000.tar.keys', 'classes.json', 'train-000000.tar'])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gbif_dl.errors import ConfigError
from gbif_dl.records import url_basename
from gbif_dl.storage.location import STORE_OUTPUTS
from gbif_dl.storage.mirror import StoreMirror
from gbif_dl.writers.base import Writer
from gbif_dl.writers.classes import CLASSES_NAME
from gbif_dl.writers.hf import METADATA_NAME, HFWriter
from gbif_dl.writers.imagefolder import IMAGE_EXTENSIONS, disambiguated, record_folder
from gbif_dl.writers.imagefolder import safe_basename as image_stem
from gbif_dl.writers.webdataset import WebDatasetWriter, parse_shard_name

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from gbif_dl.fetch.result import FetchResult

__all__ = ["StoreHFWriter", "StoreWebDatasetWriter", "keys_name", "make_store_writer"]


def keys_name(shard: str) -> str:
    """The name of the object listing the image members of ``shard``.

    Example:
        >>> keys_name("train-000001.tar")
        '.train-000001.tar.keys'
    """
    return f".{shard}.keys"


class StoreWebDatasetWriter(WebDatasetWriter):
    """WebDataset shards uploaded whole to a store root (see the module docstring).

    Args:
        root: the local work folder (shards are built there).
        mirror: the store root.
        shard_size, shard_bytes, fsync: as for :class:`WebDatasetWriter`.

    Example:
        >>> import tempfile
        >>> from gbif_dl.storage.location import open_store
        >>> mirror = StoreMirror(open_store("memory://doc-wds/ds"))
        >>> StoreWebDatasetWriter(tempfile.mkdtemp(), mirror=mirror).is_stored("train-000000.tar/a")
        False
    """

    def __init__(
        self,
        root: Path | str,
        *,
        mirror: StoreMirror,
        shard_size: int | None = None,
        shard_bytes: int | None = None,
        fsync: bool = False,
    ) -> None:
        self.mirror = mirror  # before the base class lists the finished shards
        super().__init__(root, shard_size=shard_size, shard_bytes=shard_bytes, fsync=fsync)

    def _finished_names(self) -> list[str]:
        return [name for name in self.mirror.names() if parse_shard_name(name) is not None]

    def _save_classes(self) -> None:
        super()._save_classes()
        self.mirror.put_file(self.root / CLASSES_NAME, CLASSES_NAME)

    def _publish(self, tmp: Path, name: str, samples: list[str]) -> None:
        members = "".join(path.partition("/")[2] + "\n" for path in samples)
        self.mirror.put_bytes(keys_name(name), members.encode("utf-8"))
        self.mirror.put_file(tmp, name)  # whole: the tar appears complete, or not at all
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    def _open_shard(self, name: str) -> IO[bytes]:
        return self.mirror.open(name)

    def _image_members(self, name: str) -> list[str]:
        listed = self.mirror.get_bytes(keys_name(name))
        if listed is None:  # a shard from elsewhere: read its headers
            return super()._image_members(name)
        return [line for line in listed.decode("utf-8").splitlines() if line]


class StoreHFWriter(HFWriter):
    """The Hugging Face layout in a store root, one whole object per image (see the module
    docstring).

    Args:
        root: the local work folder (each image passes through it).
        mirror: the store root.
        fsync: as for :class:`~gbif_dl.writers.imagefolder.ImageFolderWriter`.

    Example:
        >>> import tempfile
        >>> from gbif_dl.storage.location import open_store
        >>> mirror = StoreMirror(open_store("memory://doc-hf/ds"))
        >>> StoreHFWriter(tempfile.mkdtemp(), mirror=mirror).find_existing({"url": "http://h/a"})
    """

    shardable = False

    def __init__(self, root: Path | str, *, mirror: StoreMirror, fsync: bool = False) -> None:
        super().__init__(root, fsync=fsync)
        self.mirror = mirror
        #: the names of the objects in the store root (listed once, then kept up to date)
        self.objects: set[str] = mirror.walk()

    def write(self, result: FetchResult) -> str:
        """Store ``result`` locally, upload it whole, remove the local copy; return its path."""
        path = super().write(result)
        folder, _, name = path.rpartition("/")
        stem = name.rpartition(".")[0]
        sidecar = f"{folder}/{stem}.json" if folder else f"{stem}.json"
        for rel in (sidecar, path):  # a dict label's sidecar first, as the local layout does
            local = self.root / rel
            if not local.is_file():
                continue
            try:
                self.mirror.put_file(local, rel)
            finally:  # uploaded or not, the local copy has done its job
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(local)
            self.objects.add(rel)
        return path

    def is_stored(self, path: str) -> bool:
        """True when the store holds ``path``."""
        return path in self.objects

    def find_existing(self, record: Mapping[str, Any]) -> str | None:
        """The stored object of ``record`` the manifest does not know about (a run killed
        between the upload and the journal), from the listing of the store root."""
        rel = record_folder(record)
        url = str(record.get("url") or "")
        stem = image_stem(record)
        stems = [stem] if stem == url_basename(url) else [disambiguated(stem, url), stem]
        for candidate in stems:
            for ext in IMAGE_EXTENSIONS:
                path = f"{rel}/{candidate}{ext}" if rel else f"{candidate}{ext}"
                if path in self.objects:
                    return path
        return None

    def placement(self, record: Mapping[str, Any], path: str) -> str:
        """``path``: a stored object stays where it is (a store has no move)."""
        return path

    def read_stored(self, path: str) -> bytes:
        """The bytes of the stored object ``path``."""
        data = self.mirror.get_bytes(path)
        if data is None:
            raise FileNotFoundError(f"no object {path!r} in {self.mirror.url}")
        return data

    def finalize(self, manifest: pa.Table | str | os.PathLike[str]) -> None:
        """Write ``metadata.jsonl`` files and ``classes.json`` locally, then upload them."""
        super().finalize(manifest)
        for local in sorted(self.root.rglob(METADATA_NAME)):
            if local.is_file() and not local.is_symlink():
                rel = local.relative_to(self.root).as_posix()
                self.mirror.put_file(local, rel)
        if (self.root / CLASSES_NAME).is_file():
            self.mirror.put_file(self.root / CLASSES_NAME, CLASSES_NAME)


#: ``output=`` name -> the Writer of a store root (:data:`~gbif_dl.storage.location.STORE_OUTPUTS`).
_STORE_WRITERS: dict[str, type[Writer]] = {
    "webdataset": StoreWebDatasetWriter,
    "hf": StoreHFWriter,
}
assert set(_STORE_WRITERS) == set(STORE_OUTPUTS)


def make_store_writer(
    output: str, work: Path, mirror: StoreMirror, options: Mapping[str, Any] | None = None
) -> Writer:
    """The writer of ``output`` for a store root, building files in ``work``.

    Example:
        >>> import tempfile
        >>> from gbif_dl.storage.location import open_store
        >>> mirror = StoreMirror(open_store("memory://doc-make/ds"))
        >>> type(make_store_writer("hf", Path(tempfile.mkdtemp()), mirror)).__name__
        'StoreHFWriter'
    """
    cls = _STORE_WRITERS.get(output)
    if cls is None:
        raise ConfigError(
            f"output={output!r} cannot be written to an object store; use one of "
            f"{', '.join(map(repr, STORE_OUTPUTS))}"
        )
    return cls(work, mirror=mirror, **dict(options or {}))  # type: ignore[call-arg]

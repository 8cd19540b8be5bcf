"""Whole-object writes to a store root, and the reads a rerun or a loader needs.

Every object reaches its final key in one write: a local file is finished first, then uploaded
with ``fs.put_file`` (a single PUT, or a multipart upload that S3 makes visible only when it
completes), or bytes are written with ``fs.pipe_file``. No temp key is ever used, so a reader
(or a rerun) never finds a partial object under a final key, and a killed upload leaves nothing.

Example:
    >>> import tempfile
    >>> from gbif_dl.storage.location import open_store
    >>> mirror = StoreMirror(open_store("memory://doc-mirror/ds"))
    >>> local = Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = local.write_bytes(b"hello")
    >>> mirror.put_file(local, "sub/a.txt")
    >>> mirror.put_bytes("b.txt", b"!")
    >>> mirror.get_bytes("sub/a.txt"), sorted(mirror.names()), sorted(mirror.walk())
    (b'hello', ['b.txt', 'sub'], ['b.txt', 'sub/a.txt'])
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from gbif_dl.storage.location import StoreRoot, store_error
from gbif_dl.writers._atomic import atomic_path

__all__ = ["StoreMirror"]

logger = logging.getLogger(__name__)


class StoreMirror:
    """Whole-object access to one store root (see the module docstring).

    Every method raises :class:`~gbif_dl.errors.OutputError` (naming the problem and the fix:
    a missing bucket, missing credentials, denied access) for a store failure, except
    :meth:`put_file` and :meth:`put_bytes`, which raise an :class:`OSError` so the download run
    records a ``write_error`` as for a local disk.

    Args:
        store: the root (:func:`~gbif_dl.storage.location.open_store`).

    Example:
        >>> from gbif_dl.storage.location import open_store
        >>> StoreMirror(open_store("memory://doc-empty/ds")).names()
        []
    """

    def __init__(self, store: StoreRoot) -> None:
        self.store = store
        self.fs = store.fs

    @property
    def url(self) -> str:
        """The root's URL."""
        return self.store.url

    def url_of(self, name: str) -> str:
        """The full URL of ``name`` (what a loader or a user opens)."""
        return f"{self.store.url}/{name}"

    # writing -----------------------------------------------------------------------------------

    def put_file(self, local: Path | str, name: str) -> None:
        """Upload the finished local file ``local`` to ``name``, whole.

        Raises:
            OSError: the upload failed (nothing is left under ``name`` on S3).
        """
        try:
            self.fs.put_file(os.fspath(local), self.store.key(name))
        except OSError:
            raise
        except Exception as exc:  # botocore and friends: an OSError for the caller
            raise OSError(str(store_error(self.store, exc, f"upload {name} to"))) from exc

    def put_bytes(self, name: str, data: bytes) -> None:
        """Write ``data`` to ``name`` in one request.

        Raises:
            OSError: the write failed.
        """
        try:
            self.fs.pipe_file(self.store.key(name), data)
        except OSError:
            raise
        except Exception as exc:
            raise OSError(str(store_error(self.store, exc, f"write {name} to"))) from exc

    def remove(self, names: Iterable[str]) -> None:
        """Delete the objects ``names`` (missing ones are ignored)."""
        keys = [self.store.key(name) for name in names]
        if not keys:
            return
        try:
            self.fs.rm(keys)
        except FileNotFoundError:
            for key in keys:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(key)
        except Exception as exc:
            raise store_error(self.store, exc, "delete from") from exc

    # reading -----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names directly under the root (objects and prefixes); [] for a new root.

        Raises:
            OutputError: the store cannot be listed (missing bucket, credentials...).
        """
        try:
            keys = self.fs.ls(self.store.path, detail=False, refresh=True)
        except FileNotFoundError:
            self._check_bucket()
            return []
        except Exception as exc:
            raise store_error(self.store, exc, "list") from exc
        return [self.store.name_of(str(key).rstrip("/")) for key in keys]

    def walk(self) -> set[str]:
        """Every object under the root, as ``/``-separated names relative to it."""
        try:
            keys = self.fs.find(self.store.path, withdirs=False)
        except FileNotFoundError:
            self._check_bucket()
            return set()
        except Exception as exc:
            raise store_error(self.store, exc, "list") from exc
        return {self.store.name_of(str(key)) for key in keys}

    def _check_bucket(self) -> None:
        """OutputError when the root's bucket (or top folder) does not exist."""
        top = self.store.path.strip("/").partition("/")[0]
        prefix = "/" if self.store.path.startswith("/") else ""
        try:
            exists = self.fs.exists(prefix + top)
        except Exception as exc:
            raise store_error(self.store, exc, "reach") from exc
        if not exists and self.store.protocol != "memory":
            raise store_error(self.store, FileNotFoundError(f"no bucket {top!r}"), "use")

    def exists(self, name: str) -> bool:
        """True when the object ``name`` exists."""
        try:
            return bool(self.fs.exists(self.store.key(name)))
        except Exception as exc:
            raise store_error(self.store, exc, f"read {name} from") from exc

    def get_bytes(self, name: str) -> bytes | None:
        """The bytes of ``name``, or None when there is no such object."""
        try:
            data: bytes = self.fs.cat_file(self.store.key(name))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise store_error(self.store, exc, f"read {name} from") from exc
        return data

    def get_file(self, name: str, local: Path) -> bool:
        """Download ``name`` to the local file ``local`` (atomically); False when missing."""
        try:
            with atomic_path(local) as tmp:
                self.fs.get_file(self.store.key(name), os.fspath(tmp))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise store_error(self.store, exc, f"read {name} from") from exc
        return True

    def open(self, name: str) -> IO[bytes]:
        """A binary file object reading ``name`` (random access; close it).

        Raises:
            FileNotFoundError: there is no such object.
        """
        try:
            handle: Any = self.fs.open(self.store.key(name), "rb")
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise store_error(self.store, exc, f"read {name} from") from exc
        return handle

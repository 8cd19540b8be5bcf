"""The Writer base class: every hook the download core calls, with defaults that do nothing.

The core (:mod:`gbif_dl.pipeline.run`) calls these methods directly; a layout overrides the ones
it needs. ``write`` is the one a writer must provide.

====================  ==========================================================================
hook                  default
====================  ==========================================================================
``write``             (required) store one successful fetch, return its path under the root
``for_shard``         the writer of one shard of a ``runner=`` job (``shardable`` layouts only)
``find_existing``     None: the writer cannot find files a killed run did not journal
``own``               nothing: the manifest says a record's stored file is at a path
``close``             nothing to flush
``defers_commit``     False: a file is durable once ``write`` returns
``committed``         []: the paths made durable since the last call (``defers_commit`` writers)
``is_stored``         ``root/path`` is a file
``placement``         ``path``: a stored file stays where it is on a rerun
``move_stored``       NotImplementedError (only called when ``placement`` differs from ``path``)
``read_stored``       the bytes of ``root/path``
``finalize``          nothing derived from the manifest
``check_options``     no options to check
``removable``         True: ``remove_stored`` deletes a stored file (a quota trim)
``remove_stored``     delete ``root/path``, never through a link
====================  ==========================================================================

Example:
    >>> import tempfile
    >>> from gbif_dl.fetch.result import FetchResult
    >>> class Flat(Writer):
    ...     def write(self, result: FetchResult) -> str:
    ...         name = result.record["basename"] + ".bin"
    ...         (self.root / name).write_bytes(result.body or b"")
    ...         return name
    >>> writer = Flat(tempfile.mkdtemp())
    >>> writer.write(FetchResult(record={"url": "u", "basename": "a"}, ok=True, body=b"x"))
    'a.bin'
    >>> writer.is_stored("a.bin"), writer.read_stored("a.bin"), writer.committed()
    (True, b'x', [])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gbif_dl.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from gbif_dl.fetch.result import FetchResult

__all__ = ["Writer"]


class Writer:
    """Where successful fetches go; subclass it and override ``write`` (and what else applies).

    ``write`` stores one successful :class:`~gbif_dl.fetch.result.FetchResult` and returns the
    path of the stored image relative to the output root ("/"-separated). It must never leave a
    partial file under a final name and may raise :class:`OSError` (the caller records a
    ``write_error``; a full disk stops the run).

    Attributes:
        root: the output root.
        defers_commit: True when a written file becomes durable only later (a WebDataset shard
            is renamed into place when it is full); the core then journals a row only once
            :meth:`committed` lists its path, so the journal never claims a file a crash lost.
        shardable: True when several writers can share the root at once (one per shard of a
            ``runner=`` job); False for layouts that number their own files.

    Example:
        >>> import tempfile
        >>> writer = Writer(tempfile.mkdtemp())
        >>> writer.find_existing({"url": "http://h/a.jpg"}) is None, writer.placement({}, "a.jpg")
        (True, 'a.jpg')
    """

    defers_commit: ClassVar[bool] = False
    shardable: ClassVar[bool] = False
    removable: ClassVar[bool] = True

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @classmethod
    def for_shard(cls, root: Path | str, **options: Any) -> Writer:
        """The writer of one shard of a ``runner=`` job (several share the root at once).

        Raises:
            ConfigError: the layout cannot be written in shards (``shardable`` is False).

        Example:
            >>> import tempfile
            >>> Writer.for_shard(tempfile.mkdtemp())  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            gbif_dl.errors.ConfigError: Writer cannot be written in shards...
        """
        if not cls.shardable:
            raise ConfigError(f"{cls.__name__} cannot be written in shards by a runner")
        return cls(root, **options)

    @staticmethod
    def check_options(**options: Any) -> None:
        """Raise ConfigError for bad writer options, before any I/O (default: none to check).

        Example:
            >>> Writer.check_options(shard_size=3)
        """

    def write(self, result: FetchResult) -> str:
        """Store one successful result; return its path relative to the root."""
        raise NotImplementedError(f"{type(self).__name__} must implement write()")

    def find_existing(self, record: Mapping[str, Any]) -> str | None:
        """The relative path of a stored image for ``record`` the manifest does not know about
        (a crash between storing and journaling), or None when the writer cannot tell cheaply."""
        return None

    def own(self, record: Mapping[str, Any], path: str) -> None:
        """Note that the manifest lists ``path`` as ``record``'s stored file (called before the
        record is skipped or rewritten), so the writer never gives that name to another URL."""

    def close(self) -> None:
        """Finish writing (flush, close open shards)."""

    def committed(self) -> list[str]:
        """The paths made durable since the last call (for ``defers_commit`` writers)."""
        return []

    def is_stored(self, path: str) -> bool:
        """True when the file at ``path`` (as :meth:`write` returned it) is still stored."""
        return (self.root / path).is_file()

    def placement(self, record: Mapping[str, Any], path: str) -> str:
        """Where the stored file at ``path`` belongs now that ``record`` is asked for again (its
        split or label may have changed); ``path`` itself when it stays. No I/O."""
        return path

    def move_stored(self, path: str, target: str) -> None:
        """Move the stored file at ``path`` to ``target`` (a :meth:`placement` result)."""
        raise NotImplementedError(f"{type(self).__name__} does not move stored files")

    def read_stored(self, path: str) -> bytes:
        """The bytes of the stored file at ``path``."""
        return (self.root / path).read_bytes()

    def remove_stored(self, path: str) -> None:
        """Delete the stored file at ``path`` (``short_streams="trim"``), never through a link;
        writers whose files cannot be removed one by one set ``removable`` False."""
        from gbif_dl.writers.paths import remove_inside

        remove_inside(self.root, path)

    def finalize(self, manifest: pa.Table | str | os.PathLike[str]) -> None:
        """Write the files derived from the whole manifest (a table or its parquet path) after a
        run or a shard merge; default: none."""

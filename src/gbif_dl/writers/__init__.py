"""Writers store fetched images; the manifest and attribution files are written for all of them.

A writer is anything with the :class:`Writer` methods. :func:`gbif_dl.io.download` only talks to
this protocol, so another output format (WebDataset shards, a Hugging Face dataset) is a new
class here, not a new branch in ``io``.

Example:
    >>> import tempfile
    >>> from gbif_dl.writers.imagefolder import ImageFolderWriter
    >>> isinstance(ImageFolderWriter(tempfile.mkdtemp()), Writer)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.fetch.result import FetchResult

__all__ = ["Writer"]


@runtime_checkable
class Writer(Protocol):
    """Where successful fetches go.

    ``write`` stores one successful :class:`~gbif_dl.fetch.result.FetchResult` and returns the
    path of the stored image relative to the output root ("/"-separated). It must never leave a
    partial file under a final name, and may raise :class:`OSError` (the caller records a
    ``write_error``; a full disk stops the run). ``find_existing`` returns the relative path of an
    already stored image for a record that the manifest does not know about (a crash between
    storing and journaling), or None; a writer that cannot tell cheaply returns None.
    """

    def write(self, result: FetchResult) -> str:
        """Store one successful result; return its path relative to the root."""
        ...

    def find_existing(self, record: Mapping[str, Any]) -> str | None:
        """The relative path of a stored image for ``record``, or None."""
        ...

    def close(self) -> None:
        """Finish writing (flush, close open shards)."""
        ...

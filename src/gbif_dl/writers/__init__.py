"""Writers store fetched images; the manifest and attribution files are written for all of them.

A writer is a :class:`Writer` subclass (:mod:`gbif_dl.writers.base` lists every hook the core
calls). The download core only talks to that class, and picks the class by name from the one
registry, :data:`OUTPUTS` (:mod:`gbif_dl.writers.registry`), so another output format is a new
class and one registry line, not a new branch in the core.

Example:
    >>> import tempfile
    >>> from gbif_dl.writers.imagefolder import ImageFolderWriter
    >>> isinstance(ImageFolderWriter(tempfile.mkdtemp()), Writer)
    True
    >>> "hf" in OUTPUTS
    True
"""

from __future__ import annotations

from gbif_dl.writers.base import Writer
from gbif_dl.writers.registry import OUTPUTS, make_writer, writer_class

__all__ = ["OUTPUTS", "Writer", "make_writer", "writer_class"]

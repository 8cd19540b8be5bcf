"""gbif-dl 0.1.1's ``gbif_dl.stores``: the item type and the downloader, as 0.1.1 named them.

``MediaData`` is the dict every generator yields; :mod:`gbif_dl.stores.dl_async` and
:mod:`gbif_dl.stores.export` are thin aliases over :func:`gbif_dl.io.download` and a CSV writer.
New code uses :mod:`gbif_dl.io` and :mod:`gbif_dl.records`.

Example:
    >>> import gbif_dl
    >>> sorted(gbif_dl.stores.MediaData.__annotations__)[:3]
    ['basename', 'label', 'license']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.stores import dl_async, export

__all__ = ["MediaData", "dl_async", "export"]


class MediaData(TypedDict):
    """One media item as gbif-dl 0.1.1 described it (today's records carry more keys).

    Example:
        >>> item: MediaData = {"url": "http://h/a.jpg", "basename": None, "label": "1",
        ...                    "subset": None, "publisher": None, "license": None,
        ...                    "rightsHolder": None}
        >>> item["label"]
        '1'
    """

    url: str
    basename: str | None
    label: str | None
    subset: str | None
    publisher: str | None
    license: str | None
    rightsHolder: str | None


def __getattr__(name: str) -> Any:
    """Import ``dl_async`` and ``export`` on first use."""
    if name in ("dl_async", "export"):
        return importlib.import_module(f"gbif_dl.stores.{name}")
    raise AttributeError(f"module 'gbif_dl.stores' has no attribute {name!r}")

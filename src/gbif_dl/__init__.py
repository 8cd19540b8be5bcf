"""gbif-dl: turn GBIF occurrence media into machine-learning image datasets.

The three entry points of the original gbif-dl keep working unchanged::

    import gbif_dl
    urls = gbif_dl.api.generate_urls(queries={"speciesKey": [5352251]}, label="speciesKey")
    stats = gbif_dl.io.download(urls, root="data")

Example:
    >>> import gbif_dl
    >>> isinstance(gbif_dl.__version__, str)
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gbif_dl._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl import api, dwca, io

__all__ = ["__version__", "api", "dwca", "io"]

_SUBMODULES = {"api", "dwca", "io", "gbif", "testing", "loaders", "sampling", "sources"}


def __getattr__(name: str) -> Any:
    """Import the public submodules lazily, so ``import gbif_dl`` stays fast and light."""
    if name in _SUBMODULES:
        return importlib.import_module(f"gbif_dl.{name}")
    raise AttributeError(f"module 'gbif_dl' has no attribute {name!r}")

"""gbif-dl: turn GBIF occurrence media into machine-learning image datasets.

The three entry points of the original gbif-dl keep working unchanged::

    import gbif_dl
    urls = gbif_dl.api.generate_urls(queries={"speciesKey": [5352251]}, label="speciesKey")
    stats = gbif_dl.io.download(urls, root="data")

So do gbif-dl 0.1.1's names: ``gbif_dl.stores.dl_async.download`` (also ``gbif_dl.dl_async``),
``gbif_dl.stores.export.to_csv`` (also ``gbif_dl.export``), ``gbif_dl.MediaData`` and
``gbif_dl.generators.api`` / ``gbif_dl.generators.dwca``. Submodules are imported on first use,
so ``import gbif_dl`` stays fast and light.

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
    from gbif_dl import api, dwca, generators, io, stores
    from gbif_dl.stores import MediaData, dl_async, export

__all__ = [
    "MediaData",
    "__version__",
    "api",
    "dl_async",
    "dwca",
    "export",
    "generators",
    "io",
    "stores",
]

_SUBMODULES = {
    "api",
    "dwca",
    "io",
    "gbif",
    "testing",
    "loaders",
    "sampling",
    "sources",
    "stores",
    "generators",
}
#: gbif-dl 0.1.1's shortcuts: name -> (module, attribute or None for the module itself).
_ALIASES = {
    "dl_async": ("gbif_dl.stores.dl_async", None),
    "export": ("gbif_dl.stores.export", None),
    "MediaData": ("gbif_dl.stores", "MediaData"),
}


def __getattr__(name: str) -> Any:
    """Import the public submodules lazily, so ``import gbif_dl`` stays fast and light."""
    if name in _SUBMODULES:
        return importlib.import_module(f"gbif_dl.{name}")
    if name in _ALIASES:
        module_name, attribute = _ALIASES[name]
        module = importlib.import_module(module_name)
        return module if attribute is None else getattr(module, attribute)
    raise AttributeError(f"module 'gbif_dl' has no attribute {name!r}")

"""gbif-dl 0.1.1's ``gbif_dl.generators``: the record generators under their 0.1.1 names.

:mod:`gbif_dl.generators.api` (occurrence search) and :mod:`gbif_dl.generators.dwca` (Darwin
Core Archives) alias :mod:`gbif_dl.api` and :mod:`gbif_dl.dwca`, which new code uses.

Example:
    >>> import gbif_dl
    >>> gbif_dl.generators.api.generate_urls is gbif_dl.api.generate_urls
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.generators import api, dwca

__all__ = ["api", "dwca"]


def __getattr__(name: str) -> Any:
    """Import ``api`` and ``dwca`` on first use."""
    if name in ("api", "dwca"):
        return importlib.import_module(f"gbif_dl.generators.{name}")
    raise AttributeError(f"module 'gbif_dl.generators' has no attribute {name!r}")

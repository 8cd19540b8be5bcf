"""Offline GBIF for tests, benchmarks and demos: a synthetic population, the API, media hosts.

::

    Population      deterministic synthetic occurrences (numpy columns, records built lazily)
    GbifSimulator   the GBIF API on loopback: search, facets, downloads, species match
    MediaHosts      image hosts on 127.0.0.1 .. 127.0.0.N with per-host faults (HostFaults)
    HostNameProxy   fixed host names for the media hosts (URLs that do not change with ports)
    Simulation      all of the above together, wired up
    write_dwca      a real-format GBIF Darwin Core Archive for records of a population

Example:
    >>> from gbif_dl.testing import Simulation
    >>> with Simulation(seed=0, size=200, n_hosts=2) as simu:
    ...     simu.api_url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gbif_dl.testing.archive import DwcaSummary, write_dwca
from gbif_dl.testing.population import Population
from gbif_dl.testing.simulator import GbifSimulator

if TYPE_CHECKING:
    from gbif_dl.testing.mediahost import HostFaults, MediaHosts
    from gbif_dl.testing.naming import HostNameProxy
    from gbif_dl.testing.simulation import Simulation

__all__ = [
    "DwcaSummary",
    "GbifSimulator",
    "HostFaults",
    "HostNameProxy",
    "MediaHosts",
    "Population",
    "Simulation",
    "write_dwca",
]

_LAZY = {
    "HostFaults": "gbif_dl.testing.mediahost",
    "HostNameProxy": "gbif_dl.testing.naming",
    "MediaHosts": "gbif_dl.testing.mediahost",
    "Simulation": "gbif_dl.testing.simulation",
}


def __getattr__(name: str) -> Any:
    """Import the media-host names on first use (they pull in the image renderer)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gbif_dl.testing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)

"""The columns of a :class:`~gbif_dl.testing.population.Population`, declared once.

:class:`~gbif_dl.testing.population.Population` fills them (one NumPy array per field, one
entry per record, plus the species and dataset tables); the mixins that search records
(:mod:`gbif_dl.testing.population_search`), write them as JSON
(:mod:`gbif_dl.testing.record_json`) and match names (:mod:`gbif_dl.testing.species_match`)
read them through this base class.

Example:
    >>> "sp" in PopulationColumns.__annotations__
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PopulationColumns"]


class PopulationColumns:
    """The attributes :class:`~gbif_dl.testing.population.Population` sets and its mixins read.

    Example:
        >>> sorted(PopulationColumns.__annotations__)[:3]
        ['_dataset_license', '_datasets', '_rank_keys']
    """

    size: int
    media_base_urls: list[str]
    _template: dict[str, Any]
    _species: list[dict[str, Any]]
    _datasets: list[dict[str, Any]]
    _rank_keys: dict[str, npt.NDArray[np.int64]]
    _dataset_license: npt.NDArray[Any]
    sp: npt.NDArray[Any]
    ds: npt.NDArray[Any]
    ctry: npt.NDArray[Any]
    bor: npt.NDArray[Any]
    absent: npt.NDArray[Any]
    has_species: npt.NDArray[Any]
    person: npt.NDArray[Any]
    lat: npt.NDArray[Any]
    lon: npt.NDArray[Any]
    elevation: npt.NDArray[Any]
    year: npt.NDArray[Any]
    month: npt.NDArray[Any]
    day: npt.NDArray[Any]
    minute_of_day: npt.NDArray[Any]
    media_kind: npt.NDArray[Any]
    media_license: npt.NDArray[Any]
    media_mask: npt.NDArray[Any]

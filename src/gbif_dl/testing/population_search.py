"""GBIF occurrence-search semantics over a population's columns: masks, selection and facets.

:class:`PopulationSearchMixin` turns search parameters into vectorised boolean masks over the
numpy columns of :class:`~gbif_dl.testing.population.Population` (lenient names, OR within a
parameter, AND across parameters, ranges, taxon hierarchy) and counts facets over a selection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gbif_dl.errors import ConfigError
from gbif_dl.testing.columns import PopulationColumns
from gbif_dl.testing.search_params import (
    FACETS,
    InvalidSearchError,
    as_values,
    canonical_param,
    lookup_enum,
    parse_range,
    parse_uuid,
)
from gbif_dl.testing.tables import (
    BASIS_OF_RECORD,
    COUNTRIES,
    COUNTRY_CODES,
    LICENSE_ENUM,
    MEDIA_TYPES,
    RANGE_PARAMS,
    RANKS,
)

__all__ = ["PopulationSearchMixin"]


class PopulationSearchMixin(PopulationColumns):
    """:class:`~gbif_dl.testing.population.Population` methods that search and facet records."""

    if TYPE_CHECKING:  # provided by Population and SpeciesMatchMixin

        def index_of(self, key: int | str) -> int | None: ...

        def match_name(self, name: str, *, strict: bool = False) -> dict[str, Any]: ...

    # --- search -------------------------------------------------------------------------------

    def _species_lut(self, rank_key: str, keys: Iterable[int]) -> npt.NDArray[np.bool_]:
        return np.isin(self._rank_keys[rank_key], np.fromiter(keys, dtype=np.int64))

    def _taxon_mask(self, param: str, values: list[str]) -> npt.NDArray[np.bool_]:
        keys: list[int] = []
        for value in values:
            if value == "*":
                return self.has_species.copy() if param == "speciesKey" else self._all()
            try:
                keys.append(int(value))
            except ValueError:
                continue  # GBIF accepts any string here; a non-numeric key matches nothing
        sp, has = self.sp, self.has_species
        if param in ("taxonKey", "acceptedTaxonKey"):
            own_species = self._species_lut("species", keys)[sp] & has
            own_genus = self._species_lut("genus", keys)[sp] & ~has
            if param == "acceptedTaxonKey":
                return own_species | own_genus
            higher = np.zeros(len(self._species), dtype=bool)
            for rank in RANKS:
                higher |= self._species_lut(rank, keys)
            return higher[sp] | own_species
        if param == "speciesKey":
            return self._species_lut("species", keys)[sp] & has
        return self._species_lut(param[: -len("Key")], keys)[sp]

    def _all(self) -> npt.NDArray[np.bool_]:
        return np.ones(self.size, dtype=bool)

    def _range_mask(
        self,
        column: npt.NDArray[Any],
        missing: npt.NDArray[np.bool_],
        text: str,
        param: str,
        *,
        decimal: bool,
        bounds: tuple[float, float] | None = None,
        label: str = "",
    ) -> npt.NDArray[np.bool_]:
        parsed = parse_range(text, param, decimal=decimal)
        if parsed is None:
            return ~missing
        low, high = parsed
        if bounds is not None:
            for number in (low, high):
                if number is not None and not bounds[0] <= number <= bounds[1]:
                    shown = f"{number:g}"
                    raise InvalidSearchError(
                        f"{shown} is not valid value, {label} must be between "
                        f"{bounds[0]:g} and {bounds[1]:g}.",
                        param=param,
                    )
        mask = ~missing
        if low is not None:
            mask &= column >= low
        if high is not None:
            mask &= column <= high
        return mask

    def _param_mask(self, param: str, values: list[str]) -> npt.NDArray[np.bool_]:
        if param.endswith("Key") and param not in ("datasetKey",):
            return self._taxon_mask(param, values)
        mask = np.zeros(self.size, dtype=bool)
        for value in values:
            mask |= self._value_mask(param, value)
        return mask

    def _value_mask(self, param: str, value: str) -> npt.NDArray[np.bool_]:
        if value == "*" and param not in RANGE_PARAMS:
            return self._all()
        if param == "scientificName":
            match = self.match_name(value, strict=True)
            if match.get("matchType") not in ("EXACT", "FUZZY") or "usageKey" not in match:
                return np.zeros(self.size, dtype=bool)
            key = match.get("acceptedUsageKey", match["usageKey"])
            return self._taxon_mask("taxonKey", [str(key)])
        if param == "datasetKey":
            wanted = parse_uuid(value, param)
            lut = np.array([d["key"] == wanted for d in self._datasets])
            return lut[self.ds]
        if param == "publishingOrg":
            wanted = parse_uuid(value, param)
            lut = np.array([d["publishingOrgKey"] == wanted for d in self._datasets])
            return lut[self.ds]
        if param == "publishingCountry":
            lut = np.array([d["publishingCountry"] == value.upper() for d in self._datasets])
            return lut[self.ds]
        if param == "country":
            code = value.upper()
            if code not in COUNTRY_CODES:
                return np.zeros(self.size, dtype=bool)
            return self.ctry == COUNTRY_CODES.index(code)
        if param == "basisOfRecord":
            return self.bor == lookup_enum(value, BASIS_OF_RECORD, "BasisOfRecord", param)
        if param == "mediaType":
            bit = 1 << lookup_enum(value, MEDIA_TYPES, "MediaType", param)
            return (self.media_mask & bit) != 0
        if param == "license":
            license_index = lookup_enum(value, LICENSE_ENUM, "License", param)
            return (self._dataset_license == license_index)[self.ds]
        if param == "occurrenceStatus":
            absent = lookup_enum(value, ("PRESENT", "ABSENT"), "OccurrenceStatus", param) == 1
            return self.absent == absent
        if param == "hasCoordinate":
            if value.lower() not in ("true", "false"):
                raise InvalidSearchError(
                    f"Invalid boolean value: {value}, use true or false", param=param
                )
            has = ~np.isnan(self.lat)
            return has if value.lower() == "true" else ~has
        if param == "gbifId":
            index = self.index_of(value)
            mask = np.zeros(self.size, dtype=bool)
            if index is not None:
                mask[index] = True
            return mask
        if param in ("year", "month", "day"):
            column = getattr(self, param)
            bounds = (1.0, 12.0) if param == "month" else None
            return self._range_mask(
                column, column == 0, value, param, decimal=False, bounds=bounds, label=param
            )
        if param in ("decimalLatitude", "decimalLongitude"):
            column = self.lat if param == "decimalLatitude" else self.lon
            limit = 90.0 if param == "decimalLatitude" else 180.0
            label = "latitude" if param == "decimalLatitude" else "longitude"
            return self._range_mask(
                column,
                np.isnan(column),
                value,
                param,
                decimal=True,
                bounds=(-limit, limit),
                label=label,
            )
        if param == "elevation":
            return self._range_mask(
                self.elevation, np.isnan(self.elevation), value, param, decimal=True
            )
        raise AssertionError(f"unhandled parameter {param}")  # pragma: no cover

    def mask(self, query: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
        """Boolean mask of the records matching a search query (see :meth:`select`)."""
        grouped: dict[str, list[str]] = {}
        for name, value in query.items():
            param = canonical_param(str(name))
            if param is None:
                continue  # GBIF silently ignores unknown parameters
            values = as_values(value)
            if values:
                grouped.setdefault(param, []).extend(values)
        mask = self._all()
        for param, values in grouped.items():
            mask &= self._param_mask(param, values)
        return mask

    def select(self, query: Mapping[str, Any]) -> npt.NDArray[np.int64]:
        """Indices of the records matching ``query``, with GBIF search semantics.

        Names are lenient (``media_type`` = ``mediaType``); unknown names are ignored; a list
        value means the parameter was repeated (OR); different parameters are ANDed; ``year``,
        ``month``, ``day``, ``decimalLatitude``, ``decimalLongitude`` and ``elevation`` take
        ranges ``a,b``, ``*,b``, ``a,*``; ``*`` alone means "has a value". A bad value raises
        :class:`InvalidSearchError` carrying GBIF's 400 message.

        Example:
            >>> from gbif_dl.testing.population import Population
            >>> pop = Population(seed=0, size=500, n_species=4)
            >>> both = pop.select({"basisOfRecord": ["HUMAN_OBSERVATION", "PRESERVED_SPECIMEN"]})
            >>> one = pop.select({"basis_of_record": "human_observation"})
            >>> len(one) <= len(both)
            True
        """
        return np.flatnonzero(self.mask(query))

    # --- facets -------------------------------------------------------------------------------

    @staticmethod
    def facet_param(name: str) -> str | None:
        """Canonical name of a facet GBIF supports here, or None for an unknown facet."""
        param = canonical_param(name)
        return param if param in FACETS else None

    def facet(self, indices: npt.ArrayLike, field: str) -> dict[str, int]:
        """Counts per value of ``field`` over the records ``indices``, sorted by count desc.

        Bucket names are strings, as GBIF returns them.

        Example:
            >>> from gbif_dl.testing.population import Population
            >>> pop = Population(seed=0, size=300, n_species=3)
            >>> counts = pop.facet(pop.select({}), "BASIS_OF_RECORD")
            >>> list(counts)[0]
            'HUMAN_OBSERVATION'
        """
        param = self.facet_param(field)
        if param is None:
            raise ConfigError(f"unknown facet {field!r}; use one of {', '.join(FACETS)}")
        idx = np.asarray(indices, dtype=np.int64)
        counts: dict[str, int] = {}

        def add(name: Any, count: int) -> None:
            if count > 0:
                key = str(name)
                counts[key] = counts.get(key, 0) + int(count)

        if param.endswith("Key") and param not in ("datasetKey",):
            n_species = len(self._species)
            sp = self.sp[idx]
            has = self.has_species[idx]
            with_species = np.bincount(sp[has], minlength=n_species)
            without = np.bincount(sp[~has], minlength=n_species)
            for s, info in enumerate(self._species):
                if param == "speciesKey":
                    add(info["key"], with_species[s])
                elif param == "taxonKey":
                    add(info["key"], with_species[s])
                    add(info["genusKey"], without[s])
                else:
                    add(info[param], with_species[s] + without[s])
        elif param in ("datasetKey", "publishingOrg", "publishingCountry", "license"):
            field_name = {
                "datasetKey": "key",
                "publishingOrg": "publishingOrgKey",
                "publishingCountry": "publishingCountry",
                "license": "license",
            }[param]
            per_ds = np.bincount(self.ds[idx], minlength=len(self._datasets))
            for j, ds in enumerate(self._datasets):
                add(ds[field_name], per_ds[j])
        elif param == "country":
            for c, n in enumerate(np.bincount(self.ctry[idx], minlength=len(COUNTRIES))):
                add(COUNTRY_CODES[c], n)
        elif param == "basisOfRecord":
            for b, n in enumerate(np.bincount(self.bor[idx], minlength=len(BASIS_OF_RECORD))):
                add(BASIS_OF_RECORD[b], n)
        elif param == "mediaType":
            mask = self.media_mask[idx]
            for bit, name in enumerate(MEDIA_TYPES):
                add(name, int(np.count_nonzero(mask & (1 << bit))))
        elif param == "occurrenceStatus":
            absent = int(np.count_nonzero(self.absent[idx]))
            add("PRESENT", len(idx) - absent)
            add("ABSENT", absent)
        else:  # year, month: small non-negative integers, 0 = missing
            per_value = np.bincount(getattr(self, param)[idx].astype(np.int64))
            for value in np.flatnonzero(per_value[1:]).tolist():
                add(value + 1, int(per_value[value + 1]))
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

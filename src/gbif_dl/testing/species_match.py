"""GBIF species-name lookups over a population's species: ``/species/match`` and ``/suggest``.

:class:`SpeciesMatchMixin` gives :class:`~gbif_dl.testing.population.Population` the v1 flat
match body (exact names, known synonyms, higher taxa, fuzzy near misses and ``HIGHERRANK``
fallbacks) and prefix suggestions, the way GBIF's backbone answers them.
"""

from __future__ import annotations

import difflib
from functools import cached_property
from typing import Any

from gbif_dl.testing.columns import PopulationColumns
from gbif_dl.testing.tables import RANKS, SYNONYMS

__all__ = ["SpeciesMatchMixin"]


class SpeciesMatchMixin(PopulationColumns):
    """:class:`~gbif_dl.testing.population.Population` methods that match species names."""

    # --- species match ------------------------------------------------------------------------

    @cached_property
    def _names(self) -> dict[str, Any]:
        exact: dict[str, dict[str, Any]] = {}
        for info in self._species:
            exact[info["canonicalName"].lower()] = info
            exact[info["scientificName"].lower()] = info
        by_key = {info["key"]: info for info in self._species}
        synonyms: dict[str, tuple[int, str, dict[str, Any]]] = {}
        for syn_key, syn_name, accepted in SYNONYMS:
            if accepted in by_key:
                canonical = " ".join(syn_name.split()[:2])
                entry = (syn_key, syn_name, by_key[accepted])
                synonyms[syn_name.lower()] = entry
                synonyms[canonical.lower()] = entry
        higher: dict[str, tuple[str, dict[str, Any]]] = {}
        for rank in reversed(RANKS):
            for info in self._species:
                higher.setdefault(info[rank].lower(), (rank, info))
        return {"exact": exact, "synonyms": synonyms, "higher": higher}

    @staticmethod
    def _classification(info: dict[str, Any], down_to: str) -> dict[str, Any]:
        ranks = [*RANKS, "species"]
        keep = ranks[: ranks.index(down_to) + 1]
        names = {
            r: info[r]
            for r in ("kingdom", "phylum", "order", "family", "genus", "species")
            if r in keep
        }
        keys = {f"{r}Key": info[f"{r}Key"] for r in ranks if r in keep}
        return {"names": names, "keys": keys, "class": info["class"] if "class" in keep else None}

    def _match_body(
        self,
        info: dict[str, Any],
        *,
        rank: str,
        usage_key: int,
        scientific_name: str,
        canonical: str,
        confidence: int,
        match_type: str,
        synonym: bool = False,
    ) -> dict[str, Any]:
        cls = self._classification(info, rank)
        body: dict[str, Any] = {"usageKey": usage_key}
        if synonym:
            body["acceptedUsageKey"] = info["key"]
        body.update(
            {
                "scientificName": scientific_name,
                "canonicalName": canonical,
                "rank": rank.upper(),
                "status": "SYNONYM" if synonym else "ACCEPTED",
                "confidence": confidence,
                "matchType": match_type,
            }
        )
        body.update(cls["names"])
        body.update(cls["keys"])
        body["synonym"] = synonym
        if cls["class"] is not None:
            body["class"] = cls["class"]
        return body

    def match_name(self, name: str, *, strict: bool = False) -> dict[str, Any]:
        """``GET /v1/species/match?name=...``: the v1 flat match body for ``name``.

        Exact names of the population's species match ``EXACT``; known synonyms of them match
        with ``status: SYNONYM`` and ``acceptedUsageKey``; higher taxa (genus, family, ...) match
        ``EXACT`` at their rank; near misses match ``FUZZY``; an unknown epithet in a known genus
        matches ``HIGHERRANK`` (not with ``strict``); anything else gives ``matchType: NONE``.

        Example:
            >>> from gbif_dl.testing.population import Population
            >>> pop = Population(seed=0, size=10, n_species=3)
            >>> pop.match_name("Calopteryx fakeus")["matchType"]
            'HIGHERRANK'
            >>> pop.match_name("Nothing here")["matchType"]
            'NONE'
        """
        text = " ".join(str(name).split())
        lowered = text.lower()
        body = self._known_name_match(lowered)
        if body is None:
            body = self._near_match(lowered, strict=strict)
        if body is not None:
            return body
        return {
            "confidence": 100,
            "note": "No match because of too little confidence",
            "matchType": "NONE",
            "synonym": False,
        }

    def _species_body(
        self, info: dict[str, Any], *, confidence: int, match_type: str
    ) -> dict[str, Any]:
        """The match body of the species ``info`` under its accepted name."""
        return self._match_body(
            info,
            rank="species",
            usage_key=info["key"],
            scientific_name=info["scientificName"],
            canonical=info["canonicalName"],
            confidence=confidence,
            match_type=match_type,
        )

    def _rank_body(
        self, info: dict[str, Any], rank: str, *, confidence: int, match_type: str
    ) -> dict[str, Any]:
        """The match body of the ``rank`` (genus, family...) of the species ``info``."""
        return self._match_body(
            info,
            rank=rank,
            usage_key=info[f"{rank}Key"],
            scientific_name=info[rank],
            canonical=info[rank],
            confidence=confidence,
            match_type=match_type,
        )

    def _known_name_match(self, lowered: str) -> dict[str, Any] | None:
        """The match body of a known species, synonym or higher taxon name, else None."""
        names = self._names
        if lowered in names["exact"]:
            return self._species_body(names["exact"][lowered], confidence=99, match_type="EXACT")
        if lowered in names["synonyms"]:
            syn_key, syn_name, info = names["synonyms"][lowered]
            canonical = " ".join(syn_name.split()[:2])
            return self._match_body(
                info,
                rank="species",
                usage_key=syn_key,
                scientific_name=syn_name,
                canonical=canonical,
                confidence=98,
                match_type="EXACT",
                synonym=True,
            )
        if lowered in names["higher"]:
            rank, info = names["higher"][lowered]
            return self._rank_body(info, rank, confidence=97, match_type="EXACT")
        return None

    def _near_match(self, lowered: str, *, strict: bool) -> dict[str, Any] | None:
        """A ``FUZZY`` species or ``HIGHERRANK`` genus match body for ``lowered``, else None."""
        names = self._names
        close = difflib.get_close_matches(
            lowered, [s["canonicalName"].lower() for s in self._species], n=1, cutoff=0.85
        )
        if close:
            return self._species_body(names["exact"][close[0]], confidence=88, match_type="FUZZY")
        first = lowered.split(" ")[0] if lowered else ""
        if not strict and first in names["higher"] and names["higher"][first][0] == "genus":
            _, info = names["higher"][first]
            return self._rank_body(info, "genus", confidence=94, match_type="HIGHERRANK")
        return None

    def suggest(self, prefix: str, limit: int = 20) -> list[dict[str, Any]]:
        """``GET /v1/species/suggest``: species whose canonical name starts with ``prefix``."""
        wanted = prefix.strip().lower()
        out = []
        for info in self._species:
            if info["canonicalName"].lower().startswith(wanted):
                item = {
                    "key": info["key"],
                    "scientificName": info["scientificName"],
                    "canonicalName": info["canonicalName"],
                    "rank": "SPECIES",
                    "status": "ACCEPTED",
                    "synonym": False,
                }
                out.append(item)
        return out[: max(0, limit)]

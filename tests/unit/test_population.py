"""The synthetic population: deterministic, GBIF-shaped, messy, and searchable with GBIF semantics.

Search results are checked against brute force over ``pop.record(i)``, so the numpy columns and
the JSON records can never disagree silently.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gbif_dl.errors import ConfigError
from gbif_dl.records import normalize_license
from gbif_dl.testing import Population
from gbif_dl.testing.population import BASE_KEY, InvalidSearchError

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "gbif-fixtures"


@pytest.fixture(scope="module")
def pop() -> Population:
    return Population(seed=7, size=3_000, n_species=8, n_datasets=4)


@pytest.fixture(scope="module")
def records(pop: Population) -> list[dict[str, Any]]:
    return [pop.record(i) for i in range(pop.size)]


def brute(records: list[dict[str, Any]], predicate: Any) -> list[int]:
    return [i for i, rec in enumerate(records) if predicate(rec)]


def test_same_seed_same_population_different_seed_differs() -> None:
    """Everything is a function of the arguments: same seed, byte-identical records."""
    a = Population(seed=3, size=400, media_base_urls=["http://127.0.0.1:1"])
    b = Population(seed=3, size=400, media_base_urls=["http://127.0.0.1:1"])
    c = Population(seed=4, size=400, media_base_urls=["http://127.0.0.1:1"])

    def dump(p: Population) -> str:
        return json.dumps([p.record(i) for i in range(p.size)])

    assert dump(a) == dump(b)
    assert dump(a) != dump(c)
    assert a.dataset_keys == b.dataset_keys != c.dataset_keys


def test_record_json_types_match_real_gbif_records(records: list[dict[str, Any]]) -> None:
    """Every field the population fills exists in real records with the same JSON type."""
    real_types: dict[str, set[str]] = collections.defaultdict(set)
    real_media_keys: set[str] = set()
    for name in (
        "occurrence-search_taxonKey2431762_limit300.json",
        "occurrence-search_taxonKey2683264_limit300_media_edgecases.json",
    ):
        for rec in json.loads((FIXTURES / name).read_text())["results"]:
            for key, value in rec.items():
                real_types[key].add(type(value).__name__)
            for media in rec.get("media", []):
                real_media_keys.update(media)
    for rec in records[:400]:
        for key, value in rec.items():
            assert key in real_types, f"{key} is not a field of real GBIF records"
            assert type(value).__name__ in real_types[key], (key, value)
        assert isinstance(rec["key"], int) and rec["gbifID"] == str(rec["key"])
        assert rec["license"].endswith("/legalcode")
        for media in rec["media"]:
            assert set(media) <= real_media_keys
            assert all(isinstance(v, str) for v in media.values())


def test_population_is_messy_like_gbif(pop: Population, records: list[dict[str, Any]]) -> None:
    """About 90% with media, plus every documented kind of mess is present."""
    with_media = sum(1 for r in records if r["media"])
    assert 0.85 < with_media / len(records) < 0.95
    media = [m for r in records for m in r["media"]]
    assert any("identifier" not in m for m in media)
    assert any("type" not in m and "identifier" in m for m in media)
    types = {m.get("type") for m in media}
    assert {"StillImage", "Sound", "InteractiveResource"} <= types
    licences = {m.get("license") for m in media}
    assert "All rights reserved" in licences and None in licences
    assert any(lic and normalize_license(lic) is None for lic in licences)
    no_species = sum(1 for r in records if "speciesKey" not in r)
    assert 0.01 < no_species / len(records) < 0.06
    assert all(r["taxonRank"] == "GENUS" for r in records if "speciesKey" not in r)
    assert any("year" not in r for r in records)
    assert any("decimalLatitude" not in r for r in records)
    owners = collections.defaultdict(set)
    for r in records:
        for m in r["media"]:
            if "identifier" in m:
                owners[m["identifier"]].add(r["key"])
    shared = [keys for keys in owners.values() if len(keys) > 1]
    assert shared and all(len(keys) == 2 for keys in shared)
    assert any("?" in url for url in owners)


def test_media_urls_round_robin_over_base_urls() -> None:
    """Record i's media live on base i % n; the default base is a dead loopback port."""
    bases = ["http://127.0.0.1:1001", "http://127.0.0.2:1002", "http://127.0.0.3:1003"]
    pop = Population(seed=0, size=300, media_base_urls=bases)
    for i in range(300):
        for m in pop.record(i)["media"]:
            if "identifier" in m and not pop.duplicate_of_previous[i]:
                assert m["identifier"].startswith(f"{bases[i % 3]}/")
                assert f"/{BASE_KEY + i}/" in m["identifier"]
    default = Population(seed=0, size=50)
    urls = [
        m["identifier"] for i in range(50) for m in default.record(i)["media"] if "identifier" in m
    ]
    assert urls and all(u.startswith("http://127.0.0.1:9/") for u in urls)


def test_species_weights_and_argument_errors() -> None:
    pop = Population(seed=0, size=2_000, n_species=3, species_weights=[0, 1, 0])
    assert set(pop.facet(pop.select({}), "speciesKey")) == {str(pop.species[1]["key"])}
    with pytest.raises(ConfigError, match="species_weights"):
        Population(size=10, n_species=3, species_weights=[1, 2])
    with pytest.raises(ConfigError, match="size"):
        Population(size=-1)


@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        (
            {"mediaType": "StillImage"},
            lambda r: any(m.get("type") == "StillImage" for m in r["media"]),
        ),
        ({"media_type": "sound"}, lambda r: any(m.get("type") == "Sound" for m in r["media"])),
        (
            {"MEDIATYPE": ["Sound", "InteractiveResource"]},
            lambda r: any(m.get("type") in ("Sound", "InteractiveResource") for m in r["media"]),
        ),
        ({"year": "2015,2020"}, lambda r: 2015 <= r.get("year", 0) <= 2020),
        ({"year": "*,2000"}, lambda r: "year" in r and r["year"] <= 2000),
        (
            {"year": "2022,*", "month": ["1", "2"]},
            lambda r: r.get("year", 0) >= 2022 and r["month"] in (1, 2),
        ),
        ({"year": "*"}, lambda r: "year" in r),
        ({"decimalLatitude": "40,50"}, lambda r: 40 <= r.get("decimalLatitude", -999) <= 50),
        ({"decimal_longitude": "*,-100"}, lambda r: r.get("decimalLongitude", 999) <= -100),
        ({"hasCoordinate": "false"}, lambda r: "decimalLatitude" not in r),
        ({"has_coordinate": "TRUE"}, lambda r: "decimalLatitude" in r),
        ({"country": ["us", "DE"]}, lambda r: r["countryCode"] in ("US", "DE")),
        (
            {"basisOfRecord": "preserved_specimen"},
            lambda r: r["basisOfRecord"] == "PRESERVED_SPECIMEN",
        ),
        ({"license": "CC_BY_4_0"}, lambda r: "/by/4.0/" in r["license"]),
        ({"occurrenceStatus": "ABSENT"}, lambda r: r["occurrenceStatus"] == "ABSENT"),
        ({"taxonKey": "1"}, lambda r: r["kingdomKey"] == 1),
        ({"speciesKey": "*"}, lambda r: "speciesKey" in r),
        ({"elevation": "1000,*"}, lambda r: r.get("elevation", -1) >= 1000),
        ({"publishingOrgKey": "typo-is-ignored"}, lambda r: True),
        ({"q": "ignored", "limit": 5}, lambda r: True),
    ],
)
def test_select_matches_brute_force(
    pop: Population, records: list[dict[str, Any]], query: dict[str, Any], predicate: Any
) -> None:
    """select() agrees with a brute-force scan of the JSON records, for every kind of filter."""
    expected = brute(records, predicate)
    assert pop.select(query).tolist() == expected
    assert expected or query.get("occurrenceStatus")  # a vacuous match proves nothing


def test_taxon_keys_and_dataset_filters(pop: Population, records: list[dict[str, Any]]) -> None:
    """taxonKey matches any rank; speciesKey only species-level records; datasetKey is an UUID."""
    sp = pop.species[0]
    genus_level = brute(records, lambda r: r["genusKey"] == sp["genusKey"])
    assert pop.select({"taxonKey": sp["genusKey"]}).tolist() == genus_level
    assert pop.select({"genus_key": sp["genusKey"]}).tolist() == genus_level
    species_level = brute(records, lambda r: r.get("speciesKey") == sp["key"])
    assert pop.select({"speciesKey": sp["key"]}).tolist() == species_level
    assert pop.select({"taxonKey": sp["key"]}).tolist() == species_level
    assert len(species_level) < len(genus_level)  # genus-level records of that genus exist
    both = brute(records, lambda r: r.get("speciesKey") in (sp["key"], pop.species[1]["key"]))
    assert pop.select({"speciesKey": [sp["key"], pop.species[1]["key"]]}).tolist() == both
    ds = pop.dataset_keys[1]
    and_query = {"datasetKey": ds, "mediaType": "StillImage"}
    expected = brute(
        records,
        lambda r: r["datasetKey"] == ds and any(m.get("type") == "StillImage" for m in r["media"]),
    )
    assert pop.select(and_query).tolist() == expected
    org = pop.datasets[0]["publishingOrgKey"]
    assert pop.select({"publishingOrg": org}).tolist() == brute(
        records, lambda r: r["publishingOrgKey"] == org
    )
    assert pop.select({"gbifId": BASE_KEY + 17}).tolist() == [17]
    name = sp["canonicalName"]
    assert pop.select({"scientificName": name}).tolist() == species_level
    assert pop.select({"scientificName": "Nonexistent species"}).size == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"basisOfRecord": "FOO"}, "Cannot parse FOO into a known BasisOfRecord"),
        ({"mediaType": "Image"}, "Cannot parse Image into a known MediaType"),
        ({"license": "CC-BY"}, "Cannot parse CC-BY into a known License"),
        (
            {"decimalLatitude": "334"},
            "334 is not valid value, latitude must be between -90 and 90.",
        ),
        ({"elevation": "5-10"}, "Invalid decimal range: 5-10"),
        ({"datasetKey": "nope"}, "Invalid UUID string: nope"),
    ],
)
def test_bad_values_raise_gbif_messages(
    pop: Population, query: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSearchError) as info:
        pop.select(query)
    assert info.value.gbif_message == message
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    "field", ["speciesKey", "DATASET_KEY", "year", "country", "mediaType", "taxonKey"]
)
def test_facets_match_brute_force(
    pop: Population, records: list[dict[str, Any]], field: str
) -> None:
    """Facet counts equal counts over the records, bucket names are strings, sorted desc."""
    indices = pop.select({"hasCoordinate": "true"})
    counts = pop.facet(indices, field)
    expected: collections.Counter[str] = collections.Counter()
    for i in indices.tolist():
        rec = records[i]
        if field == "mediaType":
            expected.update({m["type"] for m in rec["media"] if "type" in m})
            continue
        name = {"DATASET_KEY": "datasetKey", "country": "countryCode"}.get(field, field)
        if name in rec:
            expected[str(rec[name])] += 1
    assert counts == dict(expected)
    assert all(isinstance(k, str) for k in counts)
    values = list(counts.values())
    assert values == sorted(values, reverse=True)


def test_species_match_cases() -> None:
    """Exact, synonym, fuzzy, higher rank and no match, in GBIF's v1 shape."""
    pop = Population(seed=0, size=10, n_species=24)
    exact = pop.match_name("Helianthus annuus")
    real = json.loads((FIXTURES / "species-match_v1_exact.json").read_text())
    assert list(exact) == list(real)
    assert exact == real  # the built-in list carries the real backbone keys for this one
    synonym = pop.match_name("Parus caeruleus")
    assert synonym["synonym"] is True and synonym["status"] == "SYNONYM"
    assert synonym["acceptedUsageKey"] == synonym["speciesKey"] != synonym["usageKey"]
    fuzzy = pop.match_name("Helianthus anuus")
    assert fuzzy["matchType"] == "FUZZY" and fuzzy["usageKey"] == 9206251
    higher = pop.match_name("Calopteryx fakeus")
    assert higher["matchType"] == "HIGHERRANK" and higher["rank"] == "GENUS"
    assert "speciesKey" not in higher
    assert pop.match_name("Calopteryx fakeus", strict=True)["matchType"] == "NONE"
    none = pop.match_name("Aso")
    assert none == json.loads((FIXTURES / "species-match_v1_none.json").read_text())


def test_species_keys_are_consistent() -> None:
    """A key names one taxon only, across the whole built-in list."""
    pop = Population(seed=0, size=1, n_species=30)
    names: dict[int, str] = {}
    for sp in pop.species:
        for rank in ("kingdom", "phylum", "class", "order", "family", "genus", "species"):
            key, name = sp[f"{rank}Key"], sp[rank]
            assert names.setdefault(key, name) == name, (key, name, names[key])
    assert len({sp["key"] for sp in pop.species}) == 30


def test_large_population_builds_compactly() -> None:
    """A million records stay in compact columns (well under 100 bytes per record)."""
    pop = Population(seed=1, size=1_000_000, n_species=20)
    column_bytes = sum(v.nbytes for v in vars(pop).values() if isinstance(v, np.ndarray))
    assert column_bytes / pop.size < 100
    hits = pop.select({"taxonKey": 1, "mediaType": "StillImage", "year": "2010,*"})
    sample = hits[:: max(1, len(hits) // 50)]
    for i in sample.tolist():
        rec = pop.record(i)
        assert rec["kingdomKey"] == 1 and rec["year"] >= 2010
        assert any(m.get("type") == "StillImage" for m in rec["media"])

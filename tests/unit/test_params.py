"""GBIF search parameters: lenient names, suggestions, values, predicates, download ids."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from gbif_dl.errors import ConfigError, GbifApiError
from gbif_dl.gbif.client import DEFAULT_API_URL, USER_AGENT, GbifClient, resolve_api_url
from gbif_dl.gbif.params import (
    RANGE_PARAMETERS,
    SEARCH_PARAMETERS,
    canonical_name,
    facet_field,
    is_download_key,
    normalize_doi,
    normalize_name,
    parse_download_id,
    to_predicate,
    validate_query,
)

# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "mediaType",
        "mediatype",
        "MEDIA_TYPE",
        "media_type",
        "media-type",
        "media.type",
        "Media Type",
    ],
)
def test_names_match_as_gbif_matches_them(spelling: str) -> None:
    """Case, '_', '-', '.' and spaces do not matter, as in GBIF's own lookup."""
    assert canonical_name(spelling) == "mediaType"


def test_normalize_name_is_gbif_lookup_key() -> None:
    assert normalize_name("decimal_Latitude") == "DECIMALLATITUDE"
    assert normalize_name("speciesKey.facetLimit") == "SPECIESKEYFACETLIMIT"


def test_common_parameters_are_known() -> None:
    """The parameters users write every day are in the list, spelled as GBIF documents them."""
    expected = {
        "taxonKey", "speciesKey", "kingdomKey", "phylumKey", "classKey", "orderKey", "familyKey",
        "genusKey", "datasetKey", "publishingOrg", "mediaType", "country", "publishingCountry",
        "year", "month", "eventDate", "decimalLatitude", "decimalLongitude", "basisOfRecord",
        "license", "occurrenceStatus", "recordedBy", "institutionCode", "catalogNumber", "gbifId",
        "hasCoordinate", "hasGeospatialIssue", "q", "shuffle", "scientificName", "continent",
        "geometry", "issue", "typeStatus", "limit", "offset", "facet", "facetLimit",
        "facetOffset", "facetMincount", "facetMultiselect", "coordinateUncertaintyInMeters",
        "elevation", "depth", "iucnRedListCategory", "lifeStage", "occurrenceId",
    }  # fmt: skip
    assert expected <= SEARCH_PARAMETERS
    assert "publishingOrgKey" not in SEARCH_PARAMETERS  # the response field, not the parameter


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("publishingOrgKey", "publishingOrg"),
        ("speciesKeys", "speciesKey"),
        ("mediatyp", "mediaType"),
        ("datasetkeys", "datasetKey"),
        ("basis_of_records", "basisOfRecord"),
        ("contry", "country"),
    ],
)
def test_unknown_name_suggests_closest(typo: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        canonical_name(typo)
    message = str(info.value)
    assert repr(typo) in message
    assert f"did you mean {suggestion!r}" in message
    assert "unfiltered" in message  # explains why this matters


def test_unknown_name_without_close_match_still_explains() -> None:
    with pytest.raises(ConfigError, match="unknown GBIF search parameter 'zzzz'") as info:
        canonical_name("zzzz")
    assert "did you mean" not in str(info.value)


def test_config_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        canonical_name("publishingOrgKey")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("speciesKey.facetLimit", "speciesKey.facetLimit"),
        ("country_facetLimit", "country.facetLimit"),  # pygbif's spelling
        ("YEAR.FACETOFFSET", "year.facetOffset"),
    ],
)
def test_per_facet_paging_names(name: str, expected: str) -> None:
    assert canonical_name(name) == expected


def test_per_facet_paging_of_unknown_field_is_rejected() -> None:
    with pytest.raises(ConfigError):
        canonical_name("speciesKeyz.facetLimit")


# --- values --------------------------------------------------------------------------------------


def test_validate_query_converts_values() -> None:
    query = {
        "media_type": "StillImage",
        "speciesKey": [5352251, "2435099"],
        "hasCoordinate": True,
        "hasGeospatialIssue": False,
        "year": (2000, 2010),
        "month": (None, 6),
        "decimalLatitude": (-10.5, None),
        "country": {"US", "CA"},
    }
    assert validate_query(query) == {
        "mediaType": ["StillImage"],
        "speciesKey": ["5352251", "2435099"],
        "hasCoordinate": ["true"],
        "hasGeospatialIssue": ["false"],
        "year": ["2000,2010"],
        "month": ["*,6"],
        "decimalLatitude": ["-10.5,*"],
        "country": ["CA", "US"],
    }


def test_validate_query_keeps_string_ranges_and_dedupes() -> None:
    assert validate_query({"year": ["1990,2000", 2005, "2005"]}) == {"year": ["1990,2000", "2005"]}


def test_numpy_integers_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    assert validate_query({"taxonKey": np.int64(212)}) == {"taxonKey": ["212"]}


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"taxonKey": None}, "is None"),
        ({"taxonKey": [1, None]}, "None inside"),
        ({"taxonKey": []}, "empty list"),
        ({"taxonKey": ""}, "empty value"),
        ({"taxonKey": {"a": 1}}, "not supported"),
        ({"taxonKey": [[1, 2]]}, "not supported"),
        ({"taxonKey": (1, 2)}, "does not take ranges"),
        ({"year": (1, 2, 3)}, "range (low, high)"),
        ({"year": (None, None)}, "no bound"),
        ({"decimalLatitude": float("nan")}, "not a usable number"),
        ({"mediatype": "StillImage", "mediaType": "Sound"}, "same parameter"),
    ],
)
def test_bad_values_are_rejected(query: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_query(query)
    assert fragment in str(info.value)


def test_query_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        validate_query([("taxonKey", 1)])  # type: ignore[arg-type]


def test_range_parameters_are_search_parameters() -> None:
    assert RANGE_PARAMETERS <= SEARCH_PARAMETERS


# --- facets and predicates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "enum"),
    [
        ("speciesKey", "SPECIES_KEY"),
        ("species_key", "SPECIES_KEY"),
        ("datasetKey", "DATASET_KEY"),
        ("publishingOrg", "PUBLISHING_ORG"),
        ("coordinateUncertaintyInMeters", "COORDINATE_UNCERTAINTY_IN_METERS"),
        ("gadmLevel0Gid", "GADM_LEVEL_0_GID"),
        ("gbifId", "GBIF_ID"),
    ],
)
def test_facet_field_is_gbif_enum_name(name: str, enum: str) -> None:
    assert facet_field(name) == enum


def test_facet_field_rejects_request_parameters() -> None:
    with pytest.raises(ConfigError, match="not a field GBIF can count"):
        facet_field("limit")


def test_predicate_equals_in_and_ranges() -> None:
    predicate = to_predicate(
        {
            "mediatype": "StillImage",
            "country": ["US", "CA"],
            "year": (1979, None),
            "month": "3,5",
            "elevation": "*,100",
            "hasCoordinate": True,
        }
    )
    assert predicate == {
        "type": "and",
        "predicates": [
            {"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"},
            {"type": "in", "key": "COUNTRY", "values": ["US", "CA"]},
            {"type": "greaterThanOrEquals", "key": "YEAR", "value": "1979"},
            {
                "type": "and",
                "predicates": [
                    {"type": "greaterThanOrEquals", "key": "MONTH", "value": "3"},
                    {"type": "lessThanOrEquals", "key": "MONTH", "value": "5"},
                ],
            },
            {"type": "lessThanOrEquals", "key": "ELEVATION", "value": "100"},
            {"type": "equals", "key": "HAS_COORDINATE", "value": "true"},
        ],
    }


def test_predicate_mixed_values_become_or() -> None:
    predicate = to_predicate({"year": [1990, (2000, 2010)]})
    assert predicate["predicates"] == [
        {
            "type": "or",
            "predicates": [
                {"type": "equals", "key": "YEAR", "value": "1990"},
                {
                    "type": "and",
                    "predicates": [
                        {"type": "greaterThanOrEquals", "key": "YEAR", "value": "2000"},
                        {"type": "lessThanOrEquals", "key": "YEAR", "value": "2010"},
                    ],
                },
            ],
        }
    ]


def test_predicate_commas_only_mean_ranges_for_range_parameters() -> None:
    """'Smith, J.' is one collector, and WKT has commas: neither is a range."""
    predicate = to_predicate(
        {"recordedBy": "Smith, J.", "geometry": "POLYGON((1 1, 2 1, 2 2, 1 1))", "q": "bee"}
    )
    assert predicate["predicates"] == [
        {"type": "equals", "key": "RECORDED_BY", "value": "Smith, J."},
        {"type": "within", "geometry": "POLYGON((1 1, 2 1, 2 2, 1 1))"},
        {"type": "fullTextSearch", "q": "bee"},
    ]


def test_predicate_leaves_out_paging_and_facets() -> None:
    predicate = to_predicate({"taxonKey": 212, "limit": 300, "facet": "speciesKey", "offset": 10})
    assert predicate == {
        "type": "and",
        "predicates": [{"type": "equals", "key": "TAXON_KEY", "value": "212"}],
    }


def test_predicate_without_filter_is_refused() -> None:
    with pytest.raises(ConfigError, match="every GBIF occurrence"):
        to_predicate({"limit": 10})


def test_predicate_rejects_unknown_names_with_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'publishingOrg'"):
        to_predicate({"publishingOrgKey": "28eb1a3f-1c15-4a95-931a-4af90ecb574d"})


# --- DOIs and download keys ----------------------------------------------------------------------

DOI = "10.15468/dl.hx3uzz"


@pytest.mark.parametrize(
    "form",
    [
        "10.15468/dl.hx3uzz",
        "10.15468/DL.HX3UZZ",
        "doi:10.15468/dl.hx3uzz",
        "DOI:10.15468/dl.hx3uzz",
        "doi: 10.15468/dl.hx3uzz",
        "https://doi.org/10.15468/dl.hx3uzz",
        "http://doi.org/10.15468/dl.hx3uzz",
        "https://dx.doi.org/10.15468/dl.hx3uzz",
        "doi.org/10.15468/dl.hx3uzz",
        "https://doi.org/10.15468%2Fdl.hx3uzz",
        "  https://doi.org/10.15468/dl.hx3uzz/  ",
        "info:doi/10.15468/dl.hx3uzz",
    ],
)
def test_every_doi_form_normalises(form: str) -> None:
    assert normalize_doi(form) == DOI
    assert parse_download_id(form) == ("doi", DOI)


@pytest.mark.parametrize(
    "text",
    ["", "dl.hx3uzz", "10.15468", "https://example.org/10.15468/dl.x", "0022697-200613084148143"],
)
def test_non_dois_are_not_dois(text: str) -> None:
    assert normalize_doi(text) is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("0022697-200613084148143", "0022697-200613084148143"),
        (" 0012150-260108223611665\n", "0012150-260108223611665"),
        (
            "https://www.gbif.org/occurrence/download/0022697-200613084148143",
            "0022697-200613084148143",
        ),
    ],
)
def test_download_keys_parse(text: str, key: str) -> None:
    assert parse_download_id(text) == ("key", key)


def test_is_download_key() -> None:
    assert is_download_key("0022697-200613084148143")
    assert not is_download_key("0022697")
    assert not is_download_key("0022697-2006a")
    assert not is_download_key("../0022697-200613084148143")


@pytest.mark.parametrize("text", ["", "abc", "0022697", "10.15468", "../../etc/passwd", None, 42])
def test_malformed_download_ids_name_the_accepted_forms(text: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_download_id(text)  # type: ignore[arg-type]
    message = str(info.value)
    assert "download key" in message and "doi:" in message and "https://doi.org/" in message


# --- client settings (no request is ever sent: GBIF_API_URL points at a dead port) -------------


def test_api_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argument > GBIF_API_URL > public API; the trailing slash is stripped."""
    monkeypatch.setenv("GBIF_API_URL", "http://127.0.0.1:1234/v1/")
    assert resolve_api_url() == "http://127.0.0.1:1234/v1"
    assert resolve_api_url("http://127.0.0.2:5/v1") == "http://127.0.0.2:5/v1"
    assert GbifClient().api_url == "http://127.0.0.1:1234/v1"
    monkeypatch.delenv("GBIF_API_URL")
    assert resolve_api_url() == DEFAULT_API_URL
    with pytest.raises(ConfigError, match="GBIF_API_URL"):
        monkeypatch.setenv("GBIF_API_URL", "ftp://example.org")
        resolve_api_url()


def test_api_url_may_be_the_server_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server root (no path) gets GBIF's /v1; any other path is kept as given (issue 22)."""
    assert resolve_api_url("http://127.0.0.1:1234") == "http://127.0.0.1:1234/v1"
    assert resolve_api_url("https://api.gbif.org/") == DEFAULT_API_URL
    assert (
        resolve_api_url("http://127.0.0.1:1234/gbif/api/v1/") == "http://127.0.0.1:1234/gbif/api/v1"
    )
    monkeypatch.setenv("GBIF_API_URL", "http://127.0.0.1:1234/")
    assert GbifClient().api_url == "http://127.0.0.1:1234/v1"


def test_user_agent_identifies_the_project() -> None:
    import gbif_dl

    assert USER_AGENT.startswith(f"gbif-dl/{gbif_dl.__version__} (+https://")


@pytest.mark.parametrize("concurrency", [0, 9, -1, 1.5])
def test_concurrency_is_bounded(concurrency: object) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        GbifClient(concurrency=concurrency)  # type: ignore[arg-type]


def test_unknown_parameter_fails_before_any_request() -> None:
    """A ConfigError (not a connection error to the dead GBIF_API_URL) proves nothing was sent."""

    async def main() -> None:
        async with GbifClient() as client:
            with pytest.raises(ConfigError, match="did you mean 'publishingOrg'"):
                await client.count({"publishingOrgKey": "x"})
            with pytest.raises(ConfigError, match="did you mean 'speciesKey'"):
                await client.facet({}, "speciesKeys")
            with pytest.raises(ConfigError, match="100,000"):
                await client.search({}, offset=99_900, limit=300)
            with pytest.raises(ConfigError, match="GBIF_USER"):
                await client.request_download({"type": "and", "predicates": []})
            with pytest.raises(ConfigError):
                await client.download_metadata("not-a-key")
            with pytest.raises(ConfigError):
                await client.occurrence("1/../2")

    asyncio.run(main())


def test_unreachable_gbif_is_a_gbif_api_error_with_status_0() -> None:
    from gbif_dl.fetch.retry import RetryPolicy

    async def main() -> GbifApiError:
        async with GbifClient(retry=RetryPolicy(retries=1, backoff_s=0.01)) as client:
            with pytest.raises(GbifApiError) as info:
                await client.count({"taxonKey": 1})
            return info.value

    error = asyncio.run(main())
    assert error.status == 0
    assert "GBIF_API_URL" in str(error)
    assert "127.0.0.1:9" in error.url
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.url, clone.status) == (error.url, error.status)

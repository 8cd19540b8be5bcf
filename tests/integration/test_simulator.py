"""The GBIF simulator answers like the real API, checked against recorded GBIF responses.

Real HTTP on loopback (urllib); counts are checked against the population's numpy columns or
brute force over ``pop.record``.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from dwca.read import DwCAReader

from gbif_dl.testing import GbifSimulator, Population, write_dwca

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "gbif-fixtures"
REAL_DWCA = Path(__file__).resolve().parents[1] / "data" / "dwca-0022697-200613084148143.zip"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET a URL; returns (status, headers, body) for errors too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str) -> Any:
    status, _, body = get(url)
    assert status == 200, body
    return json.loads(body)


def search(sim: GbifSimulator, query: str) -> Any:
    return get_json(f"{sim.api_url}/occurrence/search?{query}")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def post_download(
    sim: GbifSimulator, body: dict[str, Any], auth: str | None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    request = urllib.request.Request(
        f"{sim.api_url}/occurrence/download/request",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def json_types(value: dict[str, Any]) -> dict[str, str]:
    return {k: type(v).__name__ for k, v in value.items()}


# --- occurrence search ----------------------------------------------------------------------


def test_search_envelope_and_records_shaped_like_gbif(gbif_sim: GbifSimulator) -> None:
    """Same envelope keys in the same order; record fields share names and JSON types."""
    real = fixture("occurrence-search_speciesKey_limit2_media.json")
    page = search(gbif_sim, "occurrenceStatus=PRESENT&limit=2&offset=0")
    assert (
        list(page)
        == list(real)
        == ["offset", "limit", "endOfRecords", "count", "results", "facets"]
    )
    assert page["facets"] == [] and page["limit"] == 2 and len(page["results"]) == 2
    real_record = fixture("occurrence-search_taxonKey2431762_limit300.json")["results"][0]
    real_types = json_types(real_record)
    for rec in page["results"]:
        common = set(rec) & set(real_types)
        assert len(common) >= 60
        assert {k: real_types[k] for k in common} == {k: json_types(rec)[k] for k in common}
    # a complete StillImage media object has the real one's keys, in the same order
    real_media = list(real_record["media"][0])
    images = search(gbif_sim, "mediaType=StillImage&limit=50")["results"]
    complete = [m for r in images for m in r["media"] if set(m) == set(real_media)]
    assert complete and all(list(m) == real_media for m in complete)


def test_single_occurrence_is_the_search_record(gbif_sim: GbifSimulator) -> None:
    page = search(gbif_sim, "limit=3&offset=10")
    key = page["results"][1]["key"]
    assert get_json(f"{gbif_sim.api_url}/occurrence/{key}") == page["results"][1]
    status, headers, _body = get(f"{gbif_sim.api_url}/occurrence/1234")
    assert status == 404 and headers["Content-Type"].startswith("text/plain")


def test_limit_is_clamped_to_300_and_zero_results_match_the_recording(
    gbif_sim: GbifSimulator,
) -> None:
    """limit=500 is echoed as 300 (recorded), and a query without hits is byte-for-byte GBIF's."""
    page = search(gbif_sim, "limit=1000")
    assert page["limit"] == 300 and len(page["results"]) == 300 and page["endOfRecords"] is False
    status, headers, body = get(
        f"{gbif_sim.api_url}/occurrence/search?limit=500&offset=0&year=1700"
    )
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == (FIXTURES / "occurrence-search_zero_results_limit500_clamped.json").read_bytes()


def test_offset_cap_of_100000(gbif_sim: GbifSimulator) -> None:
    """offset + limit > 100,000 (after clamping) is a 400 text/plain with GBIF's message."""
    status, headers, body = get(f"{gbif_sim.api_url}/occurrence/search?offset=99800&limit=1000")
    assert status == 400 and headers["Content-Type"].startswith("text/plain")
    assert body.decode() == "Max offset of 100000 exceeded: 99800 + 300"
    page = search(gbif_sim, "offset=99700&limit=300")
    assert page["results"] == [] and page["endOfRecords"] is True and page["count"] == 600


@pytest.mark.parametrize(
    ("query", "fixture_name"),
    [
        ("decimalLatitude=334", "occurrence-search_400_bad_latitude.txt"),
        ("basisOfRecord=asia,oceania", None),
    ],
)
def test_bad_values_are_400_text_plain(
    gbif_sim: GbifSimulator, query: str, fixture_name: str | None
) -> None:
    status, headers, body = get(f"{gbif_sim.api_url}/occurrence/search?{query}")
    assert status == 400 and headers["Content-Type"].startswith("text/plain")
    if fixture_name:
        assert body == (FIXTURES / fixture_name).read_bytes()
    else:
        assert body.decode() == "Cannot parse asia,oceania into a known BasisOfRecord"


def test_end_of_records_paging(gbif_sim: GbifSimulator) -> None:
    """endOfRecords = count <= offset + limit; paging visits every record once."""
    keys = []
    offset = 0
    while True:
        page = search(gbif_sim, f"mediaType=StillImage&limit=300&offset={offset}")
        keys += [r["key"] for r in page["results"]]
        assert page["endOfRecords"] == (page["count"] <= offset + 300)
        if page["endOfRecords"]:
            break
        offset += 300
    expected = gbif_sim.population.select({"mediaType": "StillImage"})
    assert keys == [gbif_sim.population.key_of(i) for i in expected.tolist()]
    assert len(keys) > 300  # more than one page was needed
    assert gbif_sim.stats().pages == [(o, 300) for o in range(0, offset + 1, 300)]


@pytest.mark.parametrize(
    ("query", "expected_query"),
    [
        ("media_type=StillImage", {"mediaType": "StillImage"}),
        ("MEDIATYPE=stillimage&Media-Type=sound", {"mediaType": ["StillImage", "Sound"]}),
        ("year=2010,2020&country=US&country=DE", {"year": "2010,2020", "country": ["US", "DE"]}),
        ("year=*,2005&hasCoordinate=false", {"year": "*,2005", "hasCoordinate": "false"}),
        (
            "decimal%20latitude=30,*&basis_of_record=HUMAN_OBSERVATION",
            {"decimalLatitude": "30,*", "basisOfRecord": "HUMAN_OBSERVATION"},
        ),
        ("publishingOrgKey=typo&facetLimit=", {}),
        ("taxonKey=1&year=*", {"taxonKey": "1", "year": "*"}),
    ],
)
def test_lenient_names_or_and_ranges(
    gbif_sim: GbifSimulator, query: str, expected_query: dict[str, Any]
) -> None:
    """Counts over HTTP equal the population's GBIF-semantics selection."""
    page = search(gbif_sim, query + "&limit=300")
    expected = gbif_sim.population.select(expected_query)
    assert page["count"] == expected.size
    assert [r["key"] for r in page["results"]] == [
        gbif_sim.population.key_of(i) for i in expected[:300].tolist()
    ]


def test_or_within_and_across_parameters_brute_force(gbif_sim: GbifSimulator) -> None:
    pop = gbif_sim.population
    records = [pop.record(i) for i in range(pop.size)]
    page = search(gbif_sim, "country=US&country=CA&mediaType=Sound&limit=300")
    expected = [
        r["key"]
        for r in records
        if r["countryCode"] in ("US", "CA") and any(m.get("type") == "Sound" for m in r["media"])
    ]
    assert [r["key"] for r in page["results"]] == expected and page["count"] == len(expected) > 0


# --- facets ---------------------------------------------------------------------------------


def test_facets_shaped_like_gbif(gbif_sim: GbifSimulator) -> None:
    """facet=country&facetLimit=2&limit=0 looks like the recorded response."""
    real = fixture("occurrence-search_facet_country_facetLimit2.json")
    page = search(gbif_sim, "occurrenceStatus=PRESENT&limit=0&offset=0&facet=country&facetLimit=2")
    assert list(page) == list(real)
    assert page["results"] == [] and page["endOfRecords"] is False and page["limit"] == 0
    assert [f["field"] for f in page["facets"]] == ["COUNTRY"]
    assert list(page["facets"][0]) == list(real["facets"][0])
    counts = page["facets"][0]["counts"]
    assert len(counts) == 2 and all(list(c) == ["name", "count"] for c in counts)
    pop = gbif_sim.population
    full = pop.facet(pop.select({"occurrenceStatus": "PRESENT"}), "country")
    assert counts == [{"name": k, "count": v} for k, v in list(full.items())[:2]]


def test_facet_paging_mincount_and_several_facets(gbif_sim: GbifSimulator) -> None:
    pop = gbif_sim.population
    everything = pop.select({})
    page = search(
        gbif_sim,
        "limit=0&facet=speciesKey&facet=YEAR&facet=bogus&year.facetLimit=3&year.facetOffset=2"
        "&speciesKey.facetLimit=100&facetMincount=40",
    )
    fields = [f["field"] for f in page["facets"]]
    assert fields == ["SPECIES_KEY", "YEAR"]
    species = {c["name"]: c["count"] for c in page["facets"][0]["counts"]}
    assert species == {k: v for k, v in pop.facet(everything, "speciesKey").items() if v >= 40}
    years = [(c["name"], c["count"]) for c in page["facets"][1]["counts"]]
    all_years = [(k, v) for k, v in pop.facet(everything, "year").items() if v >= 40]
    assert years == all_years[2:5]
    default = search(gbif_sim, "limit=0&facet=year")
    assert len(default["facets"][0]["counts"]) == 10
    assert [c["count"] for c in default["facets"][0]["counts"]] == sorted(
        (c["count"] for c in default["facets"][0]["counts"]), reverse=True
    )


# --- species --------------------------------------------------------------------------------


def test_species_match_shapes(gbif_sim: GbifSimulator) -> None:
    name = gbif_sim.population.species[0]["canonicalName"]
    exact = get_json(f"{gbif_sim.api_url}/species/match?{urlencode({'name': name})}")
    real = fixture("species-match_v1_exact.json")
    assert list(exact) == list(real) and json_types(exact) == json_types(real)
    status, _, body = get(f"{gbif_sim.api_url}/species/match?name=Aso&strict=false")
    assert status == 200 and body == (FIXTURES / "species-match_v1_none.json").read_bytes()
    genus = gbif_sim.population.species[0]["genus"]
    higher = get_json(f"{gbif_sim.api_url}/species/match?{urlencode({'name': genus + ' zzz'})}")
    assert higher["matchType"] == "HIGHERRANK"


# --- downloads ------------------------------------------------------------------------------


def test_download_metadata_shaped_like_recordings(gbif_sim: GbifSimulator) -> None:
    """PREPARING has no doi and size 0; SUCCEEDED adds doi and the real size; key order as GBIF."""
    preparing_real = fixture("download-meta_preparing.json")
    succeeded_real = fixture("download-meta_by_doi_succeeded.json")
    key = gbif_sim.add_download({"taxonKey": 1, "country": ["US", "CA"]}, status="PREPARING")
    url = f"{gbif_sim.api_url}/occurrence/download/{key}"
    first = get_json(url)
    assert list(first) == list(preparing_real)
    assert json_types(first) == json_types(preparing_real)
    assert (
        first["status"] == "PREPARING" and first["size"] == 0 and first["license"] == "unspecified"
    )
    expected_total = gbif_sim.population.select({"taxonKey": 1, "country": ["US", "CA"]}).size
    assert first["totalRecords"] == expected_total
    assert first["request"]["predicate"]["predicates"][1] == {
        "type": "in",
        "key": "COUNTRY",
        "values": ["US", "CA"],
        "matchCase": False,
    }
    assert first["downloadLink"] == f"{gbif_sim.api_url}/occurrence/download/request/{key}.zip"
    assert get_json(url)["status"] == "RUNNING"
    done = get_json(url)
    assert done["status"] == "SUCCEEDED"
    assert list(done) == list(succeeded_real) and json_types(done) == json_types(succeeded_real)
    assert done["size"] == gbif_sim.archive_path(key).stat().st_size > 0
    by_doi = get_json(f"{gbif_sim.api_url}/occurrence/download/{done['doi']}")
    assert by_doi == done


def test_create_download_requires_basic_auth(gbif_sim: GbifSimulator) -> None:
    body = {
        "creator": "alice",
        "format": "DWCA",
        "predicate": {
            "type": "and",
            "predicates": [
                {"type": "equals", "key": "MEDIA_TYPE", "value": "StillImage"},
                {"type": "greaterThanOrEquals", "key": "YEAR", "value": "2015"},
            ],
        },
    }
    status, _, text = post_download(gbif_sim, body, None)
    assert status == 401
    status, _, text = post_download(gbif_sim, body, basic("alice", "wrong"))
    assert status == 401 and text.startswith(b"Failed to authenticate user alice")
    status, headers, text = post_download(gbif_sim, body, basic("alice", "secret"))
    assert status == 201 and headers["Content-Type"] == "application/json"
    key = text.decode()
    assert len(key) == 23 and key[7] == "-"
    meta = get_json(f"{gbif_sim.api_url}/occurrence/download/{key}")
    expected = gbif_sim.population.select({"mediaType": "StillImage", "year": "2015,*"}).size
    assert meta["totalRecords"] == expected and meta["request"]["format"] == "DWCA"
    # an identical request while the first runs returns the same key (GBIF de-duplicates)
    assert post_download(gbif_sim, body, basic("alice", "secret"))[2].decode() == key


def test_simple_formats_and_too_many_downloads(gbif_sim: GbifSimulator) -> None:
    """Omitted format means SIMPLE_CSV; a 4th running download for a user gets 420."""
    auth = basic("alice", "secret")
    keys = []
    for year in (2001, 2002, 2003):
        predicate = {"type": "equals", "key": "YEAR", "value": str(year)}
        status, _, text = post_download(gbif_sim, {"predicate": predicate}, auth)
        assert status == 201
        keys.append(text.decode())
    meta = get_json(f"{gbif_sim.api_url}/occurrence/download/{keys[0]}")
    assert meta["request"]["format"] == "SIMPLE_CSV"
    status, _, text = post_download(
        gbif_sim, {"predicate": {"type": "equals", "key": "YEAR", "value": "2004"}}, auth
    )
    assert status == 420 and b"too many simultaneous downloads" in text
    parquet = gbif_sim.add_download({"year": 2001}, format="SIMPLE_PARQUET")
    assert (
        get_json(f"{gbif_sim.api_url}/occurrence/download/{parquet}")["request"]["format"]
        == "SIMPLE_PARQUET"
    )


def test_download_file_redirect_range_and_errors(gbif_sim: GbifSimulator) -> None:
    """The zip is a 302 to the archive, which serves Range/206; 404 unknown; 410 erased."""
    key = gbif_sim.add_download({"mediaType": "StillImage"})
    status, headers, whole = get(f"{gbif_sim.api_url}/occurrence/download/request/{key}.zip")
    assert status == 200 and whole[:2] == b"PK"
    assert whole == gbif_sim.archive_path(key).read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", gbif_sim.port, timeout=10)
    conn.request("GET", f"/v1/occurrence/download/request/{key}")
    redirect = conn.getresponse()
    redirect.read()
    assert redirect.status == 302
    location = redirect.getheader("Location")
    assert location == f"{gbif_sim.base_url}/archive/{key}.zip"
    status, headers, part = get(location, {"Range": "bytes=100-199"})
    assert status == 206 and part == whole[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    status, headers, body = get(
        f"{gbif_sim.api_url}/occurrence/download/request/0000000-000000000000000.zip"
    )
    assert status == 404 and body == b'"Download with this key not found."\n'
    status, headers, body = get(f"{gbif_sim.api_url}/occurrence/download/0000000-000000000000000")
    assert status == 404 and body == b"Download was not found"
    assert headers["Content-Type"].startswith("text/plain")
    erased = gbif_sim.add_download({"year": 2010}, status="FILE_ERASED")
    status, _, body = get(f"{gbif_sim.api_url}/occurrence/download/request/{erased}.zip")
    assert status == 410 and b"erased" in body
    with zipfile.ZipFile(gbif_sim.archive_path(key)) as zf:
        assert {"meta.xml", "occurrence.txt", "multimedia.txt", "verbatim.txt"} <= set(
            zf.namelist()
        )


def test_cut_transfer_can_be_resumed_with_range(gbif_sim: GbifSimulator) -> None:
    """cut_after_bytes closes the first transfer mid-body; a Range request gets the rest."""
    key = gbif_sim.add_download({"year": "2000,*"}, cut_after_bytes=5000)
    full = gbif_sim.archive_path(key).read_bytes()
    url = f"{gbif_sim.base_url}/archive/{key}.zip"
    conn = http.client.HTTPConnection("127.0.0.1", gbif_sim.port, timeout=10)
    conn.request("GET", f"/archive/{key}.zip")
    response = conn.getresponse()
    assert response.status == 200 and int(response.getheader("Content-Length")) == len(full)
    with pytest.raises(http.client.IncompleteRead) as info:
        response.read()
    got = info.value.partial
    assert got == full[: len(got)] and 0 < len(got) <= 5000
    status, _headers, rest = get(url, {"Range": f"bytes={len(got)}-"})
    assert status == 206 and got + rest == full


# --- fault injection, latency and observability ---------------------------------------------


def test_injected_429_and_early_retries(gbif_sim: GbifSimulator) -> None:
    """429 carries GBIF's JSON-array body and Retry-After; retrying too early is counted."""
    real = fixture("occurrence-search_429_too_many_requests.json")
    gbif_sim.inject("/occurrence/search", statuses=[429, 429, 503], retry_after_s=0.3)
    url = f"{gbif_sim.api_url}/occurrence/search?limit=1"
    status, headers, body = get(url)
    assert status == 429 and json.loads(body) == real and headers["Retry-After"] == "0.3"
    assert headers["Content-Type"] == "application/json"
    status, _, _ = get(url)  # immediately: early
    assert status == 429 and gbif_sim.stats().early_retries == 1
    time.sleep(0.35)
    status, headers, body = get(url)  # waited long enough: not early
    assert status == 503 and body == b"Service disabled for maintenance reasons"
    assert headers["Retry-After"] == "0.3"
    time.sleep(0.35)
    assert get(url)[0] == 200
    stats = gbif_sim.stats()
    assert stats.early_retries == 1 and stats["statuses"][429] == 2
    assert stats.requests["/v1/occurrence/search"] == 4
    assert [r[2] for r in gbif_sim.requests] == ["/v1/occurrence/search?limit=1"] * 4


def test_latency_and_max_in_flight() -> None:
    """Every answer waits latency_s; concurrent clients are seen in flight together."""
    population = Population(seed=0, size=50)
    with GbifSimulator(population, latency_s=0.2) as sim:
        started = time.monotonic()
        assert get(f"{sim.api_url}/species/match?name=x")[0] == 200
        assert time.monotonic() - started >= 0.2
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(lambda _: get(f"{sim.api_url}/occurrence/search")[0], range(4))
            )
        assert statuses == [200] * 4
        assert sim.stats().max_in_flight >= 2
        sim.reset_stats()
        assert sim.stats().total_requests == 0


# --- the archive writer ---------------------------------------------------------------------


def test_write_dwca_readable_by_python_dwca_reader(tmp_path: Path) -> None:
    """Core rows = records, multimedia rows = media objects, identifiers as in the JSON."""
    pop = Population(seed=5, size=400, media_base_urls=["http://127.0.0.1:1", "http://127.0.0.2:2"])
    indices = pop.select({"mediaType": "StillImage"})[:250]
    summary = write_dwca(pop, indices, tmp_path / "out.zip")
    expected_media = [(str(pop.key_of(i)), m) for i in indices.tolist() for m in pop.media(i)]
    assert summary.occurrences == len(indices) and summary.multimedia_rows == len(expected_media)
    mm = "http://rs.gbif.org/terms/1.0/Multimedia"
    with DwCAReader(str(tmp_path / "out.zip")) as dwca:
        assert len(dwca.rows) == len(indices)
        rows = []
        for row in dwca.rows:
            rows += [(row.id, ext.data) for ext in row.extensions if ext.rowtype == mm]
        first = dwca.rows[0]
        assert first.id == str(pop.key_of(int(indices[0])))
        assert first.data["http://rs.gbif.org/terms/1.0/gbifID"] == first.id
        assert first.data["http://purl.org/dc/terms/license"] in (
            "CC_BY_NC_4_0",
            "CC_BY_4_0",
            "CC0_1_0",
        )
    assert len(rows) == len(expected_media)
    identifier = "http://purl.org/dc/terms/identifier"
    assert [(g, d[identifier]) for g, d in rows] == [
        (g, m.get("identifier", "")) for g, m in expected_media
    ]


def test_write_dwca_uses_the_real_archive_layout(tmp_path: Path) -> None:
    """meta.xml columns equal the real GBIF archive's; files TAB separated with one header."""
    pop = Population(seed=0, size=30)
    path = write_dwca(pop, range(30), tmp_path / "x.zip").path
    with zipfile.ZipFile(REAL_DWCA) as real, zipfile.ZipFile(path) as ours:
        for name in ("occurrence.txt", "verbatim.txt", "multimedia.txt"):
            real_header = real.open(name).readline()
            lines = ours.read(name).decode().split("\n")
            assert lines[0].encode() + b"\n" == real_header.replace(b"\r\n", b"\n")
            assert lines[-1] == ""
            width = lines[0].count("\t")
            assert all(line.count("\t") == width for line in lines[1:-1])
        assert ours.read("meta.xml").count(b"<field ") == real.read("meta.xml").count(b"<field ")
        names = set(ours.namelist())
        assert {"metadata.xml", "citations.txt", "rights.txt"} <= names
        assert {f"dataset/{k}.xml" for k in pop.dataset_keys} & names


# --- everything together --------------------------------------------------------------------


def test_simulation_media_urls_point_at_live_hosts(simulation: Any) -> None:
    """Search results carry identifiers on the simulation's hosts, which serve images."""
    page = get_json(f"{simulation.api_url}/occurrence/search?mediaType=StillImage&limit=20")
    urls = [
        m["identifier"]
        for r in page["results"]
        for m in r["media"]
        if m.get("type") == "StillImage" and "identifier" in m
    ]
    assert urls and {u.split("/media/")[0] for u in urls} == set(simulation.hosts.base_urls)
    status, _headers, body = get(urls[0])
    assert status == 200 and body[:2] in (b"\xff\xd8", b"\x89P")

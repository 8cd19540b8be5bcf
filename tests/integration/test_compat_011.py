"""gbif-dl 0.1.1's public names, called the way 0.1.1's tests and README call them.

0.1.1 moved the downloader to ``gbif_dl.stores.dl_async`` (also ``gbif_dl.dl_async``), added
``gbif_dl.stores.export.to_csv`` (also ``gbif_dl.export``), ``gbif_dl.MediaData`` and the
``gbif_dl.generators.api`` / ``gbif_dl.generators.dwca`` modules. Everything runs against the
simulator on loopback.
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import gbif_dl
from gbif_dl.errors import ConfigError
from gbif_dl.testing import HostFaults, Simulation, write_dwca

MEDIA_KEYS = ["url", "basename", "label", "subset", "publisher", "license", "rightsHolder"]


@pytest.fixture(scope="module")
def simu() -> Iterator[Simulation]:
    """A small simulated GBIF: 800 occurrences of 3 species, one clean image host."""
    with Simulation(seed=11, size=800, n_hosts=1, n_species=3) as simulation:
        yield simulation


def _species(simu: Simulation) -> list[int]:
    return [int(s["key"]) for s in simu.population.species[:2]]


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent != root)


def test_the_acceptance_call_of_issue_22(simu: Simulation, tmp_path: Path) -> None:
    """0.1.1's README: generators.api.generate_urls into stores.dl_async.download."""
    queries = {"speciesKey": _species(simu)}
    data_generator = gbif_dl.generators.api.generate_urls(
        queries=queries, label="speciesKey", nb_samples=40, api_url=simu.api_url
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # 0.1.1's own keywords: no warning
        stats = gbif_dl.stores.dl_async.download(
            data_generator,
            root=tmp_path / "data",
            tcp_connections=64,
            nb_workers=64,
            batch_size=16,
            loglevel="ERROR",
        )
    assert (stats["success"], stats["failed"], stats["skipped"]) == (40, 0, 0)
    images = _images(tmp_path / "data")
    assert len(images) == 40
    assert {p.parent.name for p in images} <= {str(k) for k in queries["speciesKey"]}
    assert all(len(p.stem) == 40 for p in images)  # the sha1 basename, as in 0.1.1


def test_short_names_are_the_same_objects() -> None:
    """gbif_dl.dl_async, gbif_dl.export and gbif_dl.MediaData are the stores' names."""
    assert gbif_dl.dl_async is gbif_dl.stores.dl_async
    assert gbif_dl.export is gbif_dl.stores.export
    assert gbif_dl.MediaData is gbif_dl.stores.MediaData
    assert gbif_dl.generators.api.generate_urls is gbif_dl.api.generate_urls
    assert gbif_dl.generators.dwca.generate_urls is gbif_dl.dwca.generate_urls
    assert gbif_dl.generators.dwca.doi_to_gbif_key is gbif_dl.dwca.doi_to_gbif_key
    assert list(gbif_dl.MediaData.__annotations__) == MEDIA_KEYS


def test_import_gbif_dl_stays_light() -> None:
    """`import gbif_dl` imports none of the compatibility modules (nor aiohttp)."""
    code = (
        "import sys, gbif_dl; "
        "print(sorted(m for m in sys.modules if m.startswith(('gbif_dl.', 'aiohttp'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['gbif_dl._version']"


def test_download_a_list_a_generator_and_an_async_generator(
    simu: Simulation, tmp_path: Path
) -> None:
    """0.1.1's test_io: a list, a generator and an async generator of items all download."""
    items = list(
        gbif_dl.api.generate_urls(
            {"speciesKey": _species(simu)}, label="speciesKey", nb_samples=9, api_url=simu.api_url
        )
    )

    def from_list(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        yield from rows

    async def from_list_async(rows: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        for row in rows:
            yield row
            await asyncio.sleep(0)

    download = gbif_dl.dl_async.download
    assert download(items[:3], root=tmp_path / "a", loglevel="ERROR")["success"] == 3
    assert download(from_list(items[3:6]), root=tmp_path / "b", loglevel="ERROR")["success"] == 3
    stats = download(from_list_async(items[6:]), root=tmp_path / "c", loglevel="ERROR")
    assert stats["success"] == 3
    again = download(items[:3], root=tmp_path / "a", loglevel="ERROR")
    assert (again["success"], again["skipped"]) == (0, 3)


def test_random_subsets_and_the_error_log(tmp_path: Path) -> None:
    """random_subsets makes subset folders; error_log_path lists the failed URLs and why."""
    broken = HostFaults(not_found_rate=0.3, seed=1)
    with Simulation(seed=2, size=300, n_hosts=1, host_faults=broken, n_species=2) as simulation:
        items = list(
            gbif_dl.api.generate_urls(
                {"basisOfRecord": "HUMAN_OBSERVATION"},
                label="speciesKey",
                nb_samples=40,
                api_url=simulation.api_url,
            )
        )
        log = tmp_path / "errors.txt"
        stats = gbif_dl.dl_async.download(
            items,
            root=tmp_path / "data",
            random_subsets={"train": 0.5, "test": 0.5},
            error_log_path=log,
            loglevel="CRITICAL",
        )
    # a list of the generator is the sample alone, as in gbif-dl 0.1 (no spares: those come
    # only when the generator itself is given to the downloader)
    assert stats["failed"] > 0 and stats["success"] + stats["failed"] == 40
    assert {p.relative_to(tmp_path / "data").parts[0] for p in _images(tmp_path / "data")} == {
        "train",
        "test",
    }
    lines = log.read_text().splitlines()
    assert len(lines) == stats["failed"]
    assert all(line.split("\t")[0].startswith("http://") for line in lines)
    assert all(line.split("\t")[1] for line in lines)


def test_retries_count_attempts_and_bad_levels_are_refused(tmp_path: Path) -> None:
    """retries=0 is refused (0.1.1 counts attempts: 1 = one try); so is an unknown loglevel."""
    with pytest.raises(ConfigError, match="retries"):
        gbif_dl.dl_async.download([], root=tmp_path, retries=-1)
    with pytest.raises(ConfigError, match="loglevel"):
        gbif_dl.dl_async.download([], root=tmp_path, loglevel="LOUD")


def test_export_to_csv(simu: Simulation, tmp_path: Path) -> None:
    """gbif_dl.export.to_csv(generator, filename): 0.1.1's item columns, one row per item."""
    generator = gbif_dl.generators.api.generate_urls(
        {"speciesKey": _species(simu)[0]}, label="speciesKey", nb_samples=5, api_url=simu.api_url
    )
    path = tmp_path / "items.csv"
    assert gbif_dl.export.to_csv(generator, path) == 5
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == MEDIA_KEYS and len(rows) == 5
    assert all(r["url"].startswith("http://") and len(r["basename"]) == 40 for r in rows)
    gbif_dl.stores.export.to_csv(iter(rows), tmp_path / "two.csv", ["url", "label"])
    assert (tmp_path / "two.csv").read_text().splitlines()[0] == "url,label"


def test_gbif_count_and_gbif_query_generator(
    simu: Simulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 0.1.1 helpers take search parameters as keywords; the API comes from GBIF_API_URL."""
    monkeypatch.setenv("GBIF_API_URL", simu.api_url)
    key = _species(simu)[0]
    expected = len(simu.population.select({"speciesKey": [str(key)], "mediaType": "StillImage"}))
    assert gbif_dl.generators.api.gbif_count(speciesKey=key) == expected
    items = list(
        gbif_dl.generators.api.gbif_query_generator(
            label="speciesKey", subset="val", speciesKey=key
        )
    )
    same = list(gbif_dl.api.generate_urls({"speciesKey": key}, label="speciesKey"))
    assert [i["url"] for i in items] == [i["url"] for i in same] and items
    assert {i["subset"] for i in items} == {"val"} and {i["label"] for i in items} == {str(key)}
    with pytest.raises(ConfigError, match="keywords"):
        gbif_dl.generators.api.gbif_count("StillImage", key)


def test_dwca_generator_reads_a_local_archive_and_can_delete_it(tmp_path: Path) -> None:
    """dwca_generator(path): 0.1.1's default label speciesKey; delete=True removes the zip."""
    from gbif_dl.testing import Population

    population = Population(seed=4, size=60, n_species=3)
    path = tmp_path / "0000001-000000000000001.zip"
    write_dwca(population, range(60), path)
    items = list(gbif_dl.generators.dwca.dwca_generator(path))
    assert items and all(i["label"] == str(int(i["label"])) for i in items)
    assert [i["url"] for i in items] == [
        i["url"] for i in gbif_dl.dwca.generate_urls(path, label="speciesKey")
    ]
    assert path.exists()
    assert list(gbif_dl.generators.dwca.dwca_generator(path, delete=True))
    assert not path.exists()
    assert gbif_dl.generators.dwca.is_doi("10.15468/dl.hx3uzz")
    assert not gbif_dl.generators.dwca.is_doi("0000001-000000000000001")

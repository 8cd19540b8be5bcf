"""gbif-dl download --processes: several fetching processes without a runner, from the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gbif_dl.cli import main
from gbif_dl.cli.exits import EXIT_OK, EXIT_USAGE
from gbif_dl.testing import Simulation


@pytest.fixture(scope="module")
def simu() -> Iterator[Simulation]:
    with Simulation(seed=5, size=600, n_hosts=2, n_species=4) as simulation:
        yield simulation


def _args(simu: Simulation, root: Path) -> list[str]:
    keys = [int(s["key"]) for s in simu.population.species[:2]]
    args = ["download", "--api-url", simu.api_url, "-o", str(root), "--label", "speciesKey"]
    args += [f"--query=speciesKey={k}" for k in keys] + ["--split-streams-by", "speciesKey"]
    return [*args, "--nb-samples", "8", "--seed", "3", "-q"]


def test_processes_two_gives_the_rows_of_one_process(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--processes 2 downloads in shards at the root, with the same manifest rows (but their
    timing) as the streaming download of the same query."""
    assert main(_args(simu, tmp_path / "one")) == EXIT_OK
    assert main([*_args(simu, tmp_path / "two"), "--processes", "2"]) == EXIT_OK
    assert "8 images downloaded, 0 failed" in capsys.readouterr().out
    assert list((tmp_path / "two").glob(".gbif-dl-shard-*.done"))
    assert not list((tmp_path / "one").glob(".gbif-dl-shard-*"))

    def rows(root: Path) -> list[dict]:
        table = pq.read_table(root / "manifest.parquet").to_pylist()
        timing = ("updated", "elapsed_s")
        return sorted(
            ({k: v for k, v in r.items() if k not in timing} for r in table),
            key=lambda r: r["url"],
        )

    assert rows(tmp_path / "two") == rows(tmp_path / "one")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--processes", "none"], "expected a positive number or 'auto'"),
        (["--processes", "0"], "expected a positive number or 'auto'"),
        (["--processes", "2", "--runner", "local"], "use workers for the number of processes"),
    ],
)
def test_bad_processes_flags_exit_2_before_any_request(
    simu: Simulation,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    before = len(simu.api.requests)
    assert main([*_args(simu, tmp_path / "x"), *flags]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(simu.api.requests) == before
    assert not (tmp_path / "x").exists()

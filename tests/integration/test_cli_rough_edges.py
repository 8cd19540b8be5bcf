"""Issue 22's rough edges of the command line, each run through the real `gbif-dl` command.

The command runs in a subprocess (with this process's PYTHONPATH, so it uses the source under
test) against the simulator on loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gbif_dl
from gbif_dl.progress import Meter, Progress, expected_total
from gbif_dl.testing import Simulation

N_SPECIES = 4


@pytest.fixture(scope="module")
def simu() -> Iterator[Simulation]:
    """1,500 occurrences of 4 species (some with sounds), 2 clean image hosts."""
    with Simulation(seed=3, size=1500, n_hosts=2, n_species=N_SPECIES) as simulation:
        yield simulation


def _command() -> list[str]:
    exe = shutil.which("gbif-dl")
    return [exe] if exe else [sys.executable, "-m", "gbif_dl.cli"]


def gbif_dl_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `gbif-dl ARGS` and return what it did (never raises on a non-zero exit); the child
    may reach this test's loopback servers (GBIF_DL_ALLOW_PRIVATE=1: they are not its own)."""
    return subprocess.run(
        [*_command(), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GBIF_DL_ALLOW_PRIVATE": "1", **(env or {})},
    )


def _species_args(simu: Simulation, n: int = N_SPECIES) -> list[str]:
    return [f"--query=speciesKey={s['key']}" for s in simu.population.species[:n]]


def _files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.parent != root and not p.name.startswith(".")
    )


# --- demo ---------------------------------------------------------------------------------------


def test_demo_twice_gives_the_same_files_and_fetches_nothing_new(tmp_path: Path) -> None:
    """Media URLs carry fixed host names, so a second demo run resumes the first one."""
    root = tmp_path / "demo"
    args = ["demo", "--root", str(root), "--size", "600", "--nb-samples", "60", "-q"]
    first = gbif_dl_cli(*args)
    assert first.returncode == 0, first.stderr
    files = _files(root)
    failed_rows = _failed_rows(root)
    second = gbif_dl_cli(*args)
    assert second.returncode == 0, second.stderr
    assert _files(root) == files and len(files) > 40
    done = re.search(
        r"This run: (\d+) images downloaded, (\d+) failed, (\d+) already there", first.stdout
    )
    again = re.search(
        r"This run: (\d+) images downloaded, (\d+) failed, (\d+) already there", second.stdout
    )
    assert done and again
    assert int(again[1]) == 0 and int(again[3]) == int(done[1])  # nothing downloaded again
    rows = pq.read_table(root / "manifest.parquet").to_pylist()
    # issue 18: spares replace the failed images, so exactly 60 are stored; one row a primary,
    # plus the spares fetched (before: 60 rows)
    assert sum(r["status"] == "success" for r in rows) == 60
    assert len(rows) == 60 + sum(bool(r["spare"]) for r in rows)
    assert all(".gbif-dl-demo.invalid/" in r["url"] for r in rows)
    # the first run's failures are permanent (404, HTML): the second run requests none of them
    # again, counts them as failed under their old reasons and leaves their rows as they were
    assert int(done[2]) > 0 and int(again[2]) == int(done[2])
    assert f"({done[2]} of the failures known from before, not requested again)" in second.stdout
    assert _failed_rows(root) == failed_rows


def test_demo_s_run_line_adds_up_to_the_images_stored(tmp_path: Path) -> None:
    """Images the end-of-run content pass sets aside (an exact copy of a kept photo, a
    placeholder) are counted among the downloads and said so: downloaded + already there -
    set aside = the manifest's stored images."""
    root = tmp_path / "demo"
    run = gbif_dl_cli("demo", "--root", str(root), "-q")
    assert run.returncode == 0, run.stderr
    done = re.search(r"This run: (\d+) images downloaded, (\d+) failed, (\d+) already", run.stdout)
    assert done
    aside = re.search(r"of these, (\d+) set aside at the end", run.stdout)
    set_aside = int(aside[1]) if aside else 0
    rows = pq.read_table(root / "manifest.parquet").to_pylist()
    stored = sum(r["status"] == "success" for r in rows)
    assert int(done[1]) + int(done[3]) - set_aside == stored
    assert set_aside <= sum(r["status"] in ("duplicate", "placeholder") for r in rows)


def _failed_rows(root: Path) -> dict[str, dict[str, object]]:
    rows = pq.read_table(root / "manifest.parquet").to_pylist()
    return {r["url"]: r for r in rows if r["status"] == "failed"}


def test_demo_says_its_query_and_writes_to_the_user_data_folder(tmp_path: Path) -> None:
    """Without --root the dataset goes to $XDG_DATA_HOME/gbif-dl/demo, never the current folder."""
    work = tmp_path / "checkout"
    work.mkdir()
    env = {"XDG_DATA_HOME": str(tmp_path / "data-home")}
    result = subprocess.run(
        [*_command(), "demo", "--size", "300", "--nb-samples", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    expected = tmp_path / "data-home" / "gbif-dl" / "demo"
    assert list(work.iterdir()) == []
    assert (expected / "manifest.parquet").is_file()
    assert f"Dataset: {expected}" in result.stdout
    assert f"demo dataset folder: {expected}" in result.stderr
    query = next(line for line in result.stdout.splitlines() if line.startswith("Query: "))
    assert "speciesKey in [" in query and "20 images" in query and "seed 0" in query


# --- mediaType in a query -------------------------------------------------------------------------


def test_media_type_in_the_query_is_planned_and_downloaded(
    simu: Simulation, tmp_path: Path
) -> None:
    """--query mediaType=Sound: plan counts sounds; download takes sounds; no keyword message."""
    keys = [str(s["key"]) for s in simu.population.species[:2]]
    query = [f"--query=speciesKey={k}" for k in keys] + ["--query", "mediaType=Sound"]
    plan = gbif_dl_cli(
        "plan", "--api-url", simu.api_url, *query, "--split-streams-by", "speciesKey"
    )
    assert plan.returncode == 0, plan.stderr
    assert "occurrences with Sound media" in plan.stdout
    for key in keys:
        count = len(simu.population.select({"speciesKey": [key], "mediaType": "Sound"}))
        line = next(line for line in plan.stdout.splitlines() if f"speciesKey={key}" in line)
        assert line.split()[-2] == f"{count:,}"
    root = tmp_path / "sounds"
    download = gbif_dl_cli(
        "download", "--api-url", simu.api_url, *query, "--nb-samples", "6", "-o", str(root)
    )
    assert download.returncode == 0, download.stderr
    assert "mediatype=" not in download.stderr
    wanted = gbif_dl.api.generate_urls(
        {"speciesKey": keys}, nb_samples=6, mediatype="Sound", api_url=simu.api_url
    )
    rows = pq.read_table(root / "manifest.parquet").to_pylist()
    sample = [r for r in wanted if not r.get("spare")]  # no failures here: no spare fetched
    assert sorted(r["url"] for r in rows) == sorted(r["url"] for r in sample)


def test_two_media_types_in_one_query_are_a_usage_error(simu: Simulation) -> None:
    """Both --mediatype and a different mediaType in the query: exit 2, one line."""
    result = gbif_dl_cli(
        "plan", "--api-url", simu.api_url, "--query=mediaType=Sound", "--mediatype", "StillImage"
    )
    assert result.returncode == 2
    assert "disagree" in result.stderr and "Traceback" not in result.stderr


# --- plan and download agree ----------------------------------------------------------------------


def test_plan_says_what_its_numbers_are_and_the_download_stays_within_them(
    simu: Simulation, tmp_path: Path
) -> None:
    """With --nb-samples -1 the plan gives upper bounds, says why; the download keeps to them."""
    args = [*_species_args(simu), "--split-streams-by", "speciesKey", "--nb-samples", "-1"]
    args += ["--label", "speciesKey", "--api-url", simu.api_url]
    plan = gbif_dl_cli("plan", *args)
    assert plan.returncode == 0, plan.stderr
    planned = int(re.search(r"up to ([\d,]+) to take", plan.stdout)[1].replace(",", ""))  # type: ignore[index]
    words = " ".join(plan.stdout.split())
    assert "Counts are GBIF occurrence counts" in words and "cut to what the driest" in words
    root = tmp_path / "all"
    download = gbif_dl_cli("download", *args, "-o", str(root))
    assert download.returncode == 0, download.stderr
    taken = pq.read_table(root / "manifest.parquet").num_rows
    assert 0 < taken <= planned
    labels = pq.read_table(root / "manifest.parquet", columns=["label"])["label"].to_pylist()
    assert len(set(labels)) == N_SPECIES and len({labels.count(x) for x in set(labels)}) == 1


# --- progress -------------------------------------------------------------------------------------


def test_progress_lines_show_the_total_rate_and_share(simu: Simulation, tmp_path: Path) -> None:
    """Off a terminal: `records: 20 of 20 records (…/s, 100%)` and `20/20 items`; never `of -1`."""
    args = ["download", *_species_args(simu, 2), "--api-url", simu.api_url, "--label", "speciesKey"]
    result = gbif_dl_cli(*args, "--nb-samples", "20", "-o", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"records: 20 of 20 records \([\d.]+/s, 100%\)", result.stderr)
    assert re.search(r"20/20 items \([\d.]+/s, 100%\)", result.stderr)
    balanced = [*args, "--split-streams-by", "speciesKey", "--nb-samples", "-1"]
    result = gbif_dl_cli(*balanced, "-o", str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr
    assert "of -1" not in result.stderr and "/-1" not in result.stderr


def test_a_known_total_gives_a_share_and_the_time_left(caplog: pytest.LogCaptureFixture) -> None:
    """Half done of a known total: the line has the share and the time left."""
    caplog.set_level("INFO", logger="gbif_dl.progress")
    with Meter("images", total=10, unit="img", bar=False, log_every_s=0.0) as meter:
        meter.update(5)
    assert re.search(r"images: 5 of 10 img \([\d.]+/s, 50%, [\d.]+ (s|min|h) left\)", caplog.text)
    with expected_total(8):
        progress = Progress(mode=False)
    assert progress.total == 8
    with expected_total(-1):
        assert Progress(mode=False).total is None


# --- exit codes, messages, pipes -----------------------------------------------------------------


def test_report_of_a_missing_folder_is_a_usage_error() -> None:
    """`gbif-dl report MISSING` exits 2 with one line, as the README says of usage errors."""
    result = gbif_dl_cli("report", "definitely-not-here-22")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_an_erased_download_message_names_the_command(simu: Simulation, tmp_path: Path) -> None:
    """FILE_ERASED: the fix is `gbif-dl dwca request`, not a Python call."""
    key = simu.api.add_download({"mediaType": "StillImage"}, status="FILE_ERASED")
    result = gbif_dl_cli(
        "download", "--dwca", key, "--api-url", simu.api_url, "--dwca-dir", str(tmp_path)
    )
    assert result.returncode == 1
    assert "gbif-dl dwca request" in result.stderr
    assert "gbif_dl.dwca.request" not in result.stderr


def test_plan_into_a_closed_pipe_ends_quietly(simu: Simulation) -> None:
    """`gbif-dl plan | head`: the reader is gone before the plan prints; no traceback, exit 0."""
    process = subprocess.Popen(
        [*_command(), "plan", "--api-url", simu.api_url, *_species_args(simu)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


def test_terminal_bars_show_the_announced_total(capsys: pytest.CaptureFixture[str]) -> None:
    """A bar fed by a generator shows the total the command announced: n/total and a share."""
    with expected_total(4):
        progress = Progress(mode=True)
    for _ in range(4):
        progress.update("success")
    progress.close()
    err = capsys.readouterr().err
    assert "4/4" in err and "100%" in err


def test_library_messages_are_translated_to_commands() -> None:
    """Python calls and keywords in a library message become the command's words."""
    from gbif_dl.cli.messages import cli_message

    text = cli_message(
        "request it again: gbif_dl.dwca.request(<the same query>); wait for it "
        "(GbifClient.wait_for_download); give mediatype='Sound'"
    )
    assert "gbif_dl." not in text and "GbifClient" not in text
    assert "`gbif-dl dwca request`" in text and "gbif-dl dwca fetch KEY --wait" in text
    assert "--mediatype 'Sound'" in text

"""The `gbif-dl` command end to end, in-process, against the simulator on loopback.

Every command and every exit code is exercised: 0 success, 1 too many failed images or a GBIF
error, 2 usage/configuration errors; errors are one line without traceback unless --debug.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gbif_dl.cli import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, configure_logging, main
from gbif_dl.progress import Meter
from gbif_dl.testing import HostFaults, Simulation, write_dwca

N_SPECIES = 4


@pytest.fixture(scope="module")
def simu() -> Iterator[Simulation]:
    """One small simulated GBIF for the whole module: 1,500 occurrences, 2 clean image hosts."""
    with Simulation(seed=3, size=1500, n_hosts=2, n_species=N_SPECIES) as simulation:
        yield simulation


def _species(simu: Simulation, n: int = 3) -> list[int]:
    return [int(s["key"]) for s in simu.population.species[:n]]


def _manifest(root: Path) -> list[dict]:
    return pq.read_table(root / "manifest.parquet").to_pylist()


def _class_dirs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.glob("*/*") if p.is_dir()}


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("gbif-dl: error:")]


# --- help ---------------------------------------------------------------------------------------


def test_help_in_a_real_subprocess() -> None:
    """The installed `gbif-dl` entry point runs and its help lists every command and an example."""
    result = subprocess.run(
        [*_gbif_dl_command(), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for command in ("download", "plan", "dwca", "report", "demo", "simulate"):
        assert command in result.stdout
    assert "examples:" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["download"],
        ["plan"],
        ["dwca"],
        ["dwca", "request"],
        ["dwca", "status"],
        ["dwca", "fetch"],
        ["report"],
        ["demo"],
        ["simulate"],
    ],
)
def test_every_command_has_help_with_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--help` works for every command and shows at least one example invocation."""
    assert main([*command, "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "examples:" in out and "gbif-dl " + command[0] in out.split("examples:")[1]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command or flag, or a bad flag value, exits 2 with one line naming --help."""
    assert main(["bogus"]) == EXIT_USAGE
    assert main(["download", "--nb-samples", "many"]) == EXIT_USAGE
    assert main([]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "invalid int value: 'many'" in err
    assert "Traceback" not in err


# --- download -----------------------------------------------------------------------------------


def test_download_from_toml_query_file(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TOML query file drives search, balance, splits and download; exit 0 and a summary."""
    keys = _species(simu)
    root = tmp_path / "out"
    config = tmp_path / "q.toml"
    config.write_text(
        f'label = "speciesKey"\nsplit_streams_by = "speciesKey"\nnb_samples = 24\nseed = 1\n'
        f'root = "{root.as_posix()}"\napi_url = "{simu.api_url}"\n'
        "splits = { train = 0.5, test = 0.5 }\n"
        f"[queries]\nspeciesKey = {keys}\n"
    )
    assert main(["download", str(config)]) == EXIT_OK
    out = capsys.readouterr().out
    rows = _manifest(root)
    ok = [r for r in rows if r["status"] == "success"]
    assert len(rows) == 24 and f"{len(ok)} images downloaded" in out
    assert {r["label"] for r in rows} == {str(k) for k in keys}
    per_class = {str(k): sum(r["label"] == str(k) for r in rows) for k in keys}
    assert set(per_class.values()) == {8}  # balanced: 24 over 3 species
    assert _class_dirs(root) <= {f"{s}/{k}" for s in ("train", "test") for k in keys}
    for row in ok:
        assert (root / row["path"]).is_file()


def test_download_from_yaml_with_flags_overriding(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A YAML query file works the same; flags override its values (here nb_samples and root)."""
    keys = _species(simu, 2)
    config = tmp_path / "q.yaml"
    config.write_text(
        f"queries:\n  speciesKey: {keys}\nlabel: speciesKey\nsplit_streams_by: speciesKey\n"
        f"nb_samples: 50\nroot: {(tmp_path / 'ignored').as_posix()}\n"
    )
    root = tmp_path / "yaml-out"
    code = main(
        ["download", str(config), "--nb-samples", "6", "-o", str(root), "--api-url", simu.api_url]
    )
    assert code == EXIT_OK
    assert len(_manifest(root)) == 6
    assert not (tmp_path / "ignored").exists()


def test_download_from_flags_only_and_resume(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Queries from --query flags; a second identical run requests nothing new (resume)."""
    keys = _species(simu, 2)
    root = tmp_path / "flags"
    args = ["download", "--api-url", simu.api_url, "-o", str(root), "--label", "speciesKey"]
    args += [f"--query=speciesKey={k}" for k in keys]
    args += ["--split-streams-by", "speciesKey", "--nb-samples", "10", "--seed", "4", "-q"]
    assert main(args) == EXIT_OK
    first = capsys.readouterr().out
    assert "10 images downloaded" in first or "images downloaded, " in first
    simu.hosts.reset_stats()
    assert main(args) == EXIT_OK
    second = capsys.readouterr().out
    assert sum(s.requests for s in simu.hosts.stats().values()) == 0
    assert "0 images downloaded" in second and "10 skipped" in second


def test_download_from_url_list(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--urls FILE downloads every URL of a text file, labelled with --label."""
    base = simu.hosts.base_urls[0]
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{base}/media/list/{i}.jpg\n" for i in range(5)))
    root = tmp_path / "from-urls"
    assert main(["download", "--urls", str(urls), "--label", "mine", "-o", str(root)]) == EXIT_OK
    rows = _manifest(root)
    assert len(rows) == 5 and all(r["status"] == "success" for r in rows)
    assert len(list((root / "mine").iterdir())) == 5


def test_rerun_leaves_a_404_alone_unless_retry_failed(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun does not request a URL that failed for good (404); --retry-failed does."""
    base = simu.hosts.base_urls[0]
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{base}/media/gone/0.jpg\n{base}/status/404/gone.jpg\n")
    args = ["download", "--urls", str(urls), "-o", str(tmp_path / "gone"), "--fail-threshold", "1"]
    assert main(args) == EXIT_OK
    simu.hosts.reset_stats()
    assert main(args) == EXIT_OK
    assert sum(s.requests for s in simu.hosts.stats().values()) == 0
    assert main([*args, "--retry-failed"]) == EXIT_OK
    assert simu.hosts.request_log() == [f"{base}/status/404/gone.jpg"]
    rows = _manifest(tmp_path / "gone")
    assert sorted((r["status"], r["http_status"]) for r in rows) == [
        ("failed", 404),
        ("success", 200),
    ]


def test_content_hashes_store_a_photo_once(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--content-hashes: the same bytes under two URLs are stored once, the report says so."""
    base = simu.hosts.base_urls[0]
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{base}/copy/k/a.jpg\n{base}/copy/k/b.jpg\n{base}/media/1/0.jpg\n")
    root = tmp_path / "once"
    args = ["download", "--urls", str(urls), "-o", str(root), "--fail-threshold", "1"]
    assert main([*args, "--content-hashes", "--near-duplicate-distance", "4"]) == EXIT_OK
    rows = _manifest(root)
    assert sorted(r["status"] for r in rows) == ["duplicate", "success", "success"]
    assert main(["report", str(root)]) == EXIT_OK
    assert "Duplicates (1 duplicate)" in capsys.readouterr().out


def test_download_from_a_local_dwca(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dwca PATH reads a real-format archive whose media point at the simulator's hosts."""
    pop = simu.population
    keys = _species(simu, 2)
    indices = pop.select({"speciesKey": [str(k) for k in keys], "mediaType": "StillImage"})[:40]
    archive = tmp_path / "small.zip"
    write_dwca(pop, indices, archive)
    root = tmp_path / "from-dwca"
    args = ["download", "--dwca", str(archive), "--label", "speciesKey", "-o", str(root)]
    assert main([*args, "--split-streams-by", "speciesKey", "--nb-samples", "8"]) == EXIT_OK
    rows = _manifest(root)
    assert len(rows) == 8
    assert {r["label"] for r in rows} == {str(k) for k in keys}
    hosts = {re.sub(r"/media/.*", "", r["url"]) for r in rows}
    assert hosts <= set(simu.hosts.base_urls)


def test_too_many_failures_exit_1_unless_threshold_allows(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All-404 URLs fail the run with exit 1 and one line naming the threshold; 1.0 tolerates it."""
    base = simu.hosts.base_urls[1]
    urls = tmp_path / "bad.txt"
    urls.write_text("".join(f"{base}/status/404/x{i}.jpg\n" for i in range(4)))
    args = ["download", "--urls", str(urls), "-o", str(tmp_path / "bad")]
    assert main(args) == EXIT_FAILURES
    err = capsys.readouterr().err
    assert "more than the threshold of 10.0%" in err and "Traceback" not in err
    assert main([*args, "--fail-threshold", "1"]) == EXIT_OK


def test_download_output_webdataset_writes_tar_shards(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--output webdataset --shard-size N: samples land in root/{split}-NNNNNN.tar shards of at
    most N samples (image + .json + .cls each), with classes.json; no class folders."""
    keys = _species(simu, 2)
    root = tmp_path / "wds"
    args = ["download", "--api-url", simu.api_url, "-o", str(root), "--label", "speciesKey"]
    args += [f"--query=speciesKey={k}" for k in keys] + ["--split-streams-by", "speciesKey"]
    args += ["--nb-samples", "12", "--seed", "2", "--splits", "train=0.5,test=0.5"]
    assert main([*args, "--output", "webdataset", "--shard-size", "4", "-q"]) == EXIT_OK
    ok = [r for r in _manifest(root) if r["status"] == "success"]
    assert len(ok) == 12
    shards = sorted(p.name for p in root.glob("*.tar"))
    assert shards and all(re.fullmatch(r"(train|test)-\d{6}\.tar", name) for name in shards)
    assert not [p for p in root.iterdir() if p.is_dir()]
    members: list[str] = []
    for shard in shards:
        with tarfile.open(root / shard) as tar:
            names = tar.getnames()
        assert len({n.split(".", 1)[0] for n in names}) <= 4  # --shard-size 4
        members += names
    assert sum(n.endswith(".cls") for n in members) == 12
    assert sum(n.endswith(".json") for n in members) == 12
    assert {r["path"].split("/", 1)[0] for r in ok} == set(shards)
    classes = json.loads((root / "classes.json").read_text(encoding="utf-8"))["classes"]
    assert [c["label"] for c in classes] == sorted(str(k) for k in keys)


def test_download_with_local_runner_and_two_workers(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--runner local --workers 2 --shard-size N: the job runs in shards (done markers at the
    root), every image is stored once in its class folder, and a rerun requests nothing."""
    keys = _species(simu, 2)
    root = tmp_path / "sharded"
    args = ["download", "--api-url", simu.api_url, "-o", str(root), "--label", "speciesKey"]
    args += [f"--query=speciesKey={k}" for k in keys] + ["--split-streams-by", "speciesKey"]
    args += ["--nb-samples", "10", "--seed", "3", "-q"]
    args += ["--runner", "local", "--workers", "2", "--shard-size", "4"]
    assert main(args) == EXIT_OK
    assert "10 images downloaded, 0 failed" in capsys.readouterr().out
    rows = _manifest(root)
    assert len(rows) == 10 and all(r["status"] == "success" for r in rows)
    assert len(list(root.glob(".gbif-dl-shard-*.done"))) == 3  # 10 records in shards of 4
    assert {r["path"].rsplit("/", 1)[0] for r in rows} == {str(k) for k in keys}
    assert sum(1 for p in root.glob("*/*") if p.is_file()) == 10
    assert (root / "classes.json").is_file()
    simu.hosts.reset_stats()
    assert main(args) == EXIT_OK
    assert "0 images downloaded" in capsys.readouterr().out
    assert sum(s.requests for s in simu.hosts.stats().values()) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--output", "zip"], "invalid choice: 'zip'"),
        (["--runner", "spark"], "invalid choice: 'spark'"),
        (["--workers", "two"], "invalid int value: 'two'"),
        (["--runner", "local", "--workers", "0"], "workers must be a positive number"),
        (["--workers", "2"], "workers needs a runner"),
        (["--shard-bytes", "1000"], "needs output = 'webdataset'"),
        (["--shard-size", "10"], "shard_size needs output = 'webdataset'"),
        (["--runner", "local", "--output", "webdataset"], "drop runner for WebDataset"),
        (["--dask-address", "tcp://127.0.0.1:9"], "dask_address needs runner = 'dask'"),
    ],
)
def test_bad_output_and_runner_flags_exit_2(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
    message: str,
) -> None:  # fmt: skip
    """Bad --output/--runner/--workers/--shard-* values exit 2 with one line; nothing is sent."""
    before = len(simu.api.requests)
    simu.hosts.reset_stats()
    args = ["download", "--api-url", simu.api_url, "-o", str(tmp_path / "x")]
    assert main([*args, "--query=speciesKey=1", *flags]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(simu.api.requests) == before
    assert sum(s.requests for s in simu.hosts.stats().values()) == 0
    assert not (tmp_path / "x").exists()


def test_old_output_folder_key_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A query file from before `output` meant the layout (output = "some/folder") exits 2
    with one line saying to use root."""
    config = tmp_path / "q.toml"
    config.write_text('output = "my/bees"\n[queries]\nspeciesKey = [1]\n')
    assert main(["download", str(config)]) == EXIT_USAGE
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "root = 'my/bees'" in lines[0]


# --- configuration errors -----------------------------------------------------------------------


def test_unknown_key_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt key exits 2 with one line suggesting the right key, and no traceback."""
    config = tmp_path / "q.toml"
    config.write_text("nb_sampels = 3\n[queries]\nspeciesKey = [1]\n")
    assert main(["download", str(config)]) == EXIT_USAGE
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1 and "did you mean 'nb_samples'" in lines[0]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--debug prints the traceback before the same one-line error."""
    config = tmp_path / "q.toml"
    config.write_text("nb_sampels = 3\n")
    assert main(["--debug", "download", str(config)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert len(_error_lines(err)) == 1


def test_nothing_to_download_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a query file or source flag the command says what to give."""
    assert main(["download"]) == EXIT_USAGE
    assert "give a query file, or --query" in capsys.readouterr().err


def test_gbif_error_exits_1(simu: Simulation, capsys: pytest.CaptureFixture[str]) -> None:
    """GBIF answering an error is not a usage error: exit 1 with one line, no traceback."""
    code = main(["dwca", "status", "0000001-000000000000001", "--api-url", simu.api_url])
    assert code == EXIT_FAILURES
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1 and "404" in lines[0] and "Traceback" not in err


# --- plan ---------------------------------------------------------------------------------------


def test_plan_shows_streams_and_downloads_nothing(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan prints each stream with its count and quota, totals and estimates; no image request."""
    keys = _species(simu, 3)
    pop = simu.population
    simu.hosts.reset_stats()
    args = ["plan", "--api-url", simu.api_url, "--split-streams-by", "speciesKey"]
    args += [f"--query=speciesKey={k}" for k in keys] + ["--nb-samples", "30"]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    assert sum(s.requests for s in simu.hosts.stats().values()) == 0
    assert not Path("data").exists() or not (Path("data") / "manifest.parquet").exists()
    for key in keys:
        count = len(pop.select({"speciesKey": [str(key)], "mediaType": "StillImage"}))
        line = next(line for line in out.splitlines() if f"speciesKey={key}" in line)
        assert line.split()[-2:] == [f"{count:,}", "10"]
    assert re.search(r"TOTAL\s+[\d,]+\s+30", out)
    assert "Estimate:" in out and "API requests" in out and "Nothing was downloaded" in out


def test_plan_resolves_scientific_names(
    simu: Simulation, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names in the query are resolved to backbone keys, shown, and counted like keys."""
    species = simu.population.species[:2]
    args = ["plan", "--api-url", simu.api_url, "--split-streams-by", "scientificName"]
    args += [f"--query=scientificName={s['scientificName']}" for s in species]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    for s in species:
        assert f"name {s['scientificName']!r} -> taxonKey {s['key']}" in out
        assert f"taxonKey={s['key']}" in out


def test_plan_of_an_unknown_name_is_a_usage_error(
    simu: Simulation, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name GBIF cannot match is reported before anything is downloaded."""
    args = ["plan", "--api-url", simu.api_url, "--query=scientificName=Nonexistia fictiva"]
    assert main(args) == EXIT_USAGE
    assert "Nonexistia fictiva" in _error_lines(capsys.readouterr().err)[0]


def test_plan_of_a_dwca_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan works on searches; for an archive it says to use `dwca status`."""
    config = tmp_path / "d.yaml"
    config.write_text("dwca: 0022697-200613084148143\n")
    assert main(["plan", str(config)]) == EXIT_USAGE
    assert "gbif-dl dwca status" in capsys.readouterr().err


# --- dwca request / status / fetch --------------------------------------------------------------


def test_dwca_request_status_fetch(
    simu: Simulation,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Credentials from the environment: request prints a key, status shows it, fetch a zip."""
    monkeypatch.setenv("GBIF_USER", "alice")
    monkeypatch.setenv("GBIF_PWD", "secret")
    key_arg = f"--query=speciesKey={_species(simu, 1)[0]}"
    assert main(["dwca", "request", key_arg, "--api-url", simu.api_url]) == EXIT_OK
    key = capsys.readouterr().out.strip()
    assert re.fullmatch(r"\d+-\d+", key)
    assert main(["dwca", "status", key, "--api-url", simu.api_url]) == EXIT_OK
    status = capsys.readouterr().out
    assert key in status and re.search(r"status\s+(PREPARING|RUNNING|SUCCEEDED)", status)
    out_dir = tmp_path / "dl"
    args = ["dwca", "fetch", key, "-o", str(out_dir), "--api-url", simu.api_url]
    assert main([*args, "--wait", "--poll-interval", "0.01"]) == EXIT_OK
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path == out_dir / f"{key}.zip"
    with zipfile.ZipFile(path) as archive:
        assert "occurrence.txt" in archive.namelist() and "meta.xml" in archive.namelist()


def test_dwca_fetch_of_an_unfinished_download_exits_1(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --wait, fetching a download that is still running says to wait; exit 1."""
    key = simu.api.add_download({"speciesKey": _species(simu, 1)}, status="RUNNING")
    code = main(["dwca", "fetch", key, "-o", str(tmp_path), "--api-url", simu.api_url])
    assert code == EXIT_FAILURES
    line = _error_lines(capsys.readouterr().err)[0]
    assert "RUNNING" in line and "--wait" in line


def test_dwca_request_without_credentials_exits_2(
    simu: Simulation, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing GBIF_USER/GBIF_PWD is a configuration error naming the variables; nothing sent."""
    before = len(simu.api.requests)
    assert main(["dwca", "request", "--query=speciesKey=1", "--api-url", simu.api_url]) == 2
    line = _error_lines(capsys.readouterr().err)[0]
    assert "GBIF_USER" in line and "GBIF_PWD" in line
    assert len(simu.api.requests) == before


# --- report and demo ----------------------------------------------------------------------------


def test_report_terminal_and_self_contained_html(
    simu: Simulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """report prints tables and writes ROOT/report.html with inline SVG and JPEG thumbnails only."""
    base = simu.hosts.base_urls[0]
    urls = tmp_path / "u.csv"
    urls.write_text(
        "url,label\n"
        + "".join(f"{base}/media/r/{i}.jpg,{'ab'[i % 2]}\n" for i in range(6))
        + f"{base}/status/404/gone.jpg,a\n"
    )
    root = tmp_path / "r"
    assert main(["download", "--urls", str(urls), "-o", str(root), "--fail-threshold", "1"]) == 0
    capsys.readouterr()
    assert main(["report", str(root)]) == EXIT_OK
    out = capsys.readouterr().out
    assert re.search(r"^\s+a\s+3\s+3\s+1$", out, re.M) and "http_status (HTTP 404)" in out
    page_path = root / "report.html"
    assert page_path.is_file() and f"HTML report: {page_path}" in out
    page = page_path.read_text(encoding="utf-8")
    assert "<svg" in page and '<img src="data:image/jpeg;base64,' in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page)


def test_report_of_a_folder_without_manifest_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that is not a dataset: one line saying to run `gbif-dl download` first."""
    assert main(["report", str(tmp_path)]) == EXIT_FAILURES
    line = _error_lines(capsys.readouterr().err)[0]
    assert "no manifest" in line and "gbif-dl download" in line


def test_demo_runs_offline_and_ends_with_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """demo: simulator -> balanced search -> download with splits -> report, all offline."""
    root = tmp_path / "demo"
    assert main(["demo", "--root", str(root), "--size", "600", "--nb-samples", "60", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"HTML report: {root / 'report.html'}" in out and (root / "report.html").is_file()
    rows = _manifest(root)
    # issue 18: spares replace the demo's failed images, so exactly 60 are stored (before:
    # 60 rows, successes and failures together)
    assert sum(r["status"] == "success" for r in rows) == 60
    assert len(rows) == 60 + sum(bool(r["spare"]) for r in rows)  # one row a primary + spares
    assert {r["subset"] for r in rows if r["status"] == "success"} <= {"train", "val", "test"}
    assert {d.name for d in root.iterdir() if d.is_dir()} <= {"train", "val", "test"}


def test_demo_rejects_bad_sizes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Out-of-range demo settings are usage errors."""
    assert main(["demo", "--root", str(tmp_path), "--size", "3"]) == EXIT_USAGE
    assert "--size" in capsys.readouterr().err


# --- progress -----------------------------------------------------------------------------------


def test_progress_becomes_log_lines_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """Off a terminal a step's progress is a periodic log line on stderr, not a bar."""
    restore = configure_logging(0)
    try:
        with Meter("images", total=3, unit="img", log_every_s=0.0) as meter:
            meter.update()
            meter.update(2)
    finally:
        restore()
    err = capsys.readouterr().err
    assert "gbif-dl: images: 1 of 3 img" in err and "gbif-dl: images: 3 of 3 img" in err
    assert "\r" not in err


def _gbif_dl_command() -> list[str]:
    exe = shutil.which("gbif-dl")
    return [exe] if exe else [sys.executable, "-m", "gbif_dl.cli"]


def test_simulate_serves_the_api_until_stopped(tmp_path: Path) -> None:
    """`gbif-dl simulate --port P` serves a searchable API on P and exits 0 on SIGTERM."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [*_gbif_dl_command(), "simulate", "--port", str(port), "--size", "300", "--hosts", "1"]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        page = None
        while page is None and time.monotonic() < deadline and process.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/v1/occurrence/search?limit=1"
                with urllib.request.urlopen(url, timeout=2) as response:
                    page = json.load(response)
            except OSError:
                time.sleep(0.1)
        assert page is not None and page["count"] == 300
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/v1" in err


def test_ctrl_c_stops_cleanly_and_keeps_finished_images(
    tmp_path: Path, interruptible_children: None
) -> None:
    """SIGINT during a download: exit 130, a one-line hint to resume, finished images kept."""
    slow = HostFaults(latency_s=0.3)
    with Simulation(seed=5, size=400, n_hosts=1, host_faults=slow, n_species=2) as simulation:
        root = tmp_path / "interrupted"
        cmd = [*_gbif_dl_command(), "download", "--api-url", simulation.api_url, "-o", str(root)]
        cmd += ["--query", "basisOfRecord=HUMAN_OBSERVATION", "--nb-samples", "100"]
        cmd += ["--concurrency", "2", "--label", "speciesKey", "--allow-private"]
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        journal = root / ".gbif-dl-journal.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if journal.is_file() and journal.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "resume" in err and "Traceback" not in err
    images = [p for p in root.rglob("*") if p.is_file() and p.parent != root]
    assert 2 <= len(images) < 100


def test_simulate_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    """`simulate` validates its port before starting anything."""
    assert main(["simulate", "--port", "70000"]) == EXIT_USAGE
    assert "--port" in capsys.readouterr().err


def test_host_faults_are_importable_for_the_demo() -> None:
    """The demo's fault settings are valid HostFaults (rates sum to at most 1)."""
    from gbif_dl.demo import demo_faults

    faults = demo_faults(4)
    assert all(isinstance(f, HostFaults) for f in faults.values()) and len(faults) == 4

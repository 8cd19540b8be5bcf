"""The code base stays lint-clean and type-checked: the same checks locally and in CI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_ruff_is_clean() -> None:
    """`ruff check` reports nothing on the package, tests and benchmarks."""
    if shutil.which("ruff") is None:
        pytest.fail("ruff is not installed; install the test extra: pip install -e '.[test]'")
    result = _run("ruff", "check", "src", "tests", "benchmarks", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    """mypy finds no type errors in src/gbif_dl."""
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_is_light() -> None:
    """`import gbif_dl` works and does not import the heavy optional extras."""
    code = (
        "import sys, gbif_dl; "
        "heavy = [m for m in ('torch', 'dask', 'datasets', 'webdataset') if m in sys.modules]; "
        "print(heavy)"
    )
    result = _run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_reliability_row_names_a_test_that_exists() -> None:
    """Each row of RELIABILITY.md's tables names at least one test, and every test it names is
    a test function in a file that the suite runs (so the row is shown in CI)."""
    import re

    text = (ROOT / "RELIABILITY.md").read_text(encoding="utf-8")
    rows: list[str] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("|") and line.rstrip().endswith("| test |"):
            in_table = True  # the header of a fault -> behaviour -> test table
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("| ---"):
            rows.append(line)
    assert len(rows) >= 30
    node = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(\[[^\]`]*\])?`")
    for row in rows:
        named = node.findall(row)
        assert named, f"a RELIABILITY.md row names no test: {row[:80]}"
        for path, function, _ in named:
            source = (ROOT / path).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {function}\(", source, re.M), f"{path}::{function}"

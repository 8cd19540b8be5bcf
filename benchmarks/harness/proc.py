"""Run one tool in its own process: wall time, peak RSS of its process tree, a hard timeout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
LAUNCH = Path(__file__).resolve().parent / "_launch.py"


@dataclass
class Run:
    """The outcome of one runner process."""

    tool: str
    result: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    log: str = ""
    cpu_s: float | None = None  # user + system CPU of the runner and its reaped children

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and bool(self.result)

    @property
    def elapsed_s(self) -> float:
        """Time of the work itself as the runner measured it (falls back to wall time)."""
        return float(self.result.get("elapsed_s", self.wall_s))

    def rate(self, key: str = "count") -> float | None:
        if not self.ok or not self.elapsed_s:
            return None
        return float(self.result.get(key, 0)) / self.elapsed_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "ok": self.ok,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "wall_s": round(self.wall_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 3),
            "result": self.result,
            "log_tail": self.log[-800:] if not self.ok else "",
        }


def clean_env(ours: bool) -> dict[str, str]:
    """The environment for a runner: no proxies; ours also gets the repository's ``src``.

    Every runner may fetch from loopback (nginx, the simulated hosts): gbif-dl's address guard
    refuses private and loopback addresses unless ``GBIF_DL_ALLOW_PRIVATE=1``. Every tool runs
    with its bytecode cached, as an installed package does (``PYTHONDONTWRITEBYTECODE`` would
    make each run compile gbif-dl's sources again: about 0.3 s of a 1,000-image run).
    """
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["GBIF_DL_ALLOW_PRIVATE"] = "1"
    if ours:
        env["PYTHONPATH"] = str(REPO / "src")
    return env


def compile_bytecode(python: str | Path, folder: Path) -> None:
    """Compile ``folder``'s Python files with ``python`` (as ``pip install`` does for a
    package), so that no measured run pays for compiling them."""
    subprocess.run([str(python), "-m", "compileall", "-q", str(folder)], check=False)


def run_tool(
    tool: str,
    python: str | Path,
    script: Path,
    spec: dict[str, Any],
    *,
    scratch: Path,
    timeout_s: float,
    ours: bool = False,
) -> Run:
    """Run ``python script SPEC RESULT`` in a new session; kill the whole session on timeout.

    Peak RSS comes from ``os.wait4`` on the runner in a small launcher process (see
    ``_launch.py``): the largest of the runner and its reaped descendants (img2dataset's worker
    processes included).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    tag = f"{tool}-{time.monotonic_ns()}".replace(" ", "_").replace("/", "_")
    spec_path = scratch / f"{tag}.spec.json"
    out_path = scratch / f"{tag}.result.json"
    log_path = scratch / f"{tag}.log"
    spec_path.write_text(json.dumps(spec))
    run = Run(tool=tool)
    start = time.monotonic()
    rss_path = scratch / f"{tag}.maxrss"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                str(LAUNCH),
                str(rss_path),
                "--",
                str(python),
                str(script),
                str(spec_path),
                str(out_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=clean_env(ours),
            cwd=str(scratch),
        )
    status = 0
    delay = 0.002
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout_s:
            run.timed_out = True
            _kill_group(proc.pid)
            _, status, _ = os.wait4(proc.pid, 0)
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    run.wall_s = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    run.returncode = proc.returncode
    _kill_group(proc.pid)  # leftovers (worker processes) of a finished runner
    if rss_path.exists():
        run.peak_rss_mb = int(rss_path.read_text() or 0) / 1024
    cpu_path = rss_path.with_name(rss_path.name + ".cpu")
    if cpu_path.exists():
        run.cpu_s = float(cpu_path.read_text() or 0)
    if out_path.exists() and not run.timed_out:
        run.result = json.loads(out_path.read_text())
    run.log = log_path.read_text(errors="replace")[-4000:]
    return run


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


OURS_PYTHON = sys.executable

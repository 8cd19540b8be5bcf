"""The peers' virtual environments under ``benchmarks/.venvs/``, created on first use.

Each peer gets ``python -m venv`` and ``pip install`` of a pinned requirement by name. A marker
file records the requirement so a changed pin rebuilds the environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.proc import compile_bytecode

VENVS = Path(__file__).resolve().parents[1] / ".venvs"


@dataclass(frozen=True)
class Peer:
    """A peer tool installed in its own virtual environment."""

    name: str  # folder under .venvs/
    requirements: tuple[str, ...]
    distributions: tuple[str, ...]  # whose versions to report

    @property
    def path(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


GBIF_DL_011 = Peer(
    "gbif-dl-0.1.1", ("gbif-dl==0.1.1",), ("gbif-dl", "pygbif", "python-dwca-reader", "aiohttp")
)
IMG2DATASET = Peer("img2dataset", ("img2dataset~=1.47.0",), ("img2dataset", "aiohttp", "requests"))
PEERS = {p.name: p for p in (GBIF_DL_011, IMG2DATASET)}


def ensure(peer: Peer, log=print) -> Path:
    """Create ``peer``'s venv if missing or stale; return its python."""
    marker = peer.path / ".bench-requirements.json"
    wanted = json.dumps(sorted(peer.requirements))
    if peer.python.exists() and marker.exists() and marker.read_text() == wanted:
        compile_bytecode(peer.python, peer.path)
        return peer.python
    log(f"creating venv {peer.path} with {' '.join(peer.requirements)} (first use only)")
    if peer.path.exists():
        shutil.rmtree(peer.path)
    subprocess.run([sys.executable, "-m", "venv", str(peer.path)], check=True)
    subprocess.run(
        [
            str(peer.python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            *peer.requirements,
        ],
        check=True,
    )
    marker.write_text(wanted)
    compile_bytecode(peer.python, peer.path)
    return peer.python


def versions(peer: Peer) -> dict[str, str]:
    """Installed versions of the peer's distributions (read from its venv)."""
    if not peer.python.exists():
        return {}
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    res = subprocess.run(
        [str(peer.python), "-c", code, *peer.distributions], capture_output=True, text=True
    )
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        return {}

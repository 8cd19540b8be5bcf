"""SIGKILL during a quota'd download, then a rerun: exactly the quota per class, no over-fill.

The child downloads the issue-18 call's items (3 species, 100 each, 5% of URLs answering 404
for good) with spares; it is killed mid-run, and the rerun of the same items ends with exactly
100 images per class, every stored file listed once in the manifest and no orphan file.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from reliability_helpers import manifest_rows, stored_files

import gbif_dl
from gbif_dl.io import download
from gbif_dl.sampling.spares import with_spares
from gbif_dl.testing.mediahost import HostFaults
from gbif_dl.testing.simulation import Simulation

HERE = Path(__file__).parent


def _stored(root: Path) -> int:
    """Images stored so far (journaled or not)."""
    if not root.exists():
        return 0
    return sum(1 for p in root.rglob("*") if p.parent != root and p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["none", "local"])
def test_sigkill_then_rerun_gives_exactly_the_quota(tmp_path: Path, runner: str) -> None:
    root = tmp_path / "root"
    faults = HostFaults(not_found_rate=0.05, latency_s=0.02)
    with Simulation(seed=0, size=3000, n_hosts=2, n_species=3, host_faults=faults) as simu:
        keys = [int(s["key"]) for s in simu.population.species[:3]]
        records = list(  # the sample, then its spares, as the downloader takes them
            with_spares(
                gbif_dl.api.generate_urls(
                    queries={"speciesKey": keys},
                    label="speciesKey",
                    nb_samples=300,
                    split_streams_by="speciesKey",
                    seed=7,
                    api_url=simu.api_url,
                )
            )
        )
        records_file = tmp_path / "records.json"
        records_file.write_text(json.dumps(records))
        child = subprocess.Popen(
            [sys.executable, str(HERE / "spares_child.py"), str(records_file), str(root), runner],
            stderr=subprocess.PIPE,
            env={**os.environ, "GBIF_DL_ALLOW_PRIVATE": "1"},  # this test's media hosts
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and child.poll() is None:
                if _stored(root) >= 120:
                    break
                time.sleep(0.01)
            assert child.poll() is None, "the child finished before it could be killed"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            assert child.stderr is not None
            child.stderr.close()
        extra = {} if runner == "none" else {"runner": runner, "shard_size": 40}
        stats = download(records, root=root, progress=False, **extra)
    files = [p for p in stored_files(root) if p.parent != root]  # the root holds state files
    for path in files:  # no partial file under a final name
        with Image.open(path) as image:
            image.load()
    assert collections.Counter(p.parent.name for p in files) == {str(k): 100 for k in keys}
    rows = manifest_rows(root)
    stored = [r for r in rows if r["status"] == "success"]
    assert collections.Counter(r["stream"] for r in stored) == {
        f"speciesKey={k}": 100 for k in keys
    }
    assert {r["path"] for r in stored} == {str(p.relative_to(root)) for p in files}
    assert {s["delivered"] for s in stats.streams.values()} == {100}

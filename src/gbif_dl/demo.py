"""The offline demo: the whole pipeline against the built-in simulator, in seconds.

A simulated GBIF (a few thousand occurrences of a handful of species) and a few image hosts run
on loopback, with a little latency and a few faults (a 404 here, a 503 or a 429 there, an HTML
page instead of an image, a photo shared by two occurrences, a publisher's placeholder) so that
the report has something to say. The demo then does what a user
does against the real GBIF: search, balance the species, download with train/val/test splits,
and write the report.

The same demo gives the same files on every run: its media URLs carry fixed host names
(``media-N.gbif-dl-demo.invalid``, reached through a loopback proxy, see
:mod:`gbif_dl.testing.naming`) rather than the simulator's ports, which change from run to run.
Run again into the same folder, it resumes: nothing already downloaded is fetched again. By
default the dataset goes to the user's data folder (:func:`default_demo_root`), not the current
directory (which may be a source checkout).

Example:
    >>> import tempfile
    >>> result = run_demo(tempfile.mkdtemp(), size=600, nb_samples=40, progress=False)
    >>> result.summary.n_success > 0 and result.report_path.name == "report.html"
    True
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbif_dl.config import DEFAULT_SPLITS
from gbif_dl.errors import ConfigError

__all__ = ["DEMO_SPECIES", "DemoResult", "default_demo_root", "demo_faults", "run_demo"]

logger = logging.getLogger(__name__)

#: How many of the simulated species the demo downloads.
DEMO_SPECIES = 6


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` made.

    Attributes:
        root: the dataset folder.
        report_path: the HTML report (``root/report.html``).
        stats: what :func:`gbif_dl.io.download` returned.
        summary: the report's numbers (:class:`gbif_dl.report.DatasetSummary`).
        seconds: wall time of the whole demo.
        api_url: where the simulated GBIF API was served (gone once the demo returns).
        query: the occurrence search query the demo ran.
        description: the query and sampling options in one line.

    Example:
        >>> DemoResult.__dataclass_fields__["root"].type
        'Path'
    """

    root: Path
    report_path: Path
    stats: Any
    summary: Any
    seconds: float
    api_url: str
    query: dict[str, Any]
    description: str


#: Share of occurrence pairs showing one photo (same bytes, resized or re-encoded), and of
#: occurrences showing a placeholder, in the demo's simulated GBIF.
DEMO_PHOTO_COPIES = 0.2
DEMO_PLACEHOLDERS = 0.02


def default_demo_root() -> Path:
    """Where ``gbif-dl demo`` writes by default: ``gbif-dl/demo`` in the user's data folder.

    ``$XDG_DATA_HOME/gbif-dl/demo`` (default ``~/.local/share/gbif-dl/demo``) on Linux,
    ``~/Library/Application Support/gbif-dl/demo`` on macOS, ``%LOCALAPPDATA%\\gbif-dl\\demo``
    on Windows. Not the current directory: run from a source checkout, the demo would leave an
    untracked folder in it.

    Example:
        >>> default_demo_root().parts[-2:]
        ('gbif-dl', 'demo')
    """
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "gbif-dl" / "demo"


def demo_faults(n_hosts: int, seed: int = 0) -> dict[int, Any]:
    """Per-host faults that make the report interesting without slowing the demo down.

    Host 0 is clean and fast; the others add latency, transient errors and throttling (retried
    and recovered), and a few permanent failures (404, HTML instead of an image).

    Example:
        >>> sorted(demo_faults(3))
        [0, 1, 2]
    """
    from gbif_dl.testing import HostFaults

    faults: dict[int, Any] = {0: HostFaults(latency_s=0.0, not_found_rate=0.01, seed=seed)}
    for i in range(1, n_hosts):
        faults[i] = HostFaults(
            latency_s=0.01 * (i + 1),
            error_rate=0.03,
            throttle_rate=0.02,
            retry_after_s=0.2,
            not_found_rate=0.02 * i,
            html_rate=0.01,
            seed=seed + i,
        )
    return faults


def demo_simulation(*, seed: int, size: int, n_hosts: int) -> Any:
    """The demo's simulated GBIF (not started): its faults, fixed host names, shared photos
    and placeholders.

    Example:
        >>> demo_simulation(seed=0, size=100, n_hosts=2).size
        100
    """
    from gbif_dl.testing import Simulation
    from gbif_dl.testing.naming import host_names

    return Simulation(
        seed=seed,
        size=size,
        n_hosts=n_hosts,
        host_faults=demo_faults(n_hosts, seed),
        n_species=max(DEMO_SPECIES + 2, 8),
        media_host_names=host_names(n_hosts),
        photo_copies=DEMO_PHOTO_COPIES,
        placeholder_share=DEMO_PLACEHOLDERS,
    )


def _check_demo_args(*, size: int, nb_samples: int, n_hosts: int) -> None:
    """Raise :class:`ConfigError` for a size, sample count or host count out of range."""
    if size < 50:
        raise ConfigError(f"--size must be at least 50 simulated occurrences, got {size}")
    if nb_samples < 1:
        raise ConfigError(f"--nb-samples must be at least 1, got {nb_samples}")
    if not 1 <= n_hosts <= 8:
        raise ConfigError(f"--hosts must be between 1 and 8, got {n_hosts}")


def _describe_demo(
    species: list[Any],
    *,
    nb_samples: int,
    seed: int,
    splits: Mapping[str, float] | None,
    size: int,
) -> str:
    """The demo's query and sampling options in one line (:attr:`DemoResult.description`)."""
    return (
        f"speciesKey in {species}, label species, balanced over speciesKey, "
        f"{nb_samples} images, seed {seed}, splits "
        + ",".join(f"{k}={v:g}" for k, v in dict(splits or DEFAULT_SPLITS).items())
        + f" (simulated GBIF of {size} occurrences)"
    )


def run_demo(
    root: str | os.PathLike[str] | None = None,
    *,
    size: int = 3000,
    nb_samples: int = 400,
    n_hosts: int = 3,
    seed: int = 0,
    splits: Mapping[str, float] | None = None,
    thumbnails: int = 48,
    progress: bool | None = None,
) -> DemoResult:
    """Simulate GBIF, then query -> balance -> download with splits -> report, all offline.

    Args:
        root: output folder (created; an earlier demo there is resumed, not repeated); default
            :func:`default_demo_root`.
        size: simulated occurrences.
        nb_samples: images to take, balanced over the species.
        n_hosts: simulated image hosts (1 to 8).
        seed: seed of the simulated world, of sampling and of the splits.
        splits: split fractions (default train 0.8, val 0.1, test 0.1).
        thumbnails: sample images embedded in the HTML report.
        progress: ``None`` = progress bars on a terminal; ``False`` = none.

    Raises:
        ConfigError: a size, sample count or host count out of range.

    Example:
        >>> result = run_demo("demo-data", size=600, nb_samples=40)  # doctest: +SKIP
        >>> result.description  # doctest: +SKIP
        'speciesKey in [...], label species, balanced over speciesKey, 40 images, seed 0, ...'
    """
    _check_demo_args(size=size, nb_samples=nb_samples, n_hosts=n_hosts)
    from gbif_dl import api, io, report

    started = time.monotonic()
    root_path = Path(root) if root is not None else default_demo_root()
    with demo_simulation(seed=seed, size=size, n_hosts=n_hosts) as simulation:
        species = [s["key"] for s in simulation.population.species[:DEMO_SPECIES]]
        query: dict[str, Any] = {"speciesKey": species}
        description = _describe_demo(
            species, nb_samples=nb_samples, seed=seed, splits=splits, size=size
        )
        logger.info("simulated GBIF at %s; query: %s", simulation.api_url, description)
        records = api.generate_urls(
            query,
            label="species",
            split_streams_by="speciesKey",
            nb_samples=nb_samples,
            seed=seed,
            api_url=simulation.api_url,
        )
        stats = io.download(
            records,
            root=root_path,
            splits=dict(splits or DEFAULT_SPLITS),
            seed=seed,
            progress=progress,
            proxy=simulation.proxy_url,
            content_hashes=True,  # one photo once, in one split; placeholders out
        )
        api_url = simulation.api_url
    summary = report.summarize(root_path, thumbnails=thumbnails)
    report_path = report.write_html(summary)
    return DemoResult(
        root=root_path,
        report_path=report_path,
        stats=stats,
        summary=summary,
        seconds=time.monotonic() - started,
        api_url=api_url,
        query=query,
        description=description,
    )

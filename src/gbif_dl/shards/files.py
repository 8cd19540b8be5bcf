"""The files of a sharded job at the output root: records, manifest part, journal, lock, marker.

::

    root/.gbif-dl-shard-000003.records.jsonl    the shard's records (one JSON object a line)
    root/.gbif-dl-shard-000003.manifest.parquet its manifest part (written by run_shard)
    root/.gbif-dl-shard-000003.journal.jsonl    its progress journal (merged into the part)
    root/.gbif-dl-shard-000003.lock             held while a process runs it
    root/.gbif-dl-shard-000003.done             written last and atomically: the shard is done

Every file is a *file* at the root, never a folder, so ImageFolder loaders see only class folders.

Example:
    >>> shard_files(3).done
    '.gbif-dl-shard-000003.done'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError, OutputError
from gbif_dl.writers._atomic import atomic_write_bytes

__all__ = [
    "SHARD_PREFIX",
    "ShardFiles",
    "marker_has_failures",
    "read_marker",
    "read_shard_records",
    "shard_files",
    "shard_ids_on_disk",
    "write_marker",
]

#: Every shard file at the root starts with this.
SHARD_PREFIX = ".gbif-dl-shard-"
_SHARD_FILE = re.compile(r"^\.gbif-dl-shard-(\d{6,})\.records\.jsonl$")


@dataclass(frozen=True)
class ShardFiles:
    """The names (relative to the root) of one shard's files.

    Example:
        >>> shard_files(3).manifest
        '.gbif-dl-shard-000003.manifest.parquet'
    """

    records: str
    manifest: str
    journal: str
    lock: str
    done: str


def shard_files(shard_id: int) -> ShardFiles:
    """The file names of shard ``shard_id``.

    Example:
        >>> shard_files(12).records
        '.gbif-dl-shard-000012.records.jsonl'
    """
    if not isinstance(shard_id, int) or shard_id < 0:
        raise ConfigError(f"a shard id is an integer >= 0; got {shard_id!r}")
    stem = f"{SHARD_PREFIX}{shard_id:06d}"
    return ShardFiles(
        records=f"{stem}.records.jsonl",
        manifest=f"{stem}.manifest.parquet",
        journal=f"{stem}.journal.jsonl",
        lock=f"{stem}.lock",
        done=f"{stem}.done",
    )


def read_shard_records(root: str | os.PathLike[str], shard_id: int) -> list[dict[str, Any]]:
    """The records of shard ``shard_id`` as :func:`gbif_dl.shards.plan.plan_shards` wrote them.

    Raises:
        OutputError: the shard has no records file (it was never planned in this root).

    Example:
        >>> import tempfile
        >>> from gbif_dl.shards.plan import plan_shards
        >>> root = tempfile.mkdtemp()
        >>> _ = plan_shards([{"url": "http://h.example/a.jpg", "label": "x"}], root)
        >>> read_shard_records(root, 0)[0]["label"]
        'x'
    """
    path = Path(os.fspath(root)) / shard_files(shard_id).records
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        raise OutputError(
            f"shard {shard_id} has no records file {str(path)!r}; plan the job with "
            "gbif_dl.shards.plan.plan_shards (or gbif_dl.runners.run) before running its shards"
        ) from exc
    with handle:
        return [json.loads(line) for line in handle if line.strip()]


def shard_ids_on_disk(root: str | os.PathLike[str]) -> list[int]:
    """The ids of every shard with a records file at ``root`` (this plan's and older ones).

    Example:
        >>> import tempfile
        >>> shard_ids_on_disk(tempfile.mkdtemp())
        []
    """
    ids = []
    for name in os.listdir(os.fspath(root)):
        match = _SHARD_FILE.match(name)
        if match:
            ids.append(int(match.group(1)))
    return sorted(ids)


def write_marker(root: Path, shard_id: int, summary: Mapping[str, Any]) -> None:
    """Write shard ``shard_id``'s done marker (atomically; call it last).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> write_marker(root, 0, {"records": 2})
        >>> read_marker(root, 0)["records"]
        2
    """
    body = json.dumps({"shard": shard_id, **summary}, sort_keys=True).encode("utf-8")
    atomic_write_bytes(root / shard_files(shard_id).done, body)


def read_marker(root: Path, shard_id: int) -> dict[str, Any] | None:
    """The done marker of shard ``shard_id`` (a dict), or None when the shard is not done.

    Example:
        >>> import tempfile
        >>> read_marker(Path(tempfile.mkdtemp()), 0) is None
        True
    """
    try:
        marker = json.loads((root / shard_files(shard_id).done).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}


def marker_has_failures(done: Path) -> bool:
    """True when the done marker at ``done`` counts failed items.

    Example:
        >>> import tempfile
        >>> marker_has_failures(Path(tempfile.mkdtemp()) / "missing.done")
        False
    """
    try:
        marker = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(marker, dict) and marker.get("failed"))

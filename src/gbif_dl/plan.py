"""Cut a download into shards: the unit of work, of resume and of distribution.

:func:`plan_shards` reads the records once (after sampling), assigns splits, drops repeated URLs
and writes each run of ``size`` records to its own file at the output root::

    root/.gbif-dl-shard-000003.records.jsonl    the shard's records (one JSON object a line)
    root/.gbif-dl-shard-000003.manifest.parquet its manifest part (written by run_shard)
    root/.gbif-dl-shard-000003.journal.jsonl    its progress journal (merged into the part)
    root/.gbif-dl-shard-000003.lock             held while a process runs it
    root/.gbif-dl-shard-000003.done             written last and atomically: the shard is done

Every file is a *file* at the root, never a folder, so ImageFolder loaders see only class folders.
The same input gives the same shards, so a rerun finds the done markers of the shards that
finished and runs only the others. A shard whose records changed loses its marker (and runs
again, skipping what its manifest part says is stored); so does a done shard with failed items,
so that a rerun retries them as a plain :func:`gbif_dl.io.download` rerun does.

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> urls = [f"http://h{i % 2}.example/{i}.jpg" for i in range(5)] + ["http://h0.example/0.jpg"]
    >>> plan = plan_shards(urls, root, size=2)
    >>> plan.shard_ids, plan.records, plan.duplicates
    ((0, 1, 2), 5, 1)
    >>> [r["url"] for r in read_shard_records(root, 2)]
    ['http://h0.example/4.jpg']
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from gbif_dl.errors import ConfigError, OutputError
from gbif_dl.records import url_basename
from gbif_dl.writers._atomic import atomic_write_bytes, temp_path

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "SHARD_PREFIX",
    "ShardFiles",
    "ShardPlan",
    "plan_shards",
    "read_marker",
    "read_shard_records",
    "shard_files",
    "shard_ids_on_disk",
    "write_marker",
]

logger = logging.getLogger(__name__)

#: Records per shard unless told otherwise.
DEFAULT_SHARD_SIZE = 10_000
#: Every shard file at the root starts with this.
SHARD_PREFIX = ".gbif-dl-shard-"
_SHARD_FILE = re.compile(r"^\.gbif-dl-shard-(\d{6,})\.records\.jsonl$")


@dataclasses.dataclass(frozen=True)
class ShardFiles:
    """The names (relative to the root) of one shard's files.

    Example:
        >>> shard_files(3).done
        '.gbif-dl-shard-000003.done'
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


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """The shards of one job.

    Attributes:
        root: the output root.
        shard_ids: the shards of this job, in order.
        records: records written to the shards (repeated URLs counted once).
        duplicates: records dropped because their URL came earlier in the input.
        done: shards that were already done (their marker exists) when planning finished.

    Example:
        >>> ShardPlan(root="data", shard_ids=(0, 1), records=15_000).shard_ids
        (0, 1)
    """

    root: str
    shard_ids: tuple[int, ...]
    records: int
    duplicates: int = 0
    done: tuple[int, ...] = ()


def _as_record(item: Any) -> dict[str, Any]:
    """A dict record for any input item; what cannot be fetched keeps ``url`` None."""
    if isinstance(item, str):
        return {"url": item.strip(), "label": None}
    if isinstance(item, Mapping):
        record = dict(item)
        url = record.get("url")
        if isinstance(url, str):
            record["url"] = url.strip()
        return record
    return {"url": None, "label": None, "invalid_item": type(item).__name__}


def _url_key(url: str) -> bytes:
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=12).digest()


class _ShardOut:
    """Writes one shard's records to a temp file, hashing them; installs it on close."""

    def __init__(self, root: Path, shard_id: int) -> None:
        self.root = root
        self.shard_id = shard_id
        self.files = shard_files(shard_id)
        self.final = root / self.files.records
        self.tmp = temp_path(self.final)
        self.handle: IO[bytes] = open(self.tmp, "xb")  # noqa: SIM115 - closed in finish()
        self.digest = hashlib.sha256()
        self.count = 0

    def add(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        self.handle.write(line)
        self.digest.update(line)
        self.count += 1

    def finish(self, *, retry_failed: bool, overwrite: bool) -> bool:
        """Install the file; drop a marker that no longer holds. True if the shard is done."""
        self.handle.close()
        done = self.root / self.files.done
        unchanged = self.final.is_file() and _file_sha256(self.final) == self.digest.hexdigest()
        if unchanged:
            os.unlink(self.tmp)  # keep the old file as it is
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(done)  # marker first: a crash never leaves a marker over new records
            os.replace(self.tmp, self.final)
        if overwrite or (retry_failed and _marker_has_failures(done)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(done)
        return done.exists()

    def discard(self) -> None:
        self.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _marker_has_failures(done: Path) -> bool:
    try:
        marker = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(marker, dict) and marker.get("failed"))


def plan_shards(
    items: Iterable[Any],
    root: str | os.PathLike[str],
    *,
    size: int = DEFAULT_SHARD_SIZE,
    assign: Callable[[Mapping[str, Any]], str] | None = None,
    retry_failed: bool = True,
    overwrite: bool = False,
) -> ShardPlan:
    """Write ``items`` into shard files of ``size`` records at ``root``; return the plan.

    Args:
        items: records (dicts with ``url``) or URL strings, already sampled; read once.
        root: the output root (must exist).
        size: records per shard.
        assign: ``f(record) -> subset name`` for records without a ``subset`` (the split
            assignment of :func:`gbif_dl.io.download`), applied here so shards are deterministic.
        retry_failed: drop the done marker of shards that finished with failed items, so they
            run again and retry those items (what a rerun of a plain download does).
        overwrite: drop every done marker (everything is fetched again).

    Returns:
        :class:`ShardPlan`. A URL seen earlier in the input is dropped (``duplicates``).

    Example:
        >>> import tempfile
        >>> plan_shards(["http://h.example/a.jpg"], tempfile.mkdtemp()).shard_ids
        (0,)
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"shard_size must be a positive integer; got {size!r}")
    root_path = Path(os.fspath(root))
    if not root_path.is_dir():
        raise OutputError(f"the output root {str(root_path)!r} does not exist; create it first")
    seen: set[bytes] = set()
    ids: list[int] = []
    done: list[int] = []
    records = duplicates = 0
    out: _ShardOut | None = None
    try:
        for item in items:
            record = _as_record(item)
            url = record.get("url")
            if isinstance(url, str) and url:
                key = _url_key(url)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                if not record.get("basename"):
                    record["basename"] = url_basename(url)
                if record.get("subset") in (None, "") and assign is not None:
                    record["subset"] = assign(record)
            if out is None:
                out = _ShardOut(root_path, len(ids))
            out.add(record)
            records += 1
            if out.count >= size:
                ids.append(out.shard_id)
                if out.finish(retry_failed=retry_failed, overwrite=overwrite):
                    done.append(out.shard_id)
                out = None
        if out is not None:
            ids.append(out.shard_id)
            if out.finish(retry_failed=retry_failed, overwrite=overwrite):
                done.append(out.shard_id)
            out = None
    finally:
        if out is not None:
            out.discard()
    logger.info(
        "planned %d shards of up to %d records (%d records, %d repeated URLs dropped, "
        "%d shards already done)",
        len(ids),
        size,
        records,
        duplicates,
        len(done),
    )
    return ShardPlan(
        root=str(root_path),
        shard_ids=tuple(ids),
        records=records,
        duplicates=duplicates,
        done=tuple(done),
    )


def read_shard_records(root: str | os.PathLike[str], shard_id: int) -> list[dict[str, Any]]:
    """The records of shard ``shard_id`` as :func:`plan_shards` wrote them.

    Raises:
        OutputError: the shard has no records file (it was never planned in this root).

    Example:
        >>> import tempfile
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
            "gbif_dl.plan.plan_shards (or gbif_dl.runners.run) before running its shards"
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
    """Write shard ``shard_id``'s done marker (atomically; call it last)."""
    body = json.dumps({"shard": shard_id, **summary}, sort_keys=True).encode("utf-8")
    atomic_write_bytes(root / shard_files(shard_id).done, body)


def read_marker(root: Path, shard_id: int) -> dict[str, Any] | None:
    """The done marker of shard ``shard_id`` (a dict), or None when the shard is not done."""
    try:
        marker = json.loads((root / shard_files(shard_id).done).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    return marker if isinstance(marker, dict) else {}

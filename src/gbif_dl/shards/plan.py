"""Cut a download into shards: the unit of work, of resume and of distribution.

:func:`plan_shards` reads the records once (after sampling), normalises each one and assigns
its split with the streaming run's own rule (:func:`gbif_dl.pipeline.inputs.normalize_item`),
drops repeated URLs and writes each run of ``size`` records to its own file at the output root
(:mod:`gbif_dl.shards.files`). The same input gives the same shards, so a rerun finds the done
markers of the shards that finished and runs only the others. A shard whose records changed
loses its marker (and runs again, skipping what its manifest part says is stored); so does a
done shard with failed items, so that a rerun retries them as a streaming rerun does.

Example:
    >>> import tempfile
    >>> from gbif_dl.shards.files import read_shard_records
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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from gbif_dl.errors import ConfigError, OutputError
from gbif_dl.fetch.result import Reason
from gbif_dl.pipeline.inputs import INVALID_ITEM, Assign, normalize_item
from gbif_dl.records import url_digest
from gbif_dl.shards.files import marker_has_failures, shard_files
from gbif_dl.writers._atomic import create_temp

__all__ = ["DEFAULT_SHARD_SIZE", "ShardPlan", "plan_shards"]

logger = logging.getLogger(__name__)

#: Records per shard unless told otherwise.
DEFAULT_SHARD_SIZE = 10_000


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


class _ShardOut:
    """Writes one shard's records to a temp file, hashing them; installs it on close."""

    def __init__(self, root: Path, shard_id: int) -> None:
        self.root = root
        self.shard_id = shard_id
        self.files = shard_files(shard_id)
        self.final = root / self.files.records
        self.tmp, fd = create_temp(self.final)  # exclusive: never through a link
        self.handle: IO[bytes] = open(fd, "wb")  # noqa: SIM115 - closed in finish()
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
        if overwrite or (retry_failed and marker_has_failures(done)):
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


class _Planner:
    """Fills shard files in order; one open at a time."""

    def __init__(
        self, root: Path, size: int, *, retry_failed: bool, overwrite: bool, first_id: int = 0
    ) -> None:
        self.root = root
        self.first_id = first_id
        self.size = size
        self.retry_failed = retry_failed
        self.overwrite = overwrite
        self.seen: set[int] = set()
        self.ids: list[int] = []
        self.done: list[int] = []
        self.records = self.duplicates = 0
        self.out: _ShardOut | None = None

    def add(self, item: Any, assign: Assign | None) -> None:
        record, problem, detail = normalize_item(item, assign)
        if problem is None:
            key = url_digest(record["url"])
            if key in self.seen:
                self.duplicates += 1
                return
            self.seen.add(key)
        elif problem is Reason.INVALID:  # the shard's run reports it as the streaming run does
            record[INVALID_ITEM] = detail
        if self.out is None:
            self.out = _ShardOut(self.root, self.first_id + len(self.ids))
        self.out.add(record)
        self.records += 1
        if self.out.count >= self.size:
            self.close()

    def close(self) -> None:
        out, self.out = self.out, None
        if out is not None:
            self.ids.append(out.shard_id)
            if out.finish(retry_failed=self.retry_failed, overwrite=self.overwrite):
                self.done.append(out.shard_id)

    def discard(self) -> None:
        if self.out is not None:
            self.out.discard()


def plan_shards(
    items: Iterable[Any],
    root: str | os.PathLike[str],
    *,
    size: int = DEFAULT_SHARD_SIZE,
    assign: Assign | None = None,
    retry_failed: bool = True,
    overwrite: bool = False,
    first_id: int = 0,
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
        first_id: the id of the first shard (the spare rounds of a job number theirs after
            the job's shards, :mod:`gbif_dl.shards.spares`).

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
    planner = _Planner(
        root_path, size, retry_failed=retry_failed, overwrite=overwrite, first_id=first_id
    )
    try:
        for item in items:
            planner.add(item, assign)
        planner.close()
    finally:
        planner.discard()
    logger.info(
        "planned %d shards of up to %d records (%d records, %d repeated URLs dropped, "
        "%d shards already done)",
        len(planner.ids),
        size,
        planner.records,
        planner.duplicates,
        len(planner.done),
    )
    return ShardPlan(
        root=str(root_path),
        shard_ids=tuple(planner.ids),
        records=planner.records,
        duplicates=planner.duplicates,
        done=tuple(planner.done),
    )

"""Cut a download into shards: the unit of work, of resume and of distribution.

:func:`plan_shards` reads the records once (after sampling), normalises each one and assigns
its split with the streaming run's own rule (:func:`gbif_dl.pipeline.inputs.normalize_item`),
drops repeated URLs and writes each run of ``size`` records to its own file at the output root
(:mod:`gbif_dl.shards.files`). The same input gives the same shards, so a rerun finds the done
markers of the shards that finished and runs only the others. A shard whose records changed
loses its marker (and runs again, skipping what its manifest part says is stored); so does a
done shard with failed items, so that a rerun retries them as a streaming rerun does.

With ``by_host=True`` (the runners ask for it when more shards run at once than a host may see
requests, see :mod:`gbif_dl.runners.gate`) the shards are cut by host
(:func:`gbif_dl.records.host_key`): once a host has given ``size // 10`` records, its records go
to shards of their own, so a runner can bound how many shards touch a host at once without
dividing the per-host cap by the number of workers. The first records of every host, and hosts
that never give that many, share mixed shards. Either way :attr:`ShardPlan.hosts` lists the hosts
of every shard.

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
    >>> plan_shards(urls, root, size=2, by_host=True).hosts[1]
    frozenset({'h1.example'})
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
from gbif_dl.records import host_key, url_digest
from gbif_dl.shards.files import marker_has_failures, shard_files
from gbif_dl.writers._atomic import create_temp

__all__ = ["DEFAULT_SHARD_SIZE", "MAX_OPEN_SHARDS", "ShardPlan", "host_threshold", "plan_shards"]

logger = logging.getLogger(__name__)

#: Records per shard unless told otherwise.
DEFAULT_SHARD_SIZE = 10_000

#: With ``by_host``: the most shard files open at once while planning (the least recently
#: written one is closed, short, when another host needs a shard).
MAX_OPEN_SHARDS = 64

_MIXED = ""  # the group of the records that share mixed shards (no host key is empty)


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """The shards of one job.

    Attributes:
        root: the output root.
        shard_ids: the shards of this job, in order.
        records: records written to the shards (repeated URLs counted once).
        duplicates: records dropped because their URL came earlier in the input.
        done: shards that were already done (their marker exists) when planning finished.
        hosts: the hosts (:func:`gbif_dl.records.host_key`) of each shard's records.

    Example:
        >>> ShardPlan(root="data", shard_ids=(0, 1), records=15_000).shard_ids
        (0, 1)
    """

    root: str
    shard_ids: tuple[int, ...]
    records: int
    duplicates: int = 0
    done: tuple[int, ...] = ()
    hosts: Mapping[int, frozenset[str]] = dataclasses.field(default_factory=dict)


def host_threshold(size: int) -> int:
    """With ``by_host``, the records a host gives before it gets shards of its own.

    Example:
        >>> host_threshold(10_000), host_threshold(5)
        (1000, 1)
    """
    return max(1, size // 10)


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
    """Fills shard files; one open per group (every record in one group unless ``by_host``)."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        retry_failed: bool,
        overwrite: bool,
        by_host: bool,
        first_id: int = 0,
    ) -> None:
        self.root = root
        self.first_id = first_id
        self.size = size
        self.retry_failed = retry_failed
        self.overwrite = overwrite
        self.by_host = by_host
        self.threshold = host_threshold(size)
        self.seen: set[int] = set()
        self.per_host: dict[str, int] = {}
        self.ids: list[int] = []
        self.done: list[int] = []
        self.hosts: dict[int, set[str]] = {}
        self.records = self.duplicates = 0
        self.open: dict[str, _ShardOut] = {}  # group -> its open shard, least recent first

    def add(self, item: Any, assign: Assign | None) -> None:
        record, problem, detail = normalize_item(item, assign)
        host = None
        if problem is None:
            key = url_digest(record["url"])
            if key in self.seen:
                self.duplicates += 1
                return
            self.seen.add(key)
            host = host_key(record["url"])
        elif problem is Reason.INVALID:  # the shard's run reports it as the streaming run does
            record[INVALID_ITEM] = detail
        group = self._group(host)
        out = self.open.pop(group, None)
        if out is None:
            out = self._open_shard()
        self.open[group] = out  # most recent last
        out.add(record)
        if host is not None:
            self.hosts[out.shard_id].add(host)
        self.records += 1
        if out.count >= self.size:
            self._close(group)

    def _group(self, host: str | None) -> str:
        if not self.by_host or host is None:
            return _MIXED
        seen = self.per_host[host] = self.per_host.get(host, 0) + 1
        return host if seen >= self.threshold else _MIXED

    def _open_shard(self) -> _ShardOut:
        if len(self.open) >= MAX_OPEN_SHARDS:
            self._close(next(iter(self.open)))  # the least recently written
        shard_id = self.first_id + len(self.ids) + len(self.open)
        self.hosts[shard_id] = set()
        return _ShardOut(self.root, shard_id)

    def _close(self, group: str) -> None:
        out = self.open.pop(group)
        self.ids.append(out.shard_id)
        if out.finish(retry_failed=self.retry_failed, overwrite=self.overwrite):
            self.done.append(out.shard_id)

    def close(self) -> None:
        for group in sorted(self.open, key=lambda g: self.open[g].shard_id):
            self._close(group)

    def discard(self) -> None:
        for out in self.open.values():
            out.discard()
        self.open.clear()


def plan_shards(
    items: Iterable[Any],
    root: str | os.PathLike[str],
    *,
    size: int = DEFAULT_SHARD_SIZE,
    assign: Assign | None = None,
    retry_failed: bool = True,
    overwrite: bool = False,
    by_host: bool = False,
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
        by_host: cut the shards by host (see the module's docs), for runners that run more
            shards at once than the per-host cap.
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
        root_path,
        size,
        retry_failed=retry_failed,
        overwrite=overwrite,
        by_host=by_host,
        first_id=first_id,
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
        shard_ids=tuple(sorted(planner.ids)),
        records=planner.records,
        duplicates=planner.duplicates,
        done=tuple(sorted(planner.done)),
        hosts={sid: frozenset(hosts) for sid, hosts in planner.hosts.items()},
    )

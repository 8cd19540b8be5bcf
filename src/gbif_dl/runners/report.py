"""Progress of a whole ``runner=`` job, seen from the client: images/s, failures, hosts.

Workers count every finished item of their shard (:class:`ShardTicker`, handed to
:func:`gbif_dl.shards.run.run_shard`) and send the shard's running totals about once a second
through a :class:`Channel`: Dask's event log (``Worker.log_event``, one topic per job, which
the client subscribes to), a queue shared with the local process pool, or a plain call in this
process. The client folds them into :class:`ClusterProgress`, which logs one line every few
seconds (on the ``gbif_dl.progress`` logger, whose lines the command line shows)::

    1,200/5,000 img (85.2/s, 24%, 45 s left): ok 1,180, failed 20, skipped 0, 41.3 MiB;
    shards 6 running, 10 queued, 4/20 done; hosts (running/queued shards) a.org 4/6, b.org 2/0

A finished shard's own :class:`~gbif_dl.shards.run.ShardResult` replaces its ticks, so the totals
at the end are exactly the job's, whatever ticks were late or came from a worker that died (a
shard run again after a lost worker sends fresh totals, which replace the lost attempt's).

Example:
    >>> progress = ClusterProgress(total=3, mode=False)
    >>> progress.post({"shard": 0, "attempt": "a", "success": 1, "failed": 0, "skipped": 0,
    ...                "bytes": 10})
    >>> progress.poll(); progress.totals()["success"]
    1
    >>> progress.finish(ShardResult(shard_id=0, success=2, failed=1))
    >>> progress.totals()
    {'success': 2, 'failed': 1, 'skipped': 0, 'bytes': 0}
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Mapping
from typing import Any

from gbif_dl.progress import Progress, format_bytes, format_duration
from gbif_dl.runners.gate import HostGate
from gbif_dl.shards.run import ShardConfig, ShardResult, run_shard

__all__ = [
    "COUNTS",
    "Channel",
    "ClusterProgress",
    "ShardTicker",
    "report_shard",
    "set_pool_queue",
]

#: The progress displays' logger: the command line shows its INFO lines without -v.
progress_logger = logging.getLogger("gbif_dl.progress")

#: The counts a tick carries (besides ``shard`` and ``attempt``).
COUNTS = ("success", "failed", "skipped", "bytes")

_POOL_QUEUE: Any = None  # the local pool's queue, in each pool process (set_pool_queue)


def set_pool_queue(ticks: Any) -> None:
    """Pool initializer: the queue this process's shards send their ticks to.

    Example:
        >>> set_pool_queue(None)
    """
    global _POOL_QUEUE
    _POOL_QUEUE = ticks
    if ticks is not None:  # a process never waits at exit for ticks no one read
        ticks.cancel_join_thread()


@dataclasses.dataclass(frozen=True)
class Channel:
    """Where a worker sends its ticks; picklable. ``kind``: ``"dask"`` (``Worker.log_event``
    on ``topic``), ``"pool"`` (the queue of :func:`set_pool_queue`) or ``"none"``.

    Example:
        >>> Channel("none").send({"shard": 0})
    """

    kind: str = "none"
    topic: str = ""

    def send(self, tick: Mapping[str, Any]) -> None:
        """Send one tick; a channel that cannot deliver drops it (progress is best effort)."""
        if self.kind == "dask":
            from distributed import get_worker

            try:
                get_worker().log_event(self.topic, dict(tick))
            except ValueError:  # not on a worker (a task run in the client): no one listens
                return
        elif self.kind == "pool" and _POOL_QUEUE is not None:
            _POOL_QUEUE.put(dict(tick))


class ShardTicker(Progress):
    """The worker side: a silent :class:`~gbif_dl.progress.Progress` that also sends the
    shard's running totals to ``send`` at most every ``every_s`` seconds, and when closed.

    Example:
        >>> sent = []
        >>> ticker = ShardTicker(7, sent.append)
        >>> ticker.update("success", nbytes=5); ticker.close()
        >>> sent[-1]["shard"], sent[-1]["success"], sent[-1]["bytes"]
        (7, 1, 5)
    """

    def __init__(
        self, shard_id: int, send: Callable[[dict[str, Any]], Any], every_s: float = 1.0
    ) -> None:
        super().__init__(mode=False, desc=f"shard {shard_id}")
        self.shard_id = shard_id
        self.send = send
        self.every_s = every_s
        self.attempt = f"{os.getpid()}-{time.time_ns()}"
        self._sent = time.monotonic()

    def update(self, status: str, nbytes: int = 0) -> None:
        """Count one finished item; send the totals when ``every_s`` has passed."""
        super().update(status, nbytes)
        now = time.monotonic()
        if now - self._sent >= self.every_s:
            self._sent = now
            self.flush()

    def flush(self) -> None:
        """Send the shard's totals now."""
        tick: dict[str, Any] = {"shard": self.shard_id, "attempt": self.attempt}
        tick.update({k: self.counts.get(k, 0) for k in COUNTS[:3]}, bytes=self.bytes)
        self.send(tick)

    def close(self) -> None:
        """Send the last totals."""
        super().close()
        self.flush()


def report_shard(
    shard_id: int, root: str | os.PathLike[str], config: ShardConfig, channel: Channel
) -> ShardResult:
    """:func:`~gbif_dl.shards.run.run_shard`, sending its progress through ``channel``: the
    task every runner submits.

    Example:
        >>> report_shard(0, "data", ShardConfig(), Channel("none"))  # doctest: +SKIP
    """
    return run_shard(shard_id, root, config, progress=ShardTicker(shard_id, channel.send))


def pool_queue() -> Any:
    """A queue the local runner's pool processes can send ticks to.

    Example:
        >>> pool_queue().put({"shard": 0})
    """
    return multiprocessing.get_context().Queue()


def _counts(source: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(source.get(k, 0) or 0) for k in COUNTS}


class ClusterProgress:
    """The client side: the job's totals from the shards' ticks and results, and the line.

    Args:
        total: the items the job runs (for the share and the time left), if known.
        mode: ``None`` = log lines at INFO level; ``True``: the same, even without a terminal;
            ``False`` = count only.
        log_every_s: seconds between lines.

    Example:
        >>> ClusterProgress(total=10, mode=False).line().startswith("0/10 img")
        True
    """

    def __init__(
        self, total: int | None = None, *, mode: bool | None = None, log_every_s: float = 10.0
    ) -> None:
        self.total = total if total is not None and total > 0 else None
        self.mode = mode
        self.log_every_s = log_every_s
        self.inbox: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.live: dict[int, tuple[str, dict[str, int]]] = {}  # shard -> (attempt, counts)
        self.done: dict[int, dict[str, int]] = {}
        self.extra = dict.fromkeys(COUNTS, 0)
        self.gate: HostGate | None = None
        self.shards = 0
        self.started = time.monotonic()
        self._logged = self.started

    # fed by the runner ---------------------------------------------------------------------

    def begin(self, shards: int, gate: HostGate | None = None, total: int | None = None) -> None:
        """The job starts: ``shards`` to run, the gate whose host state the line shows."""
        self.shards, self.gate = shards, gate
        if total is not None and total > 0:
            self.total = total

    def post(self, tick: Mapping[str, Any]) -> None:
        """Take a tick from any thread (a Dask subscription handler, a queue reader)."""
        self.inbox.put(dict(tick))

    def poll(self) -> None:
        """Fold the ticks that came in; log a line when one is due. Call it from one thread."""
        self._fold()
        now = time.monotonic()
        if self.mode is not False and now - self._logged >= self.log_every_s:
            self._logged = now
            progress_logger.info("download: %s", self.line())

    def _fold(self) -> None:
        while True:
            try:
                tick = self.inbox.get_nowait()
            except queue.Empty:
                break
            sid = int(tick.get("shard", -1))
            if sid in self.done or sid < 0:
                continue  # a late tick of a finished shard: its result counts
            self.live[sid] = (str(tick.get("attempt", "")), _counts(tick))

    def finish(self, result: ShardResult) -> None:
        """A shard is done: its result replaces its ticks."""
        self.live.pop(result.shard_id, None)
        self.done[result.shard_id] = _counts(dataclasses.asdict(result))

    def add_skipped(self, n: int) -> None:
        """Items the job skips without running them (done shards, repeated URLs)."""
        self.extra["skipped"] += int(n)

    # read ----------------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """``success``, ``failed``, ``skipped`` and ``bytes`` of the job so far."""
        out = dict(self.extra)
        for counts in [*self.done.values(), *(c for _, c in self.live.values())]:
            for key in COUNTS:
                out[key] += counts[key]
        return out

    def line(self) -> str:
        """The progress line: images, rate, share and time left; counts; shards; busy hosts."""
        t = self.totals()
        items = t["success"] + t["failed"] + t["skipped"]
        elapsed = max(time.monotonic() - self.started, 1e-9)
        fetched = (t["success"] + t["failed"]) / elapsed
        head = f"{items:,}" + (f"/{self.total:,}" if self.total else "") + f" img ({fetched:.1f}/s"
        if self.total:
            left = max(self.total - items, 0)
            eta = f", {format_duration(left / fetched)} left" if fetched > 0 and left else ""
            head += f", {100 * items / self.total:.0f}%{eta}"
        text = (
            f"{head}): ok {t['success']:,}, failed {t['failed']:,}, skipped {t['skipped']:,}, "
            f"{format_bytes(t['bytes'])}"
        )
        if self.gate is not None:
            text += (
                f"; shards {len(self.gate.running)} running, {len(self.gate.queued)} queued, "
                f"{len(self.done)}/{self.shards} done"
            )
            state = self.gate.state()
            busiest = sorted(state.items(), key=lambda kv: (-kv[1].running - kv[1].queued, kv[0]))
            if busiest:
                shown = ", ".join(f"{h} {s.running}/{s.queued}" for h, s in busiest[:5])
                more = f" +{len(busiest) - 5} more" if len(busiest) > 5 else ""
                text += f"; hosts (running/queued shards) {shown}{more}"
        return text

    def close(self) -> None:
        """Fold what is left and log the last line."""
        self._fold()
        if self.mode is not False:
            progress_logger.info("download: %s", self.line())

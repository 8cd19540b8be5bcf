"""Per-host politeness without dividing the cap by the number of workers: lanes and the gate.

Dividing ``per_host`` among ``W`` shards that run at once (:func:`gbif_dl.runners.share_fetch`)
stops working when ``W > per_host``: each shard still needs 1, so a host sees ``W`` requests at
once. Here a host has ``lanes = min(per_host, W)`` lanes instead; each shard fetches with
``per_host // lanes`` per host, and :class:`HostGate` starts a shard only while every host it
touches (:attr:`gbif_dl.shards.plan.ShardPlan.hosts`) has a free lane::

    per_host=4, 32 slots:  lanes = 4, each shard per_host = 1,
                           at most 4 shards touching one host run at once -> <= 4 in flight

The plan cuts shards by host (``plan_shards(by_host=True)``), so shards of other hosts fill the
other slots. :func:`run_gated` is the loop both runners share: it submits what the gate admits,
up to the free slots, and releases a shard's lanes when its task is done (a task whose worker
died keeps its lanes until the scheduler has run it again elsewhere).

Example:
    >>> gate = HostGate({0: frozenset({"a"}), 1: frozenset({"a"}), 2: frozenset({"b"})}, lanes=1)
    >>> gate.admit([0, 1, 2], free=3)
    [0, 2]
    >>> gate.release(0)
    >>> gate.admit([1], free=1)
    [1]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from gbif_dl.fetch.engine import FetchConfig
from gbif_dl.runners.base import share_fetch
from gbif_dl.shards.run import ShardResult

__all__ = ["HostGate", "HostState", "run_gated", "share_hosts"]

F = TypeVar("F", bound=Hashable)


def share_hosts(fetch: FetchConfig, slots: int) -> tuple[FetchConfig, int]:
    """``fetch`` for one of ``slots`` shards run at once under a :class:`HostGate`; the lanes.

    The total cap is divided as :func:`~gbif_dl.runners.share_fetch` does; the per-host cap is
    divided by the lanes, ``min(per_host, slots)``, never below 1 and never past ``per_host`` in
    all: the gate lets at most ``lanes`` shards touch a host at once.

    Example:
        >>> shared, lanes = share_hosts(FetchConfig(concurrency=128, per_host=4), 32)
        >>> shared.per_host, shared.concurrency, lanes
        (1, 4, 4)
        >>> share_hosts(FetchConfig(per_host=16), 4)[0].per_host
        4
    """
    slots = max(1, int(slots))
    lanes = max(1, min(fetch.per_host, slots))
    shared = share_fetch(fetch, slots)
    return dataclasses.replace(shared, per_host=max(1, fetch.per_host // lanes)), lanes


@dataclasses.dataclass(frozen=True)
class HostState:
    """One host's shards: running now and waiting for a lane (or a slot).

    Example:
        >>> HostState(running=2, queued=5).running
        2
    """

    running: int
    queued: int


class HostGate:
    """Which shards may start now: at most ``lanes`` running shards touch any one host.

    Args:
        hosts: the hosts of each shard; a shard missing here touches no host the gate knows.
        lanes: the most running shards per host.

    Example:
        >>> gate = HostGate({0: frozenset({"a", "b"}), 1: frozenset({"b"})}, lanes=1)
        >>> gate.admit([0, 1], free=2), gate.state()["b"]
        ([0], HostState(running=1, queued=1))
    """

    def __init__(self, hosts: Mapping[int, Collection[str]], lanes: int) -> None:
        self.hosts = hosts
        self.lanes = max(1, int(lanes))
        self.busy: dict[str, int] = {}
        self.running: set[int] = set()
        self.queued: list[int] = []
        #: the most shards that ran at once, and the most on one host (for logs and tests)
        self.max_running = 0
        self.max_per_host = 0

    def admit(self, pending: Sequence[int], free: int) -> list[int]:
        """The shards of ``pending`` (in order) that may start now, at most ``free``; they
        count as running until :meth:`release`. The others stay queued.

        Example:
            >>> HostGate({}, lanes=1).admit([3, 4, 5], free=2)
            [3, 4]
        """
        started: list[int] = []
        waiting: list[int] = []
        for sid in pending:
            hosts = self.hosts.get(sid, ())
            if len(started) < free and all(self.busy.get(h, 0) < self.lanes for h in hosts):
                for host in hosts:
                    self.busy[host] = self.busy.get(host, 0) + 1
                    self.max_per_host = max(self.max_per_host, self.busy[host])
                self.running.add(sid)
                started.append(sid)
            else:
                waiting.append(sid)
        self.queued = waiting
        self.max_running = max(self.max_running, len(self.running))
        return started

    def release(self, shard_id: int) -> None:
        """Shard ``shard_id`` is done: free its lanes."""
        if shard_id not in self.running:
            return
        self.running.discard(shard_id)
        for host in self.hosts.get(shard_id, ()):
            left = self.busy.get(host, 0) - 1
            if left > 0:
                self.busy[host] = left
            else:
                self.busy.pop(host, None)

    def state(self) -> dict[str, HostState]:
        """Every host with a running or queued shard.

        Example:
            >>> HostGate({0: frozenset({"a"})}, lanes=1).state()
            {}
        """
        queued: dict[str, int] = {}
        for sid in self.queued:
            for host in self.hosts.get(sid, ()):
                queued[host] = queued.get(host, 0) + 1
        names = set(self.busy) | set(queued)
        return {h: HostState(self.busy.get(h, 0), queued.get(h, 0)) for h in sorted(names)}


def run_gated(
    shard_ids: Iterable[int],
    gate: HostGate,
    *,
    slots: Callable[[], int],
    submit: Callable[[int], F],
    wait: Callable[[set[F]], set[F]],
    result: Callable[[F], ShardResult],
    on_done: Callable[[ShardResult], Any] = lambda result: None,
    on_admit: Callable[[list[int]], Any] = lambda started: None,
) -> list[ShardResult]:
    """Run every shard under ``gate``; return the results in shard order.

    Args:
        shard_ids: the shards to run, in order of preference.
        gate: which may start.
        slots: how many shards can run at once now (asked again after every finished shard).
        submit: start a shard, return its future.
        wait: block until at least one of the futures is done, or a short while; return the
            done ones (maybe none).
        result: the :class:`~gbif_dl.shards.run.ShardResult` of a done future (raises its error).
        on_done, on_admit: told of every finished shard and of every batch of started ones.

    Example:
        >>> import concurrent.futures as cf
        >>> with cf.ThreadPoolExecutor(2) as pool:
        ...     done = run_gated(
        ...         [0, 1], HostGate({}, lanes=1), slots=lambda: 2,
        ...         submit=lambda sid: pool.submit(ShardResult, shard_id=sid, success=1),
        ...         wait=lambda fs: cf.wait(fs, 1, cf.FIRST_COMPLETED).done,
        ...         result=lambda f: f.result())
        >>> [r.shard_id for r in done]
        [0, 1]
    """
    order = list(shard_ids)
    pending = list(order)
    futures: dict[F, int] = {}
    results: dict[int, ShardResult] = {}
    while pending or futures:
        free = max(0 if futures else 1, slots() - len(futures))  # idle: always start one
        started = gate.admit(pending, free)
        if started:
            pending = list(gate.queued)
            futures.update({submit(sid): sid for sid in started})
            on_admit(started)
        for future in wait(set(futures)):
            sid = futures.pop(future)
            shard = result(future)
            gate.release(sid)
            results[sid] = shard
            on_done(shard)
    return [results[sid] for sid in order]

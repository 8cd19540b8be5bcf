"""What a runner is, and how it shares politeness among the shards it runs at once.

Example:
    >>> from gbif_dl.fetch.engine import FetchConfig
    >>> share_fetch(FetchConfig(concurrency=128, per_host=16), 4).per_host
    4
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gbif_dl.fetch.engine import FetchConfig
from gbif_dl.fetch.guard import allowed_services
from gbif_dl.shards.run import ShardConfig, ShardResult

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.runners.report import ClusterProgress

__all__ = ["PlannedRunner", "Runner", "run_plan", "share_fetch"]


@runtime_checkable
class Runner(Protocol):
    """Runs :func:`gbif_dl.shards.run.run_shard` over shards; where is the runner's business.

    ``run_shards`` returns one :class:`~gbif_dl.shards.run.ShardResult` per shard and raises
    the first error of a shard that failed for good. Implementations divide politeness with
    :func:`share_fetch` among the shards they run at the same time.
    """

    def run_shards(
        self, shard_ids: Sequence[int], root: Path, config: ShardConfig
    ) -> list[ShardResult]:
        """Run every shard; return their results."""
        ...


@runtime_checkable
class PlannedRunner(Runner, Protocol):
    """A :class:`Runner` that keeps per-host politeness with the plan's hosts and reports
    progress (both runners of gbif-dl; see :mod:`gbif_dl.runners.gate`).
    """

    def plans_by_host(self, config: ShardConfig) -> bool:
        """True when the job's shards should be cut by host (more shards at once than
        ``per_host``)."""
        ...

    def run_planned(
        self,
        shard_ids: Sequence[int],
        root: Path,
        config: ShardConfig,
        *,
        hosts: Mapping[int, Collection[str]] | None = None,
        progress: ClusterProgress | None = None,
    ) -> list[ShardResult]:
        """Run every shard, at most ``lanes`` at once on any host of ``hosts``; report."""
        ...


def run_plan(
    runner: Runner,
    shard_ids: Sequence[int],
    root: Path,
    config: ShardConfig,
    *,
    hosts: Mapping[int, Collection[str]] | None = None,
    progress: ClusterProgress | None = None,
) -> list[ShardResult]:
    """Run the shards with ``runner``: with the hosts and progress when it takes them.

    Example:
        >>> from gbif_dl.runners.local import LocalRunner
        >>> run_plan(LocalRunner(), [], Path("."), ShardConfig())
        []
    """
    if isinstance(runner, PlannedRunner):
        return runner.run_planned(shard_ids, root, config, hosts=hosts, progress=progress)
    return list(runner.run_shards(shard_ids, root, config))


def share_fetch(fetch: FetchConfig, parties: int) -> FetchConfig:
    """``fetch`` for one of ``parties`` shards running at once: the caps divided among them.

    Each gets ``max(1, per_host // parties)`` and ``max(1, concurrency // parties)``, so the
    cluster never has more than ``per_host`` requests on one host as long as
    ``parties <= per_host`` (beyond that, one each: ``parties`` at most). The local services
    this process lets through the address guard (:func:`gbif_dl.fetch.guard.allow_service`)
    travel with it, so worker processes can reach them too.

    Example:
        >>> shared = share_fetch(FetchConfig(concurrency=128, per_host=16), 4)
        >>> shared.concurrency, shared.per_host
        (32, 4)
    """
    parties = max(1, int(parties))
    return dataclasses.replace(
        fetch,
        per_host=max(1, fetch.per_host // parties),
        concurrency=max(1, fetch.concurrency // parties),
        allowed_services=fetch.allowed_services | allowed_services(),
    )

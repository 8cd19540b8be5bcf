"""Runners: where shards run. :func:`run` plans the shards, runs them with a runner, merges.

::

    records ─► plan_shards ─► runner.run_shards(run_shard over every shard) ─► merge_shards
               (files at root)  LocalRunner: this process, or N processes
                                DaskRunner:  a Dask cluster (LocalCluster, SLURM, Kubernetes...)

Every runner calls the same picklable :func:`gbif_dl.shards.run.run_shard`; a runner only
decides where. Politeness is shared: with ``W`` shards in flight each gets ``concurrency // W``
requests in total, and a host has ``min(per_host, W)`` lanes: each shard fetches with
``per_host // lanes`` per host and at most ``lanes`` shards touch a host at once, so the whole
job stays within ``per_host`` on every host however many workers run it.

- :mod:`~gbif_dl.runners.base`: the :class:`Runner` protocol, :func:`share_fetch`, :func:`run_plan`;
- :mod:`~gbif_dl.runners.orchestrate`: :func:`run`, :func:`make_runner`;
- :mod:`~gbif_dl.runners.gate`: the host lanes and the loop both runners share;
- :mod:`~gbif_dl.runners.report`: the job's progress, from the shards to the client;
- :mod:`~gbif_dl.runners.local`, :mod:`~gbif_dl.runners.dask`: the two runners.

Example:
    >>> make_runner("local").workers is None
    True
"""

from __future__ import annotations

from gbif_dl.runners.base import Runner, share_fetch
from gbif_dl.runners.orchestrate import RUNNERS, make_runner, run

__all__ = ["RUNNERS", "Runner", "make_runner", "run", "share_fetch"]

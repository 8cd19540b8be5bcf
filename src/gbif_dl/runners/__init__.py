"""Runners: where shards run. :func:`run` plans the shards, runs them with a runner, merges.

::

    records ─► plan_shards ─► runner.run_shards(run_shard over every shard) ─► merge_shards
               (files at root)  LocalRunner: this process, or N processes
                                DaskRunner:  a Dask cluster (LocalCluster, SLURM, Kubernetes...)

Every runner calls the same picklable :func:`gbif_dl.shards.run.run_shard`; a runner only
decides where. Politeness is shared: a runner with ``W`` shards in flight gives each one
``per_host // W`` requests per host and ``concurrency // W`` in total (at least 1 each, see
:func:`share_fetch`), so the whole job stays within the caps of one machine.

- :mod:`~gbif_dl.runners.base`: the :class:`Runner` protocol and :func:`share_fetch`;
- :mod:`~gbif_dl.runners.orchestrate`: :func:`run`, :func:`make_runner`;
- :mod:`~gbif_dl.runners.local`, :mod:`~gbif_dl.runners.dask`: the two runners.

Example:
    >>> make_runner("local").workers is None
    True
"""

from __future__ import annotations

from gbif_dl.runners.base import Runner, share_fetch
from gbif_dl.runners.orchestrate import RUNNERS, make_runner, run

__all__ = ["RUNNERS", "Runner", "make_runner", "run", "share_fetch"]

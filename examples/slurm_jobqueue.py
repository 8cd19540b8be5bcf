"""Build an image dataset on a SLURM cluster with dask-jobqueue, or on this machine (--local).

On the login node of a SLURM cluster (``pip install 'gbif-dl[dask]' dask-jobqueue`` in an
environment the compute nodes share, and ``root`` on a filesystem every node mounts)::

    python examples/slurm_jobqueue.py --root /scratch/$USER/bees --jobs 4 --cores 8 \\
        --queue cpu --account my-project --species-key 1311477 --species-key 5352251 \\
        --nb-samples 200000

The same job on a LocalCluster of this machine (what the test suite runs, against the
simulator: add ``--api-url http://127.0.0.1:PORT/v1`` after ``gbif-dl simulate --port PORT``)::

    python examples/slurm_jobqueue.py --root bees --local 4 --species-key 1311477 \\
        --species-key 5352251 --nb-samples 2000

Either way the shards run as Dask tasks (``runner="dask"``): the client logs a progress line
every few seconds (images/s, failures, shards running and queued per host), a host never sees
more than ``--per-host`` requests at once however many workers there are, a lost worker's shard
runs again elsewhere and resumes, and running the same command again resumes the whole job.
dask-jobqueue is imported only for a SLURM run.

Example:
    >>> parse_args(["--root", "bees", "--local", "2", "--species-key", "1"]).local
    2
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import gbif_dl


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The example's options.

    Example:
        >>> parse_args(["--root", "r", "--species-key", "1"]).jobs
        2
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="output folder, on a filesystem every node sees")
    p.add_argument(
        "--species-key",
        type=int,
        action="append",
        required=True,
        help="GBIF speciesKey (repeat: one class each)",
    )
    p.add_argument("--nb-samples", type=int, default=1000, help="images to take (balanced)")
    p.add_argument("--per-host", type=int, default=4, help="requests in flight per image host")
    p.add_argument("--shard-size", type=int, default=10_000, help="records per shard")
    p.add_argument("--max-size", type=int, default=None, help="resize to this longest side")
    p.add_argument("--api-url", default=None, help="GBIF API (default: api.gbif.org)")
    where = p.add_argument_group("where the workers run")
    where.add_argument("--local", type=int, metavar="N", help="a LocalCluster of N workers")
    where.add_argument("--jobs", type=int, default=2, help="SLURM jobs (one worker each)")
    where.add_argument("--cores", type=int, default=4, help="threads (shards at once) per job")
    where.add_argument("--memory", default="8GB", help="memory per job")
    where.add_argument("--walltime", default="04:00:00", help="SLURM time limit per job")
    where.add_argument("--queue", default=None, help="SLURM partition")
    where.add_argument("--account", default=None, help="SLURM account")
    return p.parse_args(argv)


def make_cluster(args: argparse.Namespace) -> Any:
    """A LocalCluster (``--local N``) or a dask-jobqueue SLURMCluster of ``--jobs`` jobs.

    Example:
        >>> args = parse_args(["--root", "r", "--species-key", "1", "--local", "1"])
        >>> cluster = make_cluster(args)  # doctest: +SKIP
    """
    import dask
    from distributed import LocalCluster

    if args.local:
        # the fetch engine resizes in a process pool, which daemonic workers cannot start
        with dask.config.set({"distributed.worker.daemon": False}):
            return LocalCluster(n_workers=args.local, threads_per_worker=1, dashboard_address=None)
    from dask_jobqueue import SLURMCluster  # pip install dask-jobqueue

    cluster = SLURMCluster(
        cores=args.cores,
        processes=1,  # one worker process per job, --cores threads: --cores shards at once
        memory=args.memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        job_script_prologue=["export DASK_DISTRIBUTED__WORKER__DAEMON=False"],
    )
    cluster.scale(jobs=args.jobs)
    return cluster


def build_dataset(client: Any, args: argparse.Namespace) -> Any:
    """Sample the species, balanced, and download them into ``--root`` on ``client``'s
    cluster; returns the download's stats.

    Example:
        >>> stats = build_dataset(client, args)  # doctest: +SKIP
    """
    records = gbif_dl.api.generate_urls(
        {"speciesKey": args.species_key},
        label="speciesKey",
        split_streams_by="speciesKey",
        nb_samples=args.nb_samples,
        seed=0,
        api_url=args.api_url,
    )
    return gbif_dl.io.download(
        records,
        root=args.root,
        splits={"train": 0.8, "val": 0.1, "test": 0.1},
        per_host=args.per_host,
        max_size=args.max_size,
        runner="dask",
        dask_client=client,
        shard_size=args.shard_size,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Start the cluster, wait for a first worker, build the dataset, print the counts (a
    rerun of the same command resumes).

    Example:
        >>> main(["--root", "bees", "--species-key", "1334757", "--local", "2"])  # doctest: +SKIP
        0
    """
    from distributed import Client

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with make_cluster(args) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=3600)  # SLURM jobs may wait in the queue
        stats = build_dataset(client, args)
    print(f"{stats['success']} stored, {stats['failed']} failed, {stats['skipped']} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

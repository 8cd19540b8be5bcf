"""``download(processes=N)``: a plain download fetched by N processes on this machine.

One event loop tops out at about one core (HTTP parsing, sniffing, hashing, writing,
journaling); a plain download on a multi-core machine gets further with several loops. It runs
as the local runner does (:mod:`gbif_dl.runners.local`): the records are planned into shards of
:data:`PROCESS_SHARD_SIZE` at the root, each shard is fetched by the one core
(:class:`gbif_dl.pipeline.run.Run`) in one of N processes, each process with its share of the
politeness caps (:func:`gbif_dl.runners.base.share_fetch`), and the shards' manifests are
merged into ``manifest.parquet``: the same files and rows as the streaming download. A rerun
with the same input skips the done shards at once.

``processes="auto"`` (the default) picks one process per CPU (at most
:data:`AUTO_MAX_PROCESSES`) when it is safe and worth it, and the streaming download otherwise:
a synchronous input of at least :data:`AUTO_MIN_RECORDS` records (a generator is read that far
to know), a layout that shards (``imagefolder``, ``hf``) into a local root, and fetch settings
that can go to another process (no custom resolver, a picklable ``is_valid_file``). A resize
job (``max_size``) follows the same rule: on 2 cores, 1,000 photos resized by 2 fetching
processes were no faster than by one process with its resize pool (same-run A/B, 6 rounds), and
a single event loop only limits resizing on many cores, that is on large jobs.

Example:
    >>> from gbif_dl.options import DownloadOptions
    >>> items, processes = choose_processes(["http://h/a.jpg"], DownloadOptions())
    >>> processes
    1
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
from typing import Any

from gbif_dl.options import DownloadOptions
from gbif_dl.pipeline.inputs import source_items
from gbif_dl.storage.location import is_store_root
from gbif_dl.writers.registry import writer_class

__all__ = [
    "AUTO_MAX_PROCESSES",
    "AUTO_MIN_RECORDS",
    "PROCESS_SHARD_SIZE",
    "auto_processes",
    "choose_processes",
    "prepare_parent",
    "sharded_options",
]

#: ``processes="auto"`` fetches with several processes from this many records on (below, the
#: start of the processes and the shard files cost more than a second core saves).
AUTO_MIN_RECORDS = 5_000
#: ``processes="auto"`` never starts more processes than this (per-host caps are divided).
AUTO_MAX_PROCESSES = 4
#: Records per shard of a ``processes=`` download (small enough to keep every process busy
#: until the end, large enough that a shard's start and manifest part cost little).
PROCESS_SHARD_SIZE = 2_000


def auto_processes() -> int:
    """The processes ``processes="auto"`` uses for a large input: one per usable CPU, at most
    :data:`AUTO_MAX_PROCESSES`.

    Example:
        >>> 1 <= auto_processes() <= AUTO_MAX_PROCESSES
        True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, AUTO_MAX_PROCESSES))


def _can_travel(options: DownloadOptions) -> bool:
    """True when the fetch settings can be sent to another process as they are."""
    if options.fetch.resolver is not None:
        return False
    if options.fetch.is_valid_file is None:
        return True
    try:
        pickle.dumps(options.fetch.is_valid_file)
    except Exception:  # a lambda or a closure: it stays in this process
        return False
    return True


def _peek(items: Any) -> tuple[Any, bool]:
    """``items`` (as given, or read back together if a generator was peeked at) and whether
    it holds at least :data:`AUTO_MIN_RECORDS` records."""
    found = source_items(items)
    if found.sync is None:  # an async input: streamed
        return items, False
    if found.total is not None:
        return items, found.total >= AUTO_MIN_RECORDS
    iterator = iter(found.sync)
    head = list(itertools.islice(iterator, AUTO_MIN_RECORDS))
    return itertools.chain(head, iterator), len(head) >= AUTO_MIN_RECORDS


def choose_processes(items: Any, options: DownloadOptions) -> tuple[Any, int]:
    """How many processes fetch ``items`` with ``options`` (1: the streaming download), and
    the items to pass on (a generator ``"auto"`` looked into is read back from the start).

    Example:
        >>> choose_processes([], DownloadOptions(processes=2))[1]
        2
    """
    wanted = options.processes
    if options.runner is not None:
        return items, 1
    if wanted != "auto":
        return items, int(wanted)
    if auto_processes() < 2 or not writer_class(options.output).shardable:
        return items, 1
    if options.shard_bytes is not None or is_store_root(options.root):
        return items, 1
    if not _can_travel(options):
        return items, 1
    items, large = _peek(items)
    return items, auto_processes() if large else 1


def sharded_options(options: DownloadOptions, processes: int) -> DownloadOptions:
    """``options`` as the local runner's job with ``processes`` processes.

    Example:
        >>> sharded = sharded_options(DownloadOptions(), 2)
        >>> sharded.runner, sharded.workers, sharded.shard_size
        ('local', 2, 2000)
    """
    size = options.shard_size if options.shard_size is not None else PROCESS_SHARD_SIZE
    return options.replace(runner="local", workers=processes, shard_size=size, processes=1)


def prepare_parent() -> None:
    """Import in this process what every shard process would import on its own: pyarrow
    loads pandas (about 0.2 s of CPU) on its first compute call, which each shard's manifest
    part makes; processes forked from this one then have it already.

    Example:
        >>> prepare_parent()
    """
    with contextlib.suppress(ImportError):
        import pandas  # noqa: F401

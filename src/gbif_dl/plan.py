"""Moved to :mod:`gbif_dl.shards.plan` and :mod:`gbif_dl.shards.files`; this old import path
stays because docs/distributed.md names ``gbif_dl.plan.plan_shards``.

Example:
    >>> from gbif_dl.plan import plan_shards, shard_files
    >>> shard_files(0).records
    '.gbif-dl-shard-000000.records.jsonl'
"""

from __future__ import annotations

from gbif_dl.shards.files import (
    SHARD_PREFIX,
    ShardFiles,
    read_marker,
    read_shard_records,
    shard_files,
    shard_ids_on_disk,
    write_marker,
)
from gbif_dl.shards.plan import DEFAULT_SHARD_SIZE, ShardPlan, plan_shards

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

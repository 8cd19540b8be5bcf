"""Moved to :mod:`gbif_dl.shards.run`; this old import path stays because docs/distributed.md
and docs/architecture.md name ``gbif_dl.shard.run_shard``.

Example:
    >>> from gbif_dl.shard import run_shard
    >>> run_shard.__module__
    'gbif_dl.shards.run'
"""

from __future__ import annotations

from gbif_dl.shards.run import (
    DEFAULT_SHARD_CONFIG,
    ShardConfig,
    ShardResult,
    merge_shards,
    remove_leftover_temp_files,
    run_shard,
)

__all__ = [
    "DEFAULT_SHARD_CONFIG",
    "ShardConfig",
    "ShardResult",
    "merge_shards",
    "remove_leftover_temp_files",
    "run_shard",
]

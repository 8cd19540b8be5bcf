"""A ``runner=`` job's shards: planned once, each run by the one download core, then merged.

- :mod:`~gbif_dl.shards.plan`: :func:`plan_shards` cuts the input into shard files;
- :mod:`~gbif_dl.shards.files`: the names of a shard's files, its done marker;
- :mod:`~gbif_dl.shards.run`: :func:`run_shard` (the picklable unit every runner calls) and
  :func:`merge_shards`.

Example:
    >>> from gbif_dl.shards.files import shard_files
    >>> shard_files(0).done
    '.gbif-dl-shard-000000.done'
"""

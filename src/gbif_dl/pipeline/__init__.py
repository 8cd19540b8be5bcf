"""The download core, one for every path (streaming, and each shard of a ``runner=`` job).

- :mod:`~gbif_dl.pipeline.inputs`: every accepted input normalised once, splits assigned once;
- :mod:`~gbif_dl.pipeline.run`: one record becomes one file (resume, fetch, store, journal);
- :mod:`~gbif_dl.pipeline.journal`: the journal, written in batches;
- :mod:`~gbif_dl.pipeline.root`: the output root and its lock;
- :mod:`~gbif_dl.pipeline.stats`: the counts of a run and the one stats type;
- :mod:`~gbif_dl.pipeline.stream`: the streaming download.

:mod:`gbif_dl.shards` and :mod:`gbif_dl.runners` use these modules; ``gbif_dl.io`` is the facade
with gbif-dl 0.1's signature. Import from the submodules (this package re-exports nothing, so
that importing one room does not load the others).

Example:
    >>> from gbif_dl.pipeline.stats import DownloadStats
    >>> DownloadStats(success=1)["success"]
    1
"""

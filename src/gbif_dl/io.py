"""Download media records into an image dataset: ``gbif_dl.io.download``, gbif-dl 0.1's facade.

Compatible with gbif-dl 0.1: ``items`` is a list, a generator, an async generator, a list of URL
strings or the path of a text file with one URL per line; files land at
``root/[subset/]label/<basename>.<ext>``. On top of that a run is resumable and accountable:

- every file is written to a temp file and renamed, so no partial file has a final name;
- ``root/manifest.parquet`` has one row per item, failures included (typed ``reason``);
- a rerun skips what is done without a request (one dict lookup and one ``stat`` per item),
  retries what failed transiently (a permanent failure, a 404 or an HTML page, is not requested
  again unless ``retry_failed=True``), and ``overwrite=True`` fetches everything again;
- ``splits={"train": .8, "val": .1, "test": .1}`` assigns each occurrence (``split_by``) to one
  split from a hash of (group, seed), stable across reruns and additions;
- ``ATTRIBUTION.csv`` and ``CITATION.txt`` list licences, rights holders and GBIF datasets.

Run state lives in files at the root (``manifest.parquet``, ``.gbif-dl-journal.jsonl``,
``.gbif-dl.lock``), never in folders, so ImageFolder loaders see only classes. The keywords
become a :class:`~gbif_dl.options.DownloadOptions`; the work is done by :mod:`gbif_dl.pipeline`
(streaming) or :mod:`gbif_dl.runners` (``runner=``).

Example:
    >>> from gbif_dl.testing.mediahost import MediaHosts
    >>> import tempfile
    >>> with MediaHosts(n_hosts=1) as hosts:
    ...     urls = [f"{hosts.base_urls[0]}/media/1/{i}.jpg" for i in range(3)]
    ...     stats = download(urls, root=tempfile.mkdtemp(), progress=False)
    >>> stats["success"], stats["failed"], stats["skipped"]
    (3, 0, 0)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from gbif_dl._aio import run_sync
from gbif_dl.dedupe.policy import DEFAULT_NEAR_DISTANCE, DEFAULT_PLACEHOLDER_OCCURRENCES
from gbif_dl.options import DownloadOptions
from gbif_dl.pipeline.root import LOCK_NAME
from gbif_dl.pipeline.stats import DownloadStats
from gbif_dl.pipeline.stream import download_stream
from gbif_dl.sampling.spares import with_spares
from gbif_dl.writers.registry import OUTPUTS

__all__ = ["LOCK_NAME", "OUTPUTS", "DownloadStats", "download", "download_async"]


def _options(keywords: dict[str, Any]) -> DownloadOptions:
    """The DownloadOptions of a download() call (its ``locals()``); deprecation warnings are
    attributed to the caller of download()."""
    keywords.pop("items")
    return DownloadOptions.from_keywords(keywords, keywords.pop("compat"), stacklevel=4)


async def download_async(
    items: Any,
    root: str | os.PathLike[str] = "data",
    random_subsets: Mapping[str, float] | None = None,
    retries: int = 3,
    overwrite: bool = False,
    is_valid_file: Callable[[bytes], bool] | None = None,
    proxy: str | None = None,
    *,
    splits: Mapping[str, float] | None = None,
    split_by: str = "gbifID",
    seed: int | str = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    max_size: int | None = None,
    decode_check: bool = False,
    max_bytes: int | None = None,
    allow_private: bool = False,
    progress: bool | None = None,
    fail_threshold: float | None = None,
    verbose: bool = False,
    output: str = "imagefolder",
    shard_size: int | None = None,
    shard_bytes: int | None = None,
    retry_failed: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    renditions: bool = True,
    short_streams: str | None = None,
    content_hashes: bool | None = None,
    near_duplicate_distance: int = DEFAULT_NEAR_DISTANCE,
    drop_near_duplicates: bool = False,
    placeholder_occurrences: int = DEFAULT_PLACEHOLDER_OCCURRENCES,
    **compat: Any,
) -> DownloadStats:
    """The async form of :func:`download` (streaming, no ``runner=``), for code that already
    runs an event loop.

    Example:
        >>> stats = await download_async(urls, root="data")  # doctest: +SKIP
    """
    options = _options(dict(locals()))
    return await download_stream(with_spares(items), options)  # a sample's spares too


def download(
    items: Any,
    root: str | os.PathLike[str] = "data",
    random_subsets: Mapping[str, float] | None = None,
    retries: int = 3,
    overwrite: bool = False,
    is_valid_file: Callable[[bytes], bool] | None = None,
    proxy: str | None = None,
    *,
    splits: Mapping[str, float] | None = None,
    split_by: str = "gbifID",
    seed: int | str = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    max_size: int | None = None,
    decode_check: bool = False,
    max_bytes: int | None = None,
    allow_private: bool = False,
    progress: bool | None = None,
    fail_threshold: float | None = None,
    verbose: bool = False,
    output: str = "imagefolder",
    shard_size: int | None = None,
    shard_bytes: int | None = None,
    runner: str | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    dask_client: Any = None,
    retry_failed: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    renditions: bool = True,
    short_streams: str | None = None,
    processes: int | str = "auto",
    content_hashes: bool | None = None,
    near_duplicate_distance: int = DEFAULT_NEAR_DISTANCE,
    drop_near_duplicates: bool = False,
    placeholder_occurrences: int = DEFAULT_PLACEHOLDER_OCCURRENCES,
    **compat: Any,
) -> DownloadStats:
    """Download media records into ``root/[subset/]label/<basename>.<ext>``; resumable.

    Args:
        items: records (dicts with at least ``url``; ``label``, ``subset``, ``basename`` and the
            GBIF fields are used when present), URL strings, a generator or async generator of
            either, or the path of a text file with one URL per line.
        root, random_subsets, retries, overwrite, is_valid_file, proxy: gbif-dl 0.1's
            arguments: the output folder; ``{"train": 0.9, "test": 0.1}`` subsets drawn per item
            (an item's own ``subset`` wins); retries of transient failures; rewrite items already
            done; ``f(bytes) -> bool`` (False: reason ``invalid``); a proxy URL.
        splits, split_by, seed, retry_failed, fail_threshold, verbose, progress,
            output, shard_size, shard_bytes, runner, workers, dask_address, dask_client,
            storage_options, work_dir, short_streams, processes: the fields of
            :class:`gbif_dl.options.DownloadOptions`, documented there (``splits`` grouped by
            occurrence, ``output`` one of :data:`OUTPUTS`, ``runner`` ``"local"`` or ``"dask"``
            for sharded jobs, see docs/distributed.md; ``root="s3://bucket/ds"`` with
            ``storage_options=`` writes ``output="webdataset"`` or ``"hf"`` straight to an object
            store; ``short_streams`` what a stream that ran dry does to the others, for items
            from a sampling generator, whose spares keep every stream at its quota when
            downloads fail).
        concurrency, per_host, max_size, decode_check, max_bytes, allow_private, renditions: the
            fields of :class:`gbif_dl.fetch.engine.FetchConfig`, documented there
            (``allow_private`` lets media URLs reach private and loopback addresses, as
            ``GBIF_DL_ALLOW_PRIVATE=1`` does; ``renditions=False`` always fetches the record's
            own URL, even with ``max_size``).
        content_hashes, near_duplicate_distance, drop_near_duplicates,
            placeholder_occurrences: one photo stored once and in one split, placeholders
            excluded (:class:`gbif_dl.dedupe.policy.ContentPolicy`, measured defaults);
            ``content_hashes=None`` (default) turns it on when ``splits`` are asked for.
        **compat: ``tcp_connections`` (now ``concurrency``), ``nb_workers`` and ``batch_size``
            of gbif-dl 0.1 are accepted with a DeprecationWarning.

    Returns:
        :class:`DownloadStats` (``stats["success"]``, ``["failed"]``, ``["skipped"]``,
        ``["reasons"]``, ``["bytes"]``, ``["elapsed_s"]``, ``["manifest"]``).

    Raises:
        ConfigError: bad arguments, before any request.
        OutputError: the root cannot be used (before any request) or the disk filled up.

    Works in plain scripts and inside a running event loop (Jupyter) alike.

    Example:
        >>> import gbif_dl
        >>> urls = gbif_dl.api.generate_urls({"speciesKey": [5352251]}, label="speciesKey")
        ... # doctest: +SKIP
        >>> stats = download(urls, root="data", splits={"train": .8, "val": .2})  # doctest: +SKIP
        >>> stats["success"], stats["failed"], stats["skipped"]  # doctest: +SKIP
        (120, 2, 0)
    """
    return _run(items, _options(dict(locals())))


def _run(items: Any, options: DownloadOptions) -> DownloadStats:
    """Run the download ``options`` describe: streaming in this process, in several local
    processes (``processes=``), or in shards by a runner (``runner=``)."""
    items = with_spares(items)  # a sampling generator's spares follow its sample
    if options.runner is None:
        from gbif_dl.runners.processes import choose_processes, prepare_parent, sharded_options

        items, processes = choose_processes(items, options)
        if processes == 1:
            return run_sync(download_stream(items, options))
        options = sharded_options(options, processes)
        prepare_parent()
    from gbif_dl.runners.orchestrate import run_download

    return run_download(items, options)

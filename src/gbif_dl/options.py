"""Options objects: the sampling and download settings, spelled out once.

The public functions keep their gbif-dl 0.1 keyword signatures; each builds one of these frozen,
keyword-only objects and hands it on, so the sources, the pipeline, the runners, ``RunConfig``
and the command line all read the same fields.

Example:
    >>> opts = SamplingOptions(label="speciesKey", split_streams_by="speciesKey", nb_samples=-1)
    >>> opts.split_streams_by, opts.seed_value
    (('speciesKey',), 0)
    >>> SamplingOptions.field_names()[:3]
    ('label', 'split_streams_by', 'subset_streams')
    >>> DownloadOptions(root="out", splits={"train": 0.8, "val": 0.2}).fetch.per_host
    16
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gbif_dl.dedupe.policy import (
    DEFAULT_NEAR_DISTANCE,
    DEFAULT_PLACEHOLDER_OCCURRENCES,
    ContentPolicy,
)
from gbif_dl.errors import ConfigError
from gbif_dl.pipeline.stats import check_fail_threshold
from gbif_dl.sampling.filters import DEFAULT_MEDIATYPE
from gbif_dl.sampling.spares import DEFAULT_SPARES, check_spares
from gbif_dl.sampling.splits import Splitter
from gbif_dl.storage.location import check_store_options, is_store_root, local_root
from gbif_dl.writers.registry import check_writer_options, writer_class

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.fetch.engine import FetchConfig

__all__ = ["RUNNER_NAMES", "DownloadOptions", "SamplingOptions"]

#: The values of ``runner=`` (None: one process, streaming).
RUNNER_NAMES: tuple[str, ...] = ("local", "dask")


def _as_names(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    names = tuple(value)
    if not all(isinstance(name, str) and name for name in names):
        raise ConfigError(f"{what} must be a field name or a list of field names, got {value!r}")
    return names


def _check_count(name: str, value: int | None, *, allow_all: bool) -> None:
    if value is None:
        return
    low = -1 if allow_all else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        hint = "None, -1 (the largest balanced total)" if allow_all else "None"
        raise ConfigError(f"{name} must be {hint} or a number >= 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class SamplingOptions:
    """How records are chosen from a source: labels, streams, quotas, licences, seed.

    Shared by the occurrence search and the archive source; the fields are the keyword
    arguments of :func:`gbif_dl.api.generate_urls` and :func:`gbif_dl.dwca.generate_urls`.

    Attributes:
        label: the record field whose value (a string) is the label; ``None``: the whole record.
        split_streams_by: the fields whose value combinations form streams (a tuple).
        subset_streams: subset names mapped to stream values (search only; ``"*"`` the rest).
        nb_samples: the exact total (``-1``: the largest balanced total; ``None``: all).
        nb_samples_per_stream: a cap per stream.
        weighted_streams: quotas proportional to stream sizes instead of balanced.
        mediatype: the media type to keep (``None``: every type; archives only).
        one_media_per_occurrence: one media per occurrence, chosen from the seed.
        license_info: include publisher, licence and rights holder in each record.
        seed: makes the choices reproducible (``None`` acts as 0).
        licenses: an allow-list of licences (``["CC0_1_0", "CC_BY_4_0"]``) or ``None``.
        keep_unknown_licenses: with ``licenses``, also keep unrecognised licences.
        dedupe: yield each URL once.
        spares: with a quota (``nb_samples`` or ``nb_samples_per_stream``), each stream also
            yields this share of its quota (at least 2) as *spares*, after every primary item,
            in the sampler's seeded order: the downloader fetches one only when an item of its
            stream failed, so streams end with exactly their quota (0: no spares).

    Raises:
        ConfigError: a value of the wrong type or range, naming the keyword.

    Example:
        >>> SamplingOptions(nb_samples=-2)
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: nb_samples must be None, -1 (the largest balanced total) \
or a number >= 0, got -2
    """

    label: str | None = None
    split_streams_by: tuple[str, ...] = ()
    subset_streams: Mapping[str, Any] | None = None
    nb_samples: int | None = None
    nb_samples_per_stream: int | None = None
    weighted_streams: bool = False
    mediatype: str | None = DEFAULT_MEDIATYPE
    one_media_per_occurrence: bool = True
    license_info: bool = True
    seed: int | str | None = None
    licenses: tuple[str, ...] | None = None
    keep_unknown_licenses: bool = False
    dedupe: bool = True
    spares: float = DEFAULT_SPARES

    def __post_init__(self) -> None:
        object.__setattr__(self, "spares", check_spares(self.spares))
        if self.label is not None and not isinstance(self.label, str):
            raise ConfigError(
                f"label must be a record field name such as 'speciesKey', got {self.label!r}"
            )
        split: Any = self.split_streams_by
        object.__setattr__(self, "split_streams_by", _as_names(split, "split_streams_by"))
        _check_count("nb_samples", self.nb_samples, allow_all=True)
        _check_count("nb_samples_per_stream", self.nb_samples_per_stream, allow_all=False)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, (int, str))
        ):
            raise ConfigError(f"seed must be an integer or None, got {self.seed!r}")
        if self.licenses is not None:
            licenses: Any = self.licenses
            if isinstance(licenses, str):
                licenses = [licenses]
            object.__setattr__(self, "licenses", tuple(licenses))
        for name in ("weighted_streams", "one_media_per_occurrence", "license_info", "dedupe"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        object.__setattr__(self, "keep_unknown_licenses", bool(self.keep_unknown_licenses))

    @property
    def seed_value(self) -> int | str:
        """The seed with ``None`` read as 0."""
        return 0 if self.seed is None else self.seed

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The keyword names, in order (what the command line and ``RunConfig`` map onto)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> SamplingOptions:
        """Build from the entries of ``values`` that are sampling keywords; ignore the rest.

        Example:
            >>> SamplingOptions.pick({"label": "family", "root": "data"}).label
            'family'
        """
        names = set(cls.field_names())
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes: Any) -> SamplingOptions:
        """A copy with some fields changed (checked again).

        Example:
            >>> SamplingOptions(seed=1).replace(seed=2).seed
            2
        """
        return dataclasses.replace(self, **changes)

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as keyword arguments (``split_streams_by`` as a list).

        Example:
            >>> SamplingOptions(split_streams_by="year").as_kwargs()["split_streams_by"]
            ['year']
        """
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["split_streams_by"] = list(self.split_streams_by)
        return values


#: ``download()`` keywords that become fields of the nested :class:`FetchConfig`.
FETCH_KEYWORDS = (
    "retries",
    "concurrency",
    "per_host",
    "max_size",
    "decode_check",
    "max_bytes",
    "proxy",
    "is_valid_file",
    "allow_private",
    "renditions",
)
_DEPRECATED = ("tcp_connections", "nb_workers", "batch_size")


def _default_fetch() -> FetchConfig:
    """DEFAULT_FETCH, imported on use: reading options (a query file) loads no HTTP client."""
    from gbif_dl.fetch.engine import DEFAULT_FETCH

    return DEFAULT_FETCH


def _fetch_config(values: Mapping[str, Any]) -> FetchConfig:
    """DEFAULT_FETCH with the fetch keywords that were given (None = the default)."""
    default = _default_fetch()
    changes = {name: value for name, value in values.items() if value is not None}
    retries = changes.pop("retries", None)
    if retries is not None:
        try:
            count = int(retries)
        except (TypeError, ValueError):
            count = -1
        if count < 0:
            raise ConfigError(f"retries must be >= 0; got {retries!r}")
        changes["retry"] = dataclasses.replace(default.retry, retries=count)
    for name in ("concurrency", "per_host"):
        value = changes.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    return dataclasses.replace(default, **changes)


def _apply_compat(compat: dict[str, Any], known: Sequence[str], stacklevel: int) -> int | None:
    """Reject unknown keywords; warn about gbif-dl 0.1's deprecated ones. Returns the
    ``tcp_connections`` value (the old name of ``concurrency``) if one was given."""
    for name in compat:
        if name not in _DEPRECATED:
            close = difflib.get_close_matches(name, [*_DEPRECATED, *known], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"download() got an unknown argument {name!r}{hint}")
    tcp_connections = compat.get("tcp_connections")
    if "tcp_connections" in compat:
        warnings.warn(
            "tcp_connections is deprecated; use concurrency= (total requests in flight)",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
    for name in ("nb_workers", "batch_size"):
        if name in compat:
            warnings.warn(
                f"{name} is ignored and deprecated: the engine sizes its own work; "
                "use concurrency= and per_host= to bound requests",
                DeprecationWarning,
                stacklevel=stacklevel,
            )
    return None if tcp_connections is None else int(tcp_connections)


@dataclass(frozen=True, kw_only=True)
class DownloadOptions:
    """How records are downloaded: where, in which layout, with which splits, fetch settings,
    failure tolerance and (for ``runner=`` jobs) shards and runner.

    :func:`gbif_dl.io.download` builds one from its keywords (:meth:`from_keywords`);
    ``RunConfig.download_options()`` builds one from a query file. Checked at construction,
    before any I/O.

    Attributes:
        root: the output folder.
        output: the layout, a name of :data:`gbif_dl.writers.registry.OUTPUTS`.
        splits: ``{"train": .8, "val": .2}``: grouped, deterministic splits (by ``split_by``).
        random_subsets: gbif-dl 0.1's per-URL subsets (not with ``splits``).
        split_by: the record field grouping items for ``splits`` (``"gbifID"``: all media of one
            occurrence in one split; ``"url"``: each item on its own).
        seed: the seed of the split assignment.
        overwrite: fetch and rewrite items that are already done.
        retry_failed: request again the items that failed for good in an earlier run (404, an
            HTML page, ...; see :func:`gbif_dl.fetch.result.is_permanent`); by default a rerun
            leaves them failed and retries only the transient failures.
        fail_threshold: stop when more than this share of items fails (0..1), or None.
        verbose: log every failed item at INFO level.
        progress: None = a bar on a terminal, log lines otherwise; True/False to force.
        fetch: the :class:`~gbif_dl.fetch.engine.FetchConfig` of the whole job.
        shard_size, shard_bytes: samples (default 10,000) or bytes per WebDataset shard; with
            a runner, records per job shard (default 10,000).
        runner: None (one process, streaming), ``"local"`` or ``"dask"``.
        workers, dask_address, dask_client: where a ``runner=`` job runs: processes of the local
            runner or of the Dask LocalCluster started when neither ``dask_address``
            (``"tcp://host:8786"``) nor ``dask_client`` (a ``distributed.Client``) is given.
        storage_options: for a ``root`` that is an fsspec URL (``"s3://bucket/ds"``): passed to
            fsspec as pandas and Dask do (``{"key": ..., "secret": ..., "client_kwargs":
            {"endpoint_url": ...}}``); such a root takes ``output="webdataset"`` or ``"hf"``.
        work_dir: the local folder keeping a store root's run state (default: a folder per
            root under ``~/.cache/gbif-dl/stores``).
        short_streams: for quota'd items (:mod:`gbif_dl.sampling.spares`), what happens when
            a stream runs dry (fewer usable candidates than its quota): ``"trim"`` cuts the
            other streams to its count (their surplus files removed, rows ``trimmed``),
            ``"keep"`` keeps them; None (default): ``"trim"`` for items of an
            ``nb_samples=-1`` request, ``"keep"`` otherwise. ``output="webdataset"`` cannot
            remove files from a written tar: ``"trim"`` is refused, the default keeps.
        processes: without a runner, how many processes fetch on this machine: 1 (the
            streaming download in this process), N, or ``"auto"`` (default: one per CPU for
            an input of 5,000 records or more, the streaming download otherwise, see
            :mod:`gbif_dl.runners.processes`); N > 1 runs as ``runner="local"`` with
            ``workers=N``, in shards of 2,000 records unless ``shard_size`` says otherwise.
            Ignored with a ``runner``.
        content_hashes, near_duplicate_distance, drop_near_duplicates, placeholder_occurrences:
            one photo stored once and in one split, placeholders excluded (see
            :class:`gbif_dl.dedupe.policy.ContentPolicy`; :meth:`content_policy`).
            ``content_hashes=None`` (default): on when ``splits`` are asked for (a leak-free
            split needs it; it costs a JPEG decode per image, 3 to 6% of images/s when the
            network is the limit, up to 40% when the CPU is, see BENCHMARKS.md), else off.

    Raises:
        ConfigError: a bad value or combination, naming the keyword.

    Example:
        >>> DownloadOptions(splits={"train": 0.5}, random_subsets={"a": 1.0})
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: random_subsets and splits cannot be combined; use splits= \
with split_by='url' for independent draws, or split_by='gbifID' to keep occurrences together
    """

    root: str | os.PathLike[str] = "data"
    output: str = "imagefolder"
    splits: Mapping[str, float] | None = None
    random_subsets: Mapping[str, float] | None = None
    split_by: str = "gbifID"
    seed: int | str = 0
    overwrite: bool = False
    retry_failed: bool = False
    fail_threshold: float | None = None
    verbose: bool = False
    progress: bool | None = None
    fetch: FetchConfig = dataclasses.field(default_factory=_default_fetch)
    shard_size: int | None = None
    shard_bytes: int | None = None
    runner: str | None = None
    workers: int | None = None
    dask_address: str | None = None
    dask_client: Any = None
    storage_options: Mapping[str, Any] | None = None
    work_dir: str | os.PathLike[str] | None = None
    short_streams: str | None = None
    processes: int | str = "auto"
    content_hashes: bool | None = None
    near_duplicate_distance: int = DEFAULT_NEAR_DISTANCE
    drop_near_duplicates: bool = False
    placeholder_occurrences: int = DEFAULT_PLACEHOLDER_OCCURRENCES

    def __post_init__(self) -> None:
        from gbif_dl.fetch.engine import FetchConfig
        from gbif_dl.pipeline.quotas import check_short_streams

        if (
            check_short_streams(self.short_streams) == "trim"
            and not writer_class(self.output).removable
        ):
            raise ConfigError(
                f"short_streams='trim' removes stored files, which output={self.output!r} "
                "cannot do (a written tar stays as it is); use short_streams='keep' or "
                "output='imagefolder'"
            )

        object.__setattr__(self, "root", local_root(self.root))  # file://path: a local folder
        check_store_options(
            self.root,
            output=self.output,
            runner=self.runner,
            storage_options=self.storage_options,
        )

        if not isinstance(self.fetch, FetchConfig):
            raise ConfigError(f"fetch must be a FetchConfig; got {type(self.fetch).__name__}")
        self.assigner()  # checks splits / random_subsets / split_by
        check_fail_threshold(self.fail_threshold)
        self._check_processes()
        self.content_policy()  # checks the content options
        if self.runner is None and self.processes in (1, "auto"):
            check_writer_options(self.output, self.writer_options())
        else:
            self._check_sharded()

    def _check_processes(self) -> None:
        processes = self.processes
        if processes != "auto" and (
            isinstance(processes, bool) or not isinstance(processes, int) or processes < 1
        ):
            raise ConfigError(f"processes must be a positive integer or 'auto'; got {processes!r}")
        if processes not in (1, "auto") and is_store_root(self.root):
            raise ConfigError(
                f"processes={processes!r} cannot write to the object store {self.root!r} yet; "
                "drop processes= (the streaming run writes to the store)"
            )
        if processes not in (1, "auto") and self.runner is not None:
            raise ConfigError(
                f"processes={processes!r} is for downloads without a runner; with "
                f"runner={self.runner!r} use workers= for the number of processes"
            )

    def _check_sharded(self) -> None:
        if self.runner is not None and self.runner not in RUNNER_NAMES:
            raise ConfigError(
                f"unknown runner {self.runner!r}; use one of {', '.join(map(repr, RUNNER_NAMES))}"
            )
        if not writer_class(self.output).shardable or self.shard_bytes is not None:
            bytes_note = "" if self.shard_bytes is None else f", shard_bytes={self.shard_bytes!r}"
            name, value = ("runner", self.runner) if self.runner else ("processes", self.processes)
            raise ConfigError(
                f"{name}={value!r} writes output='imagefolder' or 'hf' (got "
                f"output={self.output!r}{bytes_note}); drop {name}= for output='webdataset'"
            )
        size = self.shard_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"shard_size must be a positive integer; got {size!r}")

    def assigner(self) -> Callable[[Mapping[str, Any]], str] | None:
        """``f(record) -> split`` for records without a ``subset``, or None (no splits).

        Example:
            >>> DownloadOptions(splits={"train": 1.0}).assigner()({"gbifID": "1"})
            'train'
        """
        if self.random_subsets is not None and self.splits is not None:
            raise ConfigError(
                "random_subsets and splits cannot be combined; use splits= with split_by='url' "
                "for independent draws, or split_by='gbifID' to keep occurrences together"
            )
        if self.random_subsets is not None:
            return Splitter(self.random_subsets, by="url", seed=self.seed)
        if self.splits is not None:
            if not isinstance(self.split_by, str) or not self.split_by:
                raise ConfigError(
                    f"split_by must be a record field name such as 'gbifID'; got {self.split_by!r}"
                )
            return Splitter(self.splits, by=self.split_by, seed=self.seed)
        return None

    def content_policy(self) -> ContentPolicy:
        """What the run does with duplicates, near duplicates and placeholders.

        Example:
            >>> DownloadOptions(drop_near_duplicates=True).content_policy().drop_near
            True
            >>> DownloadOptions().content_policy().enabled  # no splits: off by default
            False
            >>> DownloadOptions(splits={"train": 0.8, "test": 0.2}).content_policy().enabled
            True
        """
        hashes = self.content_hashes
        return ContentPolicy(
            content_hashes=bool(self.splits) if hashes is None else hashes,
            near_duplicate_distance=self.near_duplicate_distance,
            drop_near_duplicates=self.drop_near_duplicates,
            placeholder_occurrences=self.placeholder_occurrences,
        )

    def writer_options(self) -> dict[str, Any]:
        """The options of the streaming run's writer (``shard_size``/``shard_bytes``, if given).

        Example:
            >>> DownloadOptions(output="webdataset", shard_size=100).writer_options()
            {'shard_size': 100}
        """
        given = {"shard_size": self.shard_size, "shard_bytes": self.shard_bytes}
        return {name: value for name, value in given.items() if value is not None}

    def replace(self, **changes: Any) -> DownloadOptions:
        """A copy with some fields changed (checked again).

        Example:
            >>> DownloadOptions().replace(root="elsewhere").root
            'elsewhere'
        """
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The field names, in order.

        Example:
            >>> DownloadOptions.field_names()[:2]
            ('root', 'output')
        """
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_keywords(
        cls,
        keywords: Mapping[str, Any],
        compat: Mapping[str, Any] | None = None,
        *,
        stacklevel: int = 2,
    ) -> DownloadOptions:
        """Build from :func:`gbif_dl.io.download`'s keywords: the fetch ones (``retries``,
        ``concurrency``, ``per_host``, ``max_size``, ...) go into ``fetch``, the others are
        fields; ``compat`` holds extra keywords (gbif-dl 0.1's deprecated ones are accepted with
        a DeprecationWarning at ``stacklevel`` above the caller, others are a ConfigError).

        Example:
            >>> opts = DownloadOptions.from_keywords({"retries": 1, "per_host": 4, "root": "x"})
            >>> opts.fetch.retry.retries, opts.fetch.per_host, opts.root
            (1, 4, 'x')
        """
        fields = set(cls.field_names())
        known = [*FETCH_KEYWORDS, *sorted(fields - {"fetch"})]
        tcp_connections = _apply_compat(dict(compat or {}), known, stacklevel + 1)
        fetch_values = {name: keywords.get(name) for name in FETCH_KEYWORDS}
        if fetch_values["concurrency"] is None:
            fetch_values["concurrency"] = tcp_connections
        values = {name: value for name, value in keywords.items() if name in fields}
        for name in keywords:
            if name not in fields and name not in FETCH_KEYWORDS:
                raise ConfigError(f"download() got an unknown argument {name!r}")
        if values.get("fetch") is None:
            values["fetch"] = _fetch_config(fetch_values)
        return cls(**values)

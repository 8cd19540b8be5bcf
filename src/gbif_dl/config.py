"""Query files for the ``gbif-dl`` command: TOML or YAML, the same keys as the Python API.

A query file describes one dataset: where the records come from (``queries`` for the occurrence
search, or ``dwca``, or ``urls``), how to sample them, and where and how to download them
(``root`` is the folder, ``output`` the layout: ``imagefolder``, ``webdataset`` or ``hf``;
``runner``/``workers``/``dask_address`` run it in shards)::

    # bees.toml
    label = "speciesKey"
    split_streams_by = "speciesKey"
    nb_samples = 500
    seed = 42
    licenses = ["CC0_1_0", "CC_BY_4_0"]
    root = "bees"
    output = "webdataset"
    splits = { train = 0.8, val = 0.1, test = 0.1 }

    [queries]
    taxonKey = [1340278]
    country = ["FR", "DE"]

Unknown keys are rejected before any request, with the closest valid key suggested.

Example:
    >>> config = RunConfig.from_mapping({"queries": {"speciesKey": [5352251]}, "nb_samples": 10})
    >>> config.source, config.nb_samples, config.root
    ('search', 10, 'data')
    >>> RunConfig.from_mapping({"nb_sample": 10})  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    gbif_dl.errors.ConfigError: unknown key 'nb_sample'; did you mean 'nb_samples'?
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError
from gbif_dl.options import RUNNER_NAMES, DownloadOptions, SamplingOptions
from gbif_dl.sampling.filters import DEFAULT_MEDIATYPE
from gbif_dl.sampling.spares import DEFAULT_SPARES
from gbif_dl.writers.registry import output_names

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_SPLITS",
    "OUTPUT_LAYOUTS",
    "RUNNER_NAMES",
    "RunConfig",
    "load_config",
    "suggest_key",
]

#: The splits ``gbif-dl demo`` uses; ``download`` uses none unless asked.
DEFAULT_SPLITS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}

#: The values of ``output``: the names of the one output registry
#: (:data:`gbif_dl.writers.registry.OUTPUTS`; reading it imports no writer).
OUTPUT_LAYOUTS: tuple[str, ...] = output_names()

_ALIASES = {"random_subsets": "splits", "api": "api_url"}


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one ``gbif-dl download`` or ``plan`` run needs, validated.

    Build it with :meth:`from_mapping` (a parsed query file or flags) or :func:`load_config`;
    combine a file with command-line flags with :meth:`merged`.

    Example:
        >>> base = RunConfig.from_mapping({"urls": "list.txt", "root": "out"})
        >>> base.merged({"root": "elsewhere"}).root
        'elsewhere'
    """

    # sources (exactly one)
    queries: Mapping[str, Any] | None = None
    dwca: str | None = None
    urls: str | None = None
    api_url: str | None = None
    # sampling (the keyword arguments of gbif_dl.api.generate_urls)
    label: str | None = None
    split_streams_by: str | list[str] | None = None
    nb_samples: int | None = None
    nb_samples_per_stream: int | None = None
    weighted_streams: bool = False
    subset_streams: Mapping[str, Any] | None = None
    mediatype: str = DEFAULT_MEDIATYPE
    one_media_per_occurrence: bool = True
    license_info: bool = True
    seed: int | None = None
    licenses: list[str] | None = None
    dedupe: bool = True
    spares: float = DEFAULT_SPARES
    # download (the keyword arguments of gbif_dl.io.download)
    root: str = "data"
    output: str = "imagefolder"
    splits: Mapping[str, float] | None = None
    max_size: int | None = None
    concurrency: int | None = None
    per_host: int | None = None
    fail_threshold: float = 0.1
    retry_failed: bool = False
    shard_size: int | None = None
    shard_bytes: int | None = None
    runner: str | None = None
    workers: int | None = None
    dask_address: str | None = None
    allow_private: bool | None = None
    storage_options: Mapping[str, Any] | None = None
    work_dir: str | None = None
    renditions: bool | None = None
    short_streams: str | None = None
    processes: int | str | None = None
    content_hashes: bool | None = None
    near_duplicate_distance: int | None = None
    drop_near_duplicates: bool | None = None
    placeholder_occurrences: int | None = None
    # where relative paths in the file are resolved from (not a key of the file)
    base_dir: str = field(default=".", repr=False)

    @property
    def source(self) -> str:
        """``"search"``, ``"dwca"`` or ``"urls"``: where records come from."""
        if self.dwca is not None:
            return "dwca"
        if self.urls is not None:
            return "urls"
        return "search"

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = ".", where: str = ""
    ) -> RunConfig:
        """Validate a mapping of keys (from a file or flags) into a :class:`RunConfig`.

        Raises:
            ConfigError: an unknown key (with a suggestion), a value of the wrong type, or
                not exactly one source.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{where or 'the configuration'} must be a table of keys such as "
                "'queries', 'nb_samples', 'root'; got " + type(data).__name__
            )
        values: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = _ALIASES.get(str(raw_key), str(raw_key))
            if key not in CONFIG_KEYS:
                raise ConfigError(_unknown_key_message(str(raw_key), where))
            if key in values:
                raise ConfigError(f"{_at(where)}{raw_key!r} and {key!r} mean the same; keep one")
            if value is None:  # `key:` without a value in YAML: not given, the default applies
                continue
            values[key] = _check_type(key, value, where)
        config = cls(base_dir=str(base_dir), **values)
        config.validate(where)
        return config

    def merged(self, overrides: Mapping[str, Any]) -> RunConfig:
        """A copy with ``overrides`` (keys set to ``None`` are ignored) applied and re-validated.

        Setting one source (``queries``, ``dwca`` or ``urls``) replaces the file's source.
        """
        values = {k: v for k, v in overrides.items() if v is not None}
        for key in values:
            if key not in CONFIG_KEYS:
                raise ConfigError(_unknown_key_message(key, "command line"))
            values[key] = _check_type(key, values[key], "command line")
        if any(k in values for k in ("queries", "dwca", "urls")):
            for key in ("queries", "dwca", "urls"):
                values.setdefault(key, None)
        config = dataclasses.replace(self, **values)
        config.validate("")
        return config

    def validate(self, where: str = "") -> None:
        """Check the combination of values (one source, sane numbers); raise ConfigError."""
        sources = [k for k in ("queries", "dwca", "urls") if getattr(self, k) is not None]
        if len(sources) > 1:
            raise ConfigError(
                f"{_at(where)}choose one source, not {' and '.join(sources)}: "
                "queries (occurrence search), dwca (download key, DOI or zip) or urls (a file)"
            )
        for key in ("nb_samples", "nb_samples_per_stream"):
            value = getattr(self, key)
            if value is not None and value < -1:
                raise ConfigError(f"{_at(where)}{key} must be a positive number or -1 (all)")
        for key in ("max_size", "concurrency", "per_host", "shard_size", "shard_bytes", "workers"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"{_at(where)}{key} must be a positive number, got {value}")
        self._validate_layout(where)
        if not 0.0 <= self.fail_threshold <= 1.0:
            raise ConfigError(
                f"{_at(where)}fail_threshold is a fraction of failed images between 0 and 1, "
                f"got {self.fail_threshold}"
            )
        if self.splits is not None:
            total = sum(self.splits.values())
            if any(v < 0 for v in self.splits.values()) or abs(total - 1.0) > 1e-6:
                raise ConfigError(
                    f"{_at(where)}splits must be non-negative fractions that sum to 1, such as "
                    "{train = 0.8, val = 0.1, test = 0.1}; got " + repr(dict(self.splits))
                )

    def _validate_layout(self, where: str) -> None:
        """``output``, the shard options and the runner options, and how they combine."""
        at = _at(where)
        if self.output not in OUTPUT_LAYOUTS:
            close = difflib.get_close_matches(self.output, OUTPUT_LAYOUTS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{at}output = {self.output!r} is not a layout; {hint}output is the layout, one "
                f"of {', '.join(map(repr, OUTPUT_LAYOUTS))}. The output folder is set with "
                f"root = {self.output!r} (-o/--root on the command line)"
            )
        if self.runner is not None and self.runner not in RUNNER_NAMES:
            raise ConfigError(
                f"{at}runner = {self.runner!r} is unknown; use one of "
                f"{', '.join(map(repr, RUNNER_NAMES))}, or leave it out for one process"
            )
        if self.runner is not None and self.output == "webdataset":
            raise ConfigError(
                f"{at}runner = {self.runner!r} writes output 'imagefolder' or 'hf', not "
                "'webdataset'; drop runner for WebDataset shards"
            )
        if self.shard_bytes is not None and (self.output != "webdataset" or self.runner):
            raise ConfigError(
                f"{at}shard_bytes is the size of a WebDataset shard: it needs "
                "output = 'webdataset' and no runner"
            )
        if self.shard_size is not None and self.output != "webdataset" and not self.runner:
            raise ConfigError(
                f"{at}shard_size needs output = 'webdataset' (samples per .tar shard) or a "
                f"runner (records per shard); got output = {self.output!r} and no runner"
            )
        if self.processes is not None and (
            self.processes != "auto" and (not isinstance(self.processes, int) or self.processes < 1)
        ):
            raise ConfigError(f"{at}processes must be a positive number or 'auto'")
        if self.processes not in (None, 1) and self.runner is not None:
            raise ConfigError(
                f"{at}processes is for downloads without a runner; with runner = "
                f"{self.runner!r} use workers for the number of processes"
            )
        if self.workers is not None and self.runner is None:
            raise ConfigError(
                f"{at}workers needs a runner: add runner = 'local' (processes on this machine) "
                "or runner = 'dask' (workers of a local Dask cluster)"
            )
        if self.dask_address is not None and self.runner != "dask":
            raise ConfigError(
                f"{at}dask_address needs runner = 'dask'; got runner = {self.runner!r}"
            )
        if self.dask_address is not None and not self.dask_address.strip():
            raise ConfigError(
                f"{at}dask_address must be a scheduler address such as tcp://host:8786"
            )

    def resolve_path(self, value: str) -> str:
        """A relative path from the query file, resolved against the file's folder."""
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else Path(self.base_dir) / path)

    def generate_kwargs(self) -> dict[str, Any]:
        """The sampling keyword arguments for ``generate_urls`` (search or DwC-A)."""
        kwargs: dict[str, Any] = {
            "label": self.label,
            "split_streams_by": self.split_streams_by,
            "nb_samples": self.nb_samples,
            "nb_samples_per_stream": self.nb_samples_per_stream,
            "weighted_streams": self.weighted_streams,
            "subset_streams": self.subset_streams,
            "mediatype": self.mediatype,
            "one_media_per_occurrence": self.one_media_per_occurrence,
            "license_info": self.license_info,
            "seed": self.seed,
            "licenses": self.licenses,
            "dedupe": self.dedupe,
            "spares": self.spares,
        }
        return kwargs

    def download_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``gbif_dl.io.download`` (``None`` values left out)."""
        kwargs = {
            "root": self.root,
            "output": self.output,
            "splits": dict(self.splits) if self.splits else None,
            "seed": self.seed,
            "max_size": self.max_size,
            "concurrency": self.concurrency,
            "per_host": self.per_host,
            "retry_failed": self.retry_failed or None,
            "shard_size": self.shard_size,
            "shard_bytes": self.shard_bytes,
            "runner": self.runner,
            "workers": self.workers,
            "dask_address": self.dask_address,
            "allow_private": self.allow_private,
            "storage_options": dict(self.storage_options) if self.storage_options else None,
            "work_dir": self.work_dir,
            "renditions": self.renditions,
            "short_streams": self.short_streams,
            "processes": self.processes,
            "content_hashes": self.content_hashes,
            "near_duplicate_distance": self.near_duplicate_distance,
            "drop_near_duplicates": self.drop_near_duplicates,
            "placeholder_occurrences": self.placeholder_occurrences,
        }
        return {k: v for k, v in kwargs.items() if v is not None}

    def sampling_options(self) -> SamplingOptions:
        """The sampling keys as :class:`~gbif_dl.options.SamplingOptions`.

        Example:
            >>> RunConfig.from_mapping({"label": "family", "seed": 3}).sampling_options().seed
            3
        """
        return SamplingOptions.pick(self.generate_kwargs())

    def download_options(self, **overrides: Any) -> DownloadOptions:
        """The download keys (:meth:`download_kwargs`) as :class:`~gbif_dl.options.DownloadOptions`;
        ``overrides`` are further ``download()`` keywords (``progress=False``, ...).

        ``fail_threshold`` is not passed on: for ``gbif-dl download`` it is the share of failures
        above which the command exits with an error once the run is over, not a reason to stop
        the run early.

        Example:
            >>> config = RunConfig.from_mapping({"urls": "u.txt", "per_host": 4, "root": "out"})
            >>> options = config.download_options(progress=False)
            >>> options.root, options.fetch.per_host, options.progress
            ('out', 4, False)
        """
        return DownloadOptions.from_keywords({**self.download_kwargs(), **overrides})


#: Every key a query file may use (plus the aliases ``random_subsets`` for ``splits`` and ``api``
#: for ``api_url``).
CONFIG_KEYS: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(RunConfig) if f.name != "base_dir"
)

_TYPES: dict[str, tuple[type, ...]] = {
    "queries": (dict,),
    "dwca": (str, int),
    "urls": (str,),
    "api_url": (str,),
    "label": (str,),
    "split_streams_by": (str, list),
    "nb_samples": (int,),
    "nb_samples_per_stream": (int,),
    "weighted_streams": (bool,),
    "subset_streams": (dict,),
    "mediatype": (str,),
    "one_media_per_occurrence": (bool,),
    "license_info": (bool,),
    "seed": (int,),
    "licenses": (list, str),
    "dedupe": (bool,),
    "root": (str,),
    "output": (str,),
    "splits": (dict,),
    "max_size": (int,),
    "concurrency": (int,),
    "per_host": (int,),
    "fail_threshold": (float, int),
    "retry_failed": (bool,),
    "shard_size": (int,),
    "shard_bytes": (int,),
    "runner": (str,),
    "workers": (int,),
    "dask_address": (str,),
    "allow_private": (bool,),
    "storage_options": (dict,),
    "work_dir": (str,),
    "renditions": (bool,),
    "spares": (float, int),
    "short_streams": (str,),
    "processes": (int, str),
    "content_hashes": (bool,),
    "near_duplicate_distance": (int,),
    "drop_near_duplicates": (bool,),
    "placeholder_occurrences": (int,),
}


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def suggest_key(name: str, valid: Any = CONFIG_KEYS) -> str | None:
    """The valid key closest to ``name``, or ``None`` when nothing is close.

    Example:
        >>> suggest_key("nb_sample"), suggest_key("zzz")
        ('nb_samples', None)
    """
    lowered = {k.lower(): k for k in valid}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _unknown_key_message(key: str, where: str) -> str:
    close = suggest_key(key, CONFIG_KEYS | set(_ALIASES))
    hint = (
        f"did you mean {_ALIASES.get(close, close)!r}?"
        if close
        else "valid keys: " + ", ".join(sorted(CONFIG_KEYS))
    )
    return f"{_at(where)}unknown key {key!r}; {hint}"


def _check_type(key: str, raw: Any, where: str) -> Any:
    if raw is None:
        return None
    value: Any = raw
    expected = _TYPES[key]
    is_bool_mismatch = isinstance(raw, bool) and bool not in expected
    if is_bool_mismatch or not isinstance(raw, expected):
        names = " or ".join(_type_name(t) for t in expected)
        raise ConfigError(f"{_at(where)}{key} must be {names}, got {value!r}")
    if key == "licenses" and isinstance(value, str):
        return [value]
    if key == "dwca":
        return str(value)
    if key == "fail_threshold":
        return float(value)
    if key == "splits":
        for name, fraction in value.items():
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
                raise ConfigError(
                    f"{_at(where)}splits.{name} must be a fraction such as 0.8, got {fraction!r}"
                )
        return {str(k): float(v) for k, v in value.items()}
    return value


def _type_name(t: type) -> str:
    return {
        dict: "a table",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
    }.get(t, t.__name__)


def _parse(path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"query file {path} not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read query file {path}: {exc}") from None
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}; fix the file") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"{path} is not valid YAML: {detail}; fix the file") from None
    raise ConfigError(
        f"query file {path} must end in .toml, .yaml or .yml so gbif-dl knows how to read it"
    )


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a TOML or YAML query file.

    Relative ``urls`` and ``dwca`` paths in the file are resolved against the file's folder;
    ``root`` stays relative to the working directory.

    Raises:
        ConfigError: the file is missing, unparsable, or has an unknown key or bad value.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> file = Path(tempfile.mkdtemp()) / "q.yaml"
        >>> _ = file.write_text("queries: {speciesKey: [1]}\\nnb_samples: 5\\n")
        >>> load_config(file).nb_samples
        5
    """
    file = Path(path)
    data = _parse(file)
    config = RunConfig.from_mapping(data, base_dir=file.parent, where=str(file))
    changes: dict[str, Any] = {}
    if config.urls is not None:
        changes["urls"] = config.resolve_path(config.urls)
    if (
        config.dwca is not None
        and config.dwca.lower().endswith(".zip")
        and "://" not in config.dwca
    ):
        changes["dwca"] = config.resolve_path(config.dwca)
    return dataclasses.replace(config, **changes) if changes else config

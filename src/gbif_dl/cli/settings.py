"""From parsed arguments to a run: the :class:`RunConfig`, its sampling options, its records.

A query file and the flags merge into one :class:`gbif_dl.config.RunConfig` (flags win). A
``mediaType`` key in the query (``--query mediaType=Sound``) is GBIF's spelling of the media
type: it becomes the ``mediatype`` option, so ``plan`` and ``download`` use it alike.

Example:
    >>> parse_queries(["speciesKey=1", "speciesKey=2", "country=FR"])
    {'speciesKey': [1, 2], 'country': 'FR'}
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from typing import Any

from gbif_dl.config import RunConfig, load_config
from gbif_dl.errors import ConfigError
from gbif_dl.options import SamplingOptions

__all__ = [
    "parse_queries",
    "parse_splits",
    "parse_storage_options",
    "records_of",
    "require_source",
    "run_config",
    "sampling_options",
]

#: The flags that map one to one onto a RunConfig key (argparse dest -> key).
_DIRECT_FLAGS = (
    "dwca",
    "urls",
    "api_url",
    "label",
    "nb_samples",
    "nb_samples_per_stream",
    "weighted_streams",
    "seed",
    "licenses",
    "mediatype",
    "root",
    "max_size",
    "concurrency",
    "per_host",
    "fail_threshold",
    "retry_failed",
    "output",
    "shard_size",
    "shard_bytes",
    "runner",
    "workers",
    "dask_address",
    "allow_private",
    "work_dir",
    "renditions",
    "spares",
    "short_streams",
    "processes",
    "content_hashes",
    "near_duplicate_distance",
    "drop_near_duplicates",
    "placeholder_occurrences",
)


def _parse_value(text: str) -> Any:
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def parse_queries(items: Sequence[str] | None) -> dict[str, Any] | None:
    """``["speciesKey=1", "speciesKey=2", "country=FR"]`` -> ``{"speciesKey": [1, 2], ...}``.

    Example:
        >>> parse_queries(None) is None
        True
    """
    if not items:
        return None
    query: dict[str, list[Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(
                f"--query expects NAME=VALUE, such as speciesKey=5352251; got {item!r}"
            )
        query.setdefault(name.strip(), []).append(_parse_value(value))
    return {k: v[0] if len(v) == 1 else v for k, v in query.items()}


def parse_storage_options(items: Sequence[str] | None) -> dict[str, Any] | None:
    """``["key=AKIA...", "client_kwargs.endpoint_url=http://h:9000"]`` -> a nested dict; values
    are JSON when they parse as JSON (``anon=true``, ``max_concurrency=8``), text otherwise.

    Example:
        >>> parse_storage_options(["anon=true", "client_kwargs.region_name=eu-west-1"])
        {'anon': True, 'client_kwargs': {'region_name': 'eu-west-1'}}
    """
    if not items:
        return None
    options: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        path = [part.strip() for part in name.split(".")]
        if not sep or not all(path):
            raise ConfigError(
                "--storage-option expects KEY=VALUE, such as key=AKIA... or "
                f"client_kwargs.endpoint_url=http://localhost:9000; got {item!r}"
            )
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        target = options
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--storage-option {item!r}: {part!r} is already a value")
        target[path[-1]] = value
    return options


def parse_splits(text: str | None) -> dict[str, float] | None:
    """``"train=0.8,test=0.2"`` -> ``{"train": 0.8, "test": 0.2}``.

    Example:
        >>> parse_splits("train=0.8,test=0.2")
        {'train': 0.8, 'test': 0.2}
    """
    if not text:
        return None
    splits: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            splits[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(
                "--splits expects NAME=FRACTION,..., such as train=0.8,val=0.1,test=0.1; "
                f"got {text!r}"
            )
    return splits


def _media_type_from_query(config: RunConfig, flag_given: bool) -> RunConfig:
    """Move a ``mediaType`` query key (GBIF's name) to the ``mediatype`` option."""
    from gbif_dl.gbif.params import canonical_name

    if config.queries is None:
        return config
    keys = [k for k in config.queries if canonical_name(str(k)) == "mediaType"]
    if not keys:
        return config
    values = [config.queries[k] for k in keys]
    flat = [x for v in values for x in (v if isinstance(v, (list, tuple)) else [v])]
    if len(set(map(str, flat))) != 1:
        raise ConfigError(
            f"the query asks for several media types ({', '.join(map(str, flat))}); "
            "download one media type per run"
        )
    wanted = str(flat[0])
    if flag_given and config.mediatype.lower() != wanted.lower():
        raise ConfigError(
            f"--mediatype {config.mediatype} and the query's mediaType={wanted} disagree; "
            "give the media type once"
        )
    rest = {k: v for k, v in config.queries.items() if k not in keys}
    return config.merged({"queries": rest, "mediatype": wanted})


def run_config(args: argparse.Namespace) -> RunConfig:
    """The query file (if any) merged with the flags, checked.

    Example:
        >>> args = argparse.Namespace(query=["mediaType=Sound", "speciesKey=1"])
        >>> config = run_config(args)
        >>> config.mediatype, dict(config.queries)
        ('Sound', {'speciesKey': 1})
    """
    base = load_config(args.config) if getattr(args, "config", None) else RunConfig()
    streams = getattr(args, "split_streams_by", None)
    if streams and "," in streams:
        streams = [s.strip() for s in streams.split(",") if s.strip()]
    overrides = {name: getattr(args, name, None) for name in _DIRECT_FLAGS}
    overrides.update(
        queries=parse_queries(getattr(args, "query", None)),
        split_streams_by=streams,
        one_media_per_occurrence=False if getattr(args, "all_media", None) else None,
        splits=parse_splits(getattr(args, "splits", None)),
    )
    storage = parse_storage_options(getattr(args, "storage_option", None))
    if storage:  # the flags complete (and win over) the file's storage_options
        overrides["storage_options"] = {**(base.storage_options or {}), **storage}
    config = base.merged(overrides)
    return _media_type_from_query(config, getattr(args, "mediatype", None) is not None)


def sampling_options(config: RunConfig) -> SamplingOptions:
    """The sampling options of ``config``.

    Example:
        >>> sampling_options(RunConfig(label="family", nb_samples=5)).nb_samples
        5
    """
    return config.sampling_options()


def require_source(config: RunConfig, command: str) -> None:
    """Raise a usage error when ``config`` names no source of records.

    Example:
        >>> require_source(RunConfig(urls="list.txt"), "download")
    """
    if config.queries is None and config.dwca is None and config.urls is None:
        raise ConfigError(
            f"nothing to {command}: give a query file, or --query NAME=VALUE, --dwca KEY|DOI|PATH "
            "or --urls FILE (see `gbif-dl download --help`)"
        )


def records_of(config: RunConfig, *, dwca_dir: str | None = None) -> Iterable[Any]:
    """The record iterator of the configured source (nothing is requested before iteration).

    Example:
        >>> records = records_of(RunConfig(queries={"speciesKey": 1}))  # doctest: +SKIP
    """
    if config.urls is not None:
        from gbif_dl.sources.urls import read_urls

        return read_urls(config.urls, label=config.label)
    kwargs = sampling_options(config).as_kwargs()
    if config.dwca is not None:
        from gbif_dl import dwca

        if kwargs.pop("subset_streams") is not None:
            raise ConfigError(
                "subset_streams applies to occurrence searches (queries); for an archive use "
                "splits (--splits) instead"
            )
        return dwca.generate_urls(
            config.dwca, dwca_root_path=dwca_dir, api_url=config.api_url, **kwargs
        )
    from gbif_dl import api

    assert config.queries is not None
    return api.generate_urls(config.queries, api_url=config.api_url, **kwargs)

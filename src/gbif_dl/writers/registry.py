"""The one output registry: ``output=`` name -> its :class:`~gbif_dl.writers.base.Writer` class.

Every reader of layout names reads :data:`OUTPUTS`: the download options check ``output=``
against it, the query file (:data:`gbif_dl.config.OUTPUT_LAYOUTS`) lists its names, the
streaming run and the shards of a ``runner=`` job build their writer with :func:`make_writer`.
A class is named ``"module:Class"`` and imported on use, so reading the names imports no writer.
A new output format is one line here, never a branch elsewhere.

Example:
    >>> list(OUTPUTS)
    ['imagefolder', 'webdataset', 'hf']
    >>> writer_class("hf").__name__, writer_class("webdataset").shardable
    ('HFWriter', False)
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError
from gbif_dl.writers.base import Writer

__all__ = [
    "OUTPUTS",
    "check_shardable",
    "check_writer_options",
    "make_writer",
    "output_names",
    "writer_class",
]

#: ``output=`` name -> ``"module:Class"`` of its Writer; each class takes
#: ``(root, **writer_options)``.
OUTPUTS: dict[str, str] = {
    "imagefolder": "gbif_dl.writers.imagefolder:ImageFolderWriter",
    "webdataset": "gbif_dl.writers.webdataset:WebDatasetWriter",
    "hf": "gbif_dl.writers.hf:HFWriter",
}


def output_names() -> tuple[str, ...]:
    """The ``output=`` names, in order.

    Example:
        >>> output_names()[0]
        'imagefolder'
    """
    return tuple(OUTPUTS)


def writer_class(output: str) -> type[Writer]:
    """The Writer class of ``output``; ConfigError (with the closest name) for an unknown one.

    Example:
        >>> writer_class("imagefolder").__name__
        'ImageFolderWriter'
    """
    spec = OUTPUTS.get(output) if isinstance(output, str) else None
    if spec is None:
        close = difflib.get_close_matches(str(output), list(OUTPUTS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown output={output!r}; {hint}choose one of {', '.join(map(repr, OUTPUTS))}"
        )
    module_name, _, class_name = spec.partition(":")
    found: type[Writer] = getattr(importlib.import_module(module_name), class_name)
    return found


def check_writer_options(output: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options (None values dropped) ``output``'s writer takes, checked before any I/O.

    Raises:
        ConfigError: an unknown output, an option another layout takes, or a bad value.

    Example:
        >>> check_writer_options("webdataset", {"shard_size": 5, "shard_bytes": None})
        {'shard_size': 5}
        >>> check_writer_options("imagefolder", {"shard_size": 5})
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: shard_size= does not apply to output='imagefolder'; it is \
an option of output='webdataset'
    """
    cls = writer_class(output)
    given = {name: value for name, value in options.items() if value is not None}
    accepted = inspect.signature(cls).parameters
    for name in given:
        if name not in accepted:
            users = [
                key for key in OUTPUTS if name in inspect.signature(writer_class(key)).parameters
            ]
            raise ConfigError(
                f"{name}= does not apply to output={output!r}; it is an option of "
                f"output={' or '.join(map(repr, users)) or 'none'}"
            )
    cls.check_options(**given)
    return given


def make_writer(
    output: str,
    root: Path,
    options: Mapping[str, Any] | None = None,
    *,
    shard: bool = False,
    folders_before: Collection[str] | None = None,
) -> Writer:
    """A writer of ``output`` over ``root`` with its (checked) options.

    ``shard=True``: the writer of one shard of a ``runner=`` job (:meth:`Writer.for_shard`),
    which probes only ``folders_before`` (the folders that existed before the job, when
    known) for images an earlier run stored.

    Example:
        >>> import tempfile
        >>> type(make_writer("hf", Path(tempfile.mkdtemp()), shard=True)).__name__
        'HFWriter'
    """
    given = check_writer_options(output, options or {})
    if shard:
        check_shardable(output)
        return writer_class(output).for_shard(root, folders_before=folders_before, **given)
    return writer_class(output)(root, **given)


def check_shardable(output: str) -> None:
    """ConfigError unless ``output``'s writer can write the shards of a ``runner=`` job.

    Example:
        >>> check_shardable("hf")
        >>> check_shardable("webdataset")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: output='webdataset' cannot be written in shards by a runner...
    """
    if not writer_class(output).shardable:
        names = [name for name in OUTPUTS if writer_class(name).shardable]
        raise ConfigError(
            f"output={output!r} cannot be written in shards by a runner; use one of "
            f"{', '.join(map(repr, names))}, or drop runner="
        )

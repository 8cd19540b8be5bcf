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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gbif_dl.errors import ConfigError

__all__ = ["SamplingOptions"]


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
    mediatype: str | None = "StillImage"
    one_media_per_occurrence: bool = True
    license_info: bool = True
    seed: int | str | None = None
    licenses: tuple[str, ...] | None = None
    keep_unknown_licenses: bool = False
    dedupe: bool = True

    def __post_init__(self) -> None:
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

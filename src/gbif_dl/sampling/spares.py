"""Spares: the candidates a sampled stream keeps in reserve for the items that fail to download.

A source that samples (``nb_samples`` or ``nb_samples_per_stream``) tags every item it yields
with the keys of :data:`QUOTA_KEYS`: ``stream`` (a stable text key of its stream, such as
``speciesKey=5352251``), ``quota`` (how many stored items that stream should end with) and, for
``nb_samples=-1``, ``balanced``. After all the primary items it yields *spares*
(``spare: True``): per stream the next :func:`spares_for` candidates in the order the same
seeded sampler would have drawn them, interleaved round-robin across streams
(:func:`round_robin`). The downloader (:mod:`gbif_dl.pipeline.quotas`) fetches a spare only
when a stream has fewer stored items than its quota, so every stream ends with exactly its
quota whenever it has enough usable candidates.

Example:
    >>> spares_for(100, 0.25), spares_for(4, 0.25), spares_for(10, 0.0), spares_for(0, 0.25)
    (25, 2, 0, 0)
    >>> tag({"url": "http://h/a.jpg"}, "speciesKey=1", 100, spare=True)["spare"]
    True
    >>> list(round_robin([[1, 2, 3], [10], [20, 21]]))
    [1, 10, 20, 2, 21, 3]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, TypeVar

from gbif_dl.errors import ConfigError

__all__ = [
    "DEFAULT_SPARES",
    "MIN_SPARES",
    "QUOTA_KEYS",
    "check_spares",
    "round_robin",
    "spares_for",
    "stream_key",
    "tag",
]

T = TypeVar("T")

#: The item keys a sampling source adds (absent: the item has no quota, as before).
QUOTA_KEYS = ("stream", "quota", "spare", "balanced")
#: Spares per stream as a share of its quota, unless told otherwise (``spares=``).
DEFAULT_SPARES = 0.25
#: A stream with a quota gets at least this many spares (when ``spares`` > 0).
MIN_SPARES = 2


def check_spares(value: float) -> float:
    """``value`` if it is a valid ``spares`` share (a number >= 0).

    Example:
        >>> check_spares(0.1)
        0.1
        >>> check_spares(-1)
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: spares is the share of each stream's quota drawn as spares \
(0 for none, 0.25 by default), a number >= 0; got -1
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(
            "spares is the share of each stream's quota drawn as spares (0 for none, 0.25 by "
            f"default), a number >= 0; got {value!r}"
        )
    return float(value)


def spares_for(quota: int, share: float) -> int:
    """How many spares a stream with ``quota`` keeps: ``ceil(share * quota)``, at least
    :data:`MIN_SPARES` (none for a zero quota or a zero share).

    Example:
        >>> spares_for(300, 0.1), spares_for(1, 0.1)
        (30, 2)
    """
    if quota <= 0 or share <= 0:
        return 0
    return max(MIN_SPARES, math.ceil(share * quota))


def stream_key(values: Iterable[tuple[str, Any]]) -> str:
    """The text key of a stream from its ``(field, value)`` pairs (``all``: no split).

    The occurrence search and an archive name the same stream alike.

    Example:
        >>> stream_key([("speciesKey", "1"), ("datasetKey", "d")]), stream_key([])
        ('speciesKey=1,datasetKey=d', 'all')
    """
    return ",".join(f"{name}={value}" for name, value in values) or "all"


def tag(
    record: MutableMapping[str, Any],
    stream: str,
    quota: int,
    *,
    spare: bool = False,
    balanced: bool = False,
) -> MutableMapping[str, Any]:
    """Add the quota keys to ``record`` (in place) and return it.

    Example:
        >>> sorted(tag({}, "all", 3, balanced=True))
        ['balanced', 'quota', 'spare', 'stream']
    """
    record["stream"] = stream
    record["quota"] = int(quota)
    record["spare"] = bool(spare)
    if balanced:
        record["balanced"] = True
    return record


def round_robin(groups: Iterable[Iterable[T]]) -> Iterator[T]:
    """One item of each group in turn, until every group is used up.

    Example:
        >>> "".join(round_robin(["ab", "", "cde"]))
        'acbde'
    """
    iterators = [iter(group) for group in groups]
    while iterators:
        alive = []
        for iterator in iterators:
            for item in iterator:
                yield item
                alive.append(iterator)
                break
        iterators = alive

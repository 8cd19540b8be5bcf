"""Spares: the candidates a sampled stream keeps in reserve for the items that fail to download.

A source that samples (``nb_samples`` or ``nb_samples_per_stream``) tags every item it yields
with the keys of :data:`QUOTA_KEYS`: ``stream`` (a stable text key of its stream, such as
``speciesKey=5352251``), ``quota`` (how many stored items that stream should end with) and, for
``nb_samples=-1``, ``balanced``. After all the primary items come *spares*
(``spare: True``): per stream the next :func:`spares_for` candidates in the order the same
seeded sampler would have drawn them, interleaved round-robin across streams
(:func:`round_robin`). The downloader (:mod:`gbif_dl.pipeline.quotas`) fetches a spare only
when a stream has fewer stored items than its quota, so every stream ends with exactly its
quota whenever it has enough usable candidates. ``generate_urls`` returns a
:class:`SampledItems`: iterated, it gives the sample alone, as gbif-dl 0.1 did (``nb_samples``
items); ``gbif_dl.io.download`` takes the spares too (:func:`with_spares`).

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
from collections.abc import AsyncIterator, Iterable, Iterator, MutableMapping
from typing import Any, TypeVar

from gbif_dl.errors import ConfigError

__all__ = [
    "DEFAULT_SPARES",
    "MIN_SPARES",
    "QUOTA_KEYS",
    "AsyncSampledItems",
    "SampledItems",
    "check_spares",
    "round_robin",
    "spares_for",
    "stream_key",
    "tag",
    "with_spares",
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


class SampledItems(Iterator[dict[str, Any]]):
    """The items of a sampling generator as gbif-dl 0.1 yielded them: the sample, no spares.

    Iterating gives the sampled (primary) items only, so code written for gbif-dl 0.1 that
    consumes the generator itself gets exactly ``nb_samples`` items. gbif-dl's own downloader
    asks for :meth:`with_spares` (see :func:`with_spares`), which goes on with the spares.

    Example:
        >>> items = SampledItems(iter([{"url": "a"}, {"url": "b"}, {"url": "c", "spare": True}]))
        >>> [item["url"] for item in items]
        ['a', 'b']
        >>> items = SampledItems(iter([{"url": "a"}, {"url": "c", "spare": True}]))
        >>> [item["url"] for item in with_spares(items)]
        ['a', 'c']
    """

    def __init__(self, items: Iterator[dict[str, Any]]) -> None:
        self._items = items
        self._first_spare: dict[str, Any] | None = None
        self._sample_done = False

    def __iter__(self) -> SampledItems:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._sample_done:
            raise StopIteration
        item = next(self._items)
        if isinstance(item, dict) and item.get("spare"):
            self._first_spare, self._sample_done = item, True
            raise StopIteration
        return item

    def with_spares(self) -> Iterator[dict[str, Any]]:
        """The rest of the sample, then the spares."""
        yield from self
        if self._first_spare is not None:
            spare, self._first_spare = self._first_spare, None
            yield spare
        yield from self._items

    def close(self) -> None:
        """Close the underlying generator (its GBIF client, its archive)."""
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


class AsyncSampledItems(AsyncIterator[dict[str, Any]]):
    """The async form of :class:`SampledItems` (``agenerate_urls``).

    Example:
        >>> import asyncio
        >>> async def source():
        ...     for item in [{"url": "a"}, {"url": "b", "spare": True}]:
        ...         yield item
        >>> async def urls(items):
        ...     return [item["url"] async for item in items]
        >>> asyncio.run(urls(AsyncSampledItems(source())))
        ['a']
        >>> asyncio.run(urls(with_spares(AsyncSampledItems(source()))))
        ['a', 'b']
    """

    def __init__(self, items: AsyncIterator[dict[str, Any]]) -> None:
        self._items = items
        self._first_spare: dict[str, Any] | None = None
        self._sample_done = False

    def __aiter__(self) -> AsyncSampledItems:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._sample_done:
            raise StopAsyncIteration
        item = await self._items.__anext__()
        if isinstance(item, dict) and item.get("spare"):
            self._first_spare, self._sample_done = item, True
            raise StopAsyncIteration
        return item

    async def with_spares(self) -> AsyncIterator[dict[str, Any]]:
        """The rest of the sample, then the spares."""
        async for item in self:
            yield item
        if self._first_spare is not None:
            spare, self._first_spare = self._first_spare, None
            yield spare
        async for item in self._items:
            yield item

    async def aclose(self) -> None:
        """Close the underlying async generator."""
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            await aclose()


def with_spares(items: Any) -> Any:
    """``items`` with their spares, for a downloader: a sampling generator's spares follow its
    sample; any other iterable is returned as it is.

    Example:
        >>> with_spares([1, 2])
        [1, 2]
    """
    if isinstance(items, (SampledItems, AsyncSampledItems)):
        return items.with_spares()
    return items

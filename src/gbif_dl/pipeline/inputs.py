"""Every accepted input, normalised once; every record's split, assigned once.

``download(items, ...)`` takes a list, a generator, an async generator, a list of URL strings,
a single URL, a dict, or the path of a text file with one URL per line (gbif-dl 0.1's forms).
:func:`as_async_items` turns any of them into an async iterable for the streaming run,
:func:`as_sync_items` into a plain iterable for the shard planner (a synchronous input is read
as it is, without a detour through an event loop). :func:`normalize_item` turns one item into a
record: ``url`` stripped, ``basename`` and ``subset`` filled in, or the reason it cannot be
fetched. The streaming run, the shard planner and each shard all call it, so they agree.

Example:
    >>> prepared = normalize_item(" http://h.example/a.jpg ", None)
    >>> prepared.record["url"], prepared.problem
    ('http://h.example/a.jpg', None)
    >>> normalize_item(42, None).problem.value
    'invalid'
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from gbif_dl.errors import ConfigError
from gbif_dl.fetch.result import Reason
from gbif_dl.records import is_http_url, url_basename

__all__ = [
    "INVALID_ITEM",
    "Assign",
    "Items",
    "Prepared",
    "as_async_items",
    "as_sync_items",
    "normalize_item",
    "read_url_file",
    "source_items",
]

#: ``f(record) -> split name`` for records without a ``subset``.
Assign = Callable[[Mapping[str, Any]], str]
#: The record key that carries why an item is not a record (kept when a shard plan stores it).
INVALID_ITEM = "invalid_item"
_CHUNK = 256
_CHUNK_WAIT_S = 0.1


def read_url_file(path: Path) -> Iterator[str]:
    """The URLs of a text file, one a line (blank lines and ``#`` comments skipped).

    Example:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "urls.txt"
        >>> _ = file.write_text("# a comment\\nhttp://h/a.jpg\\n\\n")
        >>> list(read_url_file(file))
        ['http://h/a.jpg']
    """
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


@dataclass(frozen=True)
class Items:
    """An input in one of two forms: ``sync`` (an iterable) or ``async_`` (an async iterable).

    Attributes:
        sync: the items as a plain iterable, or None.
        async_: the items as an async iterable, or None.
        total: how many items, when known up front.
        blocking: True when iterating ``sync`` may block (a generator, a file).
    """

    sync: Iterable[Any] | None = None
    async_: AsyncIterable[Any] | None = None
    total: int | None = None
    blocking: bool = False


def source_items(items: Any) -> Items:
    """Classify ``items`` (any accepted form) without reading it.

    Raises:
        ConfigError: a path that is not a file, or an object that is not iterable.

    Example:
        >>> source_items(["http://h/a.jpg"]).total
        1
    """
    if isinstance(items, (str, os.PathLike)):
        if isinstance(items, str) and is_http_url(items.strip()):
            return Items(sync=[items.strip()], total=1)
        path = Path(os.fspath(items)).expanduser()
        if path.is_file():
            return Items(sync=read_url_file(path), blocking=True)
        raise ConfigError(
            f"items={items!r} is neither an existing text file of URLs nor an http(s) URL; "
            "pass a list of records or URLs, a generator, or the path of a file with one URL "
            "per line"
        )
    if isinstance(items, Mapping):
        return Items(sync=[items], total=1)
    if isinstance(items, (AsyncIterator, AsyncIterable)) or hasattr(items, "__aiter__"):
        return Items(async_=items)
    if isinstance(items, SequenceABC):
        return Items(sync=items, total=len(items))
    if isinstance(items, Iterable):
        return Items(sync=items, blocking=True)
    raise ConfigError(
        f"items of type {type(items).__name__} cannot be downloaded; pass a list, a generator, "
        "an async generator, a list of URL strings or the path of a text file of URLs"
    )


def _take_chunk(iterator: Iterator[Any]) -> list[Any]:
    """Up to _CHUNK items; returns early once an item arrives after _CHUNK_WAIT_S."""
    chunk: list[Any] = []
    started = time.monotonic()
    for item in iterator:
        chunk.append(item)
        if len(chunk) >= _CHUNK or time.monotonic() - started >= _CHUNK_WAIT_S:
            break
    return chunk


async def _iterate_in_thread(iterable: Iterable[Any]) -> AsyncIterator[Any]:
    """Pull a (possibly blocking) iterator in a worker thread, in small chunks."""
    iterator = iter(iterable)
    while True:
        chunk = await asyncio.to_thread(_take_chunk, iterator)
        if not chunk:
            return
        for item in chunk:
            yield item


async def _iterate_plain(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def as_async_items(items: Any) -> tuple[AsyncIterable[Any], int | None]:
    """Any accepted input as an async iterable (+ its length if known), for the streaming run.

    A generator or a file is read in a worker thread, so a slow input never blocks the loop.

    Example:
        >>> from gbif_dl._aio import run_sync
        >>> source, total = as_async_items(["http://h/a.jpg", "http://h/b.jpg"])
        >>> async def collect():
        ...     return [item async for item in source]
        >>> total, len(run_sync(collect()))
        (2, 2)
    """
    found = source_items(items)
    if found.async_ is not None:
        return found.async_, None
    assert found.sync is not None
    if found.blocking:
        return _iterate_in_thread(found.sync), found.total
    return _iterate_plain(found.sync), found.total


def as_sync_items(items: Any) -> Iterable[Any]:
    """Any accepted input as a plain iterable, for the shard planner: a synchronous input as
    it is; only an async one is pumped from an event loop in a helper thread.

    Example:
        >>> as_sync_items(["http://h/a.jpg"])
        ['http://h/a.jpg']
    """
    found = source_items(items)
    if found.sync is not None:
        return found.sync
    from gbif_dl._aio import iterate_sync

    assert found.async_ is not None
    return iterate_sync(aiter(found.async_))


class Prepared(NamedTuple):
    """One input item as a record, and why it cannot be fetched (``problem`` None: it can)."""

    record: dict[str, Any]
    problem: Reason | None = None
    detail: str = ""


def _invalid(item: Any, detail: str) -> Prepared:
    digest = hashlib.sha1(repr(item).encode("utf-8", "replace")).hexdigest()
    return Prepared({"url": f"invalid:{digest}", "label": None}, Reason.INVALID, detail)


def normalize_item(item: Any, assign: Assign | None) -> Prepared:
    """``item`` (a URL string or a record) as a record with a stripped ``url``, a ``basename``
    and (through ``assign``, when it has none) a ``subset``; or the reason it cannot be fetched.

    Example:
        >>> normalize_item({"url": "ftp://h/a.jpg"}, None).problem.value
        'unsafe_url'
        >>> normalize_item({"url": "http://h/a.jpg"}, lambda r: "val").record["subset"]
        'val'
    """
    if isinstance(item, str):
        record: dict[str, Any] = {"url": item.strip(), "label": None}
    elif isinstance(item, Mapping):
        if item.get(INVALID_ITEM):  # stored by a shard plan: the item was not a record
            return Prepared(
                {k: v for k, v in item.items() if k != INVALID_ITEM},
                Reason.INVALID,
                str(item[INVALID_ITEM]),
            )
        record = dict(item)
    else:
        return _invalid(item, f"not a record or URL: {type(item).__name__}")
    url = record.get("url")
    if not isinstance(url, str) or not url.strip():
        prepared = _invalid(item, "the record has no url")
        record["url"] = prepared.record["url"]
        return prepared._replace(record=record)
    record["url"] = url = url.strip()
    if not record.get("basename"):
        record["basename"] = url_basename(url)
    if record.get("subset") in (None, "") and assign is not None:
        record["subset"] = assign(record)
    if not is_http_url(url):
        return Prepared(record, Reason.UNSAFE_URL, "only http and https URLs are downloaded")
    return Prepared(record)

"""Quotas that hold after download failures: the gate on quota'd items and the spare rounds.

Items that carry a ``stream`` and a ``quota`` (:mod:`gbif_dl.sampling.spares`) are fetched only
while their stream needs them: a candidate that is not stored yet goes ahead only while
``stored + in_flight < quota`` for its stream; else (and for every spare during the main pass)
it is set aside, in arrival order, which is the sampler's seeded order. Once the input is over,
the set-aside candidates are fed again while their stream has a deficit, waiting for results
when it has none but still has items in flight: a stream ends with exactly its quota whenever
it has enough usable candidates, never more. ``stored`` is counted up front from what the root
already has (manifest and journal rows with status success and that stream), so a rerun after a
kill neither over-fills (a primary that failed before and whose place a spare took is not
fetched once its stream is full) nor draws differently.

The streaming download uses :class:`QuotaGate` inside its one :class:`~gbif_dl.pipeline.run.Run`;
a ``runner=`` job uses :class:`StreamCounts` and :func:`divert` while planning its shards and
runs the spare rounds as extra shards (:mod:`gbif_dl.runners.orchestrate`).

Example:
    >>> gate = QuotaGate()
    >>> item = {"url": "http://h/a.jpg", "stream": "s", "quota": 1}
    >>> gate.see(item)
    >>> gate.hold(item), gate.hold({**item, "url": "http://h/b.jpg"})
    (False, True)
    >>> gate.release("http://h/a.jpg", stored=True); gate.counts.stored["s"]
    1
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.errors import ConfigError
from gbif_dl.manifest import (
    JOURNAL_NAME,
    MANIFEST_NAME,
    SUCCESS,
    TRIMMED,
    iter_manifest,
    journal_blocks,
    latest_rows,
)
from gbif_dl.manifest.table import TableSource
from gbif_dl.records import public_url

__all__ = [
    "SHORT_STREAMS",
    "STREAM_COLUMNS",
    "QuotaGate",
    "StreamCounts",
    "check_short_streams",
    "stream_rows",
    "stream_sources",
]

logger = logging.getLogger(__name__)

#: The values of ``short_streams=`` (None: ``"trim"`` for ``nb_samples=-1``, else ``"keep"``).
SHORT_STREAMS = ("trim", "keep")
#: The manifest columns the quota bookkeeping reads.
STREAM_COLUMNS = ("url", "path", "status", "stream", "quota", "spare", "label", "subset")


def check_short_streams(value: str | None) -> str | None:
    """``value`` if it is a valid ``short_streams`` (None, ``"trim"`` or ``"keep"``).

    Example:
        >>> check_short_streams("keep"), check_short_streams(None)
        ('keep', None)
        >>> check_short_streams("cut")
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: short_streams must be 'trim' (cut the other streams to a \
stream that ran dry), 'keep' or None (trim for nb_samples=-1, else keep); got 'cut'
    """
    if value is not None and value not in SHORT_STREAMS:
        raise ConfigError(
            "short_streams must be 'trim' (cut the other streams to a stream that ran dry), "
            f"'keep' or None (trim for nb_samples=-1, else keep); got {value!r}"
        )
    return value


def stream_sources(
    root: Path, pairs: Iterable[tuple[str, str | None]] = ((MANIFEST_NAME, JOURNAL_NAME),)
) -> list[TableSource]:
    """Table sources over the manifest files and journals ``pairs`` at ``root`` (the quota
    columns only; a missing file is no rows).

    Example:
        >>> import tempfile
        >>> [list(source()) for source in stream_sources(Path(tempfile.mkdtemp()))]
        [[], []]
    """
    sources: list[TableSource] = []
    for manifest, journal in pairs:
        path = root / manifest

        def read_manifest(path: Path = path) -> Iterator[pa.Table]:
            columns = ("updated", *STREAM_COLUMNS)
            return iter_manifest(path, columns) if path.exists() else iter(())

        def read_journal(name: str | None = journal) -> Iterator[pa.Table]:
            assert name is not None
            return journal_blocks(root, name, ("updated", *STREAM_COLUMNS))

        sources.append(read_manifest)
        if journal is not None:
            sources.append(read_journal)
    return sources


def stream_rows(sources: Iterable[TableSource], *, by_updated: bool = False) -> Iterator[pa.Table]:
    """The latest row of each url of ``sources`` that has a stream (quota columns only).

    Example:
        >>> list(stream_rows([]))
        []
    """
    for table in latest_rows(sources, by_updated=by_updated):
        if "stream" not in table.column_names:
            continue
        table = table.filter(pc.is_valid(table["stream"]))
        if table.num_rows:
            yield table.select(list(STREAM_COLUMNS))


@dataclass
class StreamCounts:
    """Per stream: the quota (the latest an item said), the primaries seen, what is stored,
    what was trimmed.

    A stream's target is its quota, but never more than the primaries it was given: spares
    replace primaries that failed, they do not fill a stream the input cut short (a slice of a
    sampled list downloads that slice).

    Example:
        >>> counts = StreamCounts()
        >>> _ = counts.note({"stream": "s", "quota": 2}); counts.stored["s"] += 1
        >>> _ = counts.note({"stream": "s", "quota": 2, "spare": True})
        >>> counts.room("s", in_flight=0, trim=True)
        0
        >>> _ = counts.note({"stream": "s", "quota": 2})
        >>> counts.room("s", in_flight=0, trim=True)
        1
    """

    quota: dict[str, int] = field(default_factory=dict)
    primaries: Counter[str] = field(default_factory=Counter)
    stored: Counter[str] = field(default_factory=Counter)
    trimmed: Counter[str] = field(default_factory=Counter)
    balanced: bool = False

    @classmethod
    def load(cls, sources: Iterable[TableSource], *, by_updated: bool = False) -> StreamCounts:
        """Stored and trimmed items per stream from the rows of ``sources``.

        Example:
            >>> StreamCounts.load([]).stored
            Counter()
        """
        counts = cls()
        for table in stream_rows(sources, by_updated=by_updated):
            for status, stream in zip(
                table["status"].to_pylist(), table["stream"].to_pylist(), strict=True
            ):
                if status == SUCCESS:
                    counts.stored[stream] += 1
                elif status == TRIMMED:
                    counts.trimmed[stream] += 1
        return counts

    def note(self, item: Mapping[str, Any]) -> str:
        """Take ``item``'s quota as its stream's (the latest wins); return its stream."""
        stream = str(item["stream"])
        quota = item.get("quota")
        if isinstance(quota, int) and not isinstance(quota, bool):
            self.quota[stream] = quota
        else:
            self.quota.setdefault(stream, 0)
        if item.get("balanced"):
            self.balanced = True
        if not item.get("spare"):
            self.primaries[stream] += 1
        return stream

    def targets(self) -> dict[str, int]:
        """Per stream: how many stored items it should end with (quota, or fewer primaries)."""
        return {s: min(q, self.primaries[s]) for s, q in self.quota.items()}

    def room(self, stream: str, *, in_flight: int, trim: bool) -> int:
        """How many more items ``stream`` may take (trimmed items count as taken when
        trimming: a rerun does not fetch again what a trim removed)."""
        taken = self.stored[stream] + in_flight + (self.trimmed[stream] if trim else 0)
        return min(self.quota.get(stream, 0), self.primaries[stream]) - taken


class QuotaGate:
    """The quota gate of one streaming run (see the module docstring).

    :meth:`hold` decides each candidate that needs a request, :meth:`release` is told each
    result, :meth:`feed` wraps the input and adds the spare rounds when it ends.

    Args:
        short_streams: ``"trim"``, ``"keep"`` or None (trim when the items come from an
            ``nb_samples=-1`` request).
        counts: what the root already has (:meth:`load` fills it from the run's files).

    Example:
        >>> QuotaGate(short_streams="keep").trim
        False
    """

    def __init__(self, *, short_streams: str | None = None, counts: StreamCounts | None = None):
        self.short_streams = check_short_streams(short_streams)
        self.counts = counts if counts is not None else StreamCounts()
        self.in_flight: Counter[str] = Counter()
        self.admitted: dict[str, str] = {}  # url -> stream, for the items in flight
        self.pool: dict[str, deque[dict[str, Any]]] = {}
        self.draining = False
        self.active = False  # an item with a stream was seen
        self.loaded = False
        self.changed = asyncio.Event()

    @property
    def trim(self) -> bool:
        """True when streams that ran dry cut the others (``short_streams``, or -1)."""
        if self.short_streams is not None:
            return self.short_streams == "trim"
        return self.counts.balanced

    def load(self, root: Path, manifest_name: str, journal_name: str) -> None:
        """Count what the root stores per stream (once, at the first quota'd item)."""
        if not self.loaded:
            loaded = StreamCounts.load(stream_sources(root, [(manifest_name, journal_name)]))
            self.counts.stored.update(loaded.stored)
            self.counts.trimmed.update(loaded.trimmed)
            self.loaded = True

    def see(self, record: dict[str, Any]) -> None:
        """Note a quota'd item of the input (its quota; a primary counts toward its stream's
        target), whatever then happens to it; a candidate fed again by :meth:`feed` is not
        counted twice."""
        if record.get("stream") is None:
            return
        self.active = True
        if not self.draining:
            self.counts.note(record)

    def hold(self, record: dict[str, Any], *, stored: bool = False) -> bool:
        """True when ``record`` waits (set aside); False when it goes ahead (it is then in
        flight until :meth:`release`). ``stored``: the root has it already (it goes ahead and
        is not counted again)."""
        if record.get("stream") is None:
            return False
        stream = str(record["stream"])
        if stream not in self.counts.quota:  # not seen (a caller that skipped see())
            self.see(record)
        if stored:
            return False
        if record.get("spare") and not self.draining:
            self.pool.setdefault(stream, deque()).append(record)
            return True
        if self.counts.room(stream, in_flight=self.in_flight[stream], trim=self.trim) > 0:
            self.in_flight[stream] += 1
            self.admitted[public_url(record["url"])] = stream
            return False
        self.pool.setdefault(stream, deque()).append(record)
        return True

    def release(self, url: str, *, stored: bool) -> None:
        """The item at ``url`` (the manifest's form) is finished; ``stored``: it is stored."""
        stream = self.admitted.pop(url, None)
        if stream is None:
            return
        self.in_flight[stream] -= 1
        if stored:
            self.counts.stored[stream] += 1
        self.changed.set()

    def uncount(self, stream: str) -> None:
        """A stored file of ``stream`` will be excluded at the end of the run (it turned out
        to be a publisher's placeholder): its place in the quota is free again.

        Example:
            >>> gate = QuotaGate(); gate.counts.stored["s"] = 2
            >>> gate.uncount("s"); gate.counts.stored["s"]
            1
        """
        self.counts.stored[stream] -= 1
        self.changed.set()

    async def feed(self, items: AsyncIterable[Any]) -> AsyncIterator[Any]:
        """``items``, then the set-aside candidates of the streams that still have a deficit,
        in their order, until no stream has a deficit or candidates (the spare rounds)."""
        async for item in items:
            yield item
        if not self.active:
            return
        self.draining = True
        while True:
            fed = False
            for stream, pool in self.pool.items():
                while pool and self._room(stream) > 0:
                    fed = True
                    yield pool.popleft()
            if not fed:
                if not any(self.in_flight.values()):
                    return
                self.changed.clear()
                await self.changed.wait()

    def _room(self, stream: str) -> int:
        return self.counts.room(stream, in_flight=self.in_flight[stream], trim=self.trim)

    def leftovers(self) -> Iterator[dict[str, Any]]:
        """The candidates never fed (their streams were full, or the run stopped)."""
        for pool in self.pool.values():
            yield from pool

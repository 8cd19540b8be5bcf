"""Quotas in a ``runner=`` job: the planner diverts spares, the spare rounds run as extra shards.

The streaming download gates quota'd items inside its one run (:mod:`gbif_dl.pipeline.quotas`);
a sharded job cannot, since its shards run at once in other processes. So the same rule is
applied around the shards:

1. while planning (:meth:`SpareRounds.divert`), what the root stores per stream is counted up
   front (the manifest, and every shard's part and journal, the latest row of each url); a
   primary not stored yet goes into a shard only while ``stored + planned < quota`` for its
   stream; the others, and every spare, go in order to the state file
   ``root/.gbif-dl-spares.jsonl`` (a file, never a folder);
2. after the shards (:meth:`SpareRounds.run`): deficit = quota - stored per stream; exactly that
   many next candidates per stream from the state file become one more shard, run and merged
   like the others; repeat until no stream has a deficit or candidates;
3. the files a killed run stored for candidates that ended up unneeded are removed, what each
   stream delivered is noted, and streams that ran dry trim the others when asked
   (:mod:`gbif_dl.pipeline.shortfall`).

Example:
    >>> import tempfile
    >>> rounds = SpareRounds(Path(tempfile.mkdtemp()))
    >>> list(rounds.divert(["http://h/a.jpg"], None))  # no quota: passed on as it is
    ['http://h/a.jpg']
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from gbif_dl.manifest import JOURNAL_NAME, MANIFEST_NAME, SUCCESS
from gbif_dl.pipeline.inputs import Assign, normalize_item
from gbif_dl.pipeline.quotas import (
    StreamCounts,
    check_short_streams,
    stream_rows,
    stream_sources,
)
from gbif_dl.pipeline.shortfall import remove_unused, settle_streams
from gbif_dl.pipeline.stats import DownloadStats
from gbif_dl.records import public_url
from gbif_dl.shards.files import shard_files, shard_ids_on_disk
from gbif_dl.shards.plan import ShardPlan, plan_shards
from gbif_dl.writers._atomic import create_temp
from gbif_dl.writers.registry import make_writer

__all__ = ["SPARES_NAME", "RunPlanned", "SpareRounds"]

logger = logging.getLogger(__name__)

#: The state file of the candidates set aside while planning (JSON lines, in order).
SPARES_NAME = ".gbif-dl-spares.jsonl"
#: ``f(plan) -> stats of its shards``: runs the shards of a plan and merges (the orchestrator's).
RunPlanned = Callable[[ShardPlan], list[DownloadStats]]


class SpareRounds:
    """The quota bookkeeping of one ``runner=`` job (see the module docstring).

    Args:
        root: the output root (locked by the caller).
        short_streams: ``"trim"``, ``"keep"`` or None (trim for ``nb_samples=-1`` items).
        output: the layout (its writer removes trimmed and unneeded files).

    Example:
        >>> SpareRounds(Path("data"), short_streams="keep").active
        False
    """

    def __init__(
        self, root: Path, *, short_streams: str | None = None, output: str = "imagefolder"
    ) -> None:
        self.root = root
        self.short_streams = check_short_streams(short_streams)
        self.output = output
        self.counts = StreamCounts()
        self.stored_urls: set[str] = set()
        self.planned: Counter[str] = Counter()
        self.active = False
        self._out: IO[str] | None = None
        self._tmp: Path | None = None

    @property
    def trim(self) -> bool:
        """True when a stream that ran dry cuts the others."""
        if self.short_streams is not None:
            return self.short_streams == "trim"
        return self.counts.balanced

    def _load(self) -> None:
        """What the root stores per stream: the manifest, every shard part and journal."""
        pairs: list[tuple[str, str | None]] = [(MANIFEST_NAME, JOURNAL_NAME)]
        for shard_id in shard_ids_on_disk(self.root):
            files = shard_files(shard_id)
            pairs.append((files.manifest, files.journal))
        sources = stream_sources(self.root, pairs)
        loaded = StreamCounts.load(sources, by_updated=True)
        self.counts.stored.update(loaded.stored)
        self.counts.trimmed.update(loaded.trimmed)
        for table in stream_rows(sources, by_updated=True):
            for url, status in zip(
                table["url"].to_pylist(), table["status"].to_pylist(), strict=True
            ):
                if status == SUCCESS:
                    self.stored_urls.add(url)
        tmp, fd = create_temp(self.root / SPARES_NAME)
        self._tmp, self._out = tmp, open(fd, "w", encoding="utf-8")  # noqa: SIM115

    def divert(self, items: Iterable[Any], assign: Assign | None) -> Iterator[Any]:
        """``items`` for the planner, without the candidates set aside (to the state file)."""
        try:
            for item in items:
                if not isinstance(item, Mapping) or item.get("stream") is None:
                    yield item
                    continue
                record, problem, _ = normalize_item(item, assign)
                if problem is not None:
                    yield item
                    continue
                if not self.active:
                    self.active = True
                    self._load()
                stream = self.counts.note(record)
                if public_url(record["url"]) in self.stored_urls:
                    yield record  # its shard skips it: stored already, counted
                elif not record.get("spare") and self._room(stream, self.planned[stream]) > 0:
                    self.planned[stream] += 1
                    yield record
                else:
                    assert self._out is not None
                    self._out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        finally:
            self._close()

    def _room(self, stream: str, in_flight: int) -> int:
        return self.counts.room(stream, in_flight=in_flight, trim=self.trim)

    def _close(self) -> None:
        if self._out is not None and self._tmp is not None:
            self._out.close()
            os.replace(self._tmp, self.root / SPARES_NAME)
            self._out = None

    def _candidates(self) -> Iterator[dict[str, Any]]:
        path = self.root / SPARES_NAME
        with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def _recount(self) -> None:
        """Stored and trimmed per stream from the merged manifest."""
        loaded = StreamCounts.load(stream_sources(self.root, [(MANIFEST_NAME, None)]))
        self.counts.stored, self.counts.trimmed = loaded.stored, loaded.trimmed

    def _next_round(self, used: Counter[str]) -> list[dict[str, Any]]:
        """The next candidates of every stream with a deficit (``used``: taken per stream)."""
        self._recount()
        deficit = {
            stream: self._room(stream, 0) for stream in self.counts.quota if self._room(stream, 0)
        }
        seen: Counter[str] = Counter()
        taken: list[dict[str, Any]] = []
        for record in self._candidates():
            stream = str(record["stream"])
            seen[stream] += 1
            if seen[stream] <= used[stream] or deficit.get(stream, 0) <= 0:
                continue
            deficit[stream] -= 1
            used[stream] += 1
            taken.append(record)
        return taken

    def run(
        self, run_planned: RunPlanned, first_id: int, size: int, *, by_host: bool = False
    ) -> tuple[list[DownloadStats], dict[str, dict[str, Any]]]:
        """The spare rounds (as shards numbered from ``first_id``), then the orphan files and
        the trim; returns the rounds' stats and the per-stream outcomes.

        Example:
            >>> SpareRounds(Path("data")).run(lambda plan: [], 0, 10)
            ([], {})
        """
        if not self.active:
            return [], {}
        results: list[DownloadStats] = []
        used: Counter[str] = Counter()
        round_id = first_id
        while True:
            taken = self._next_round(used)
            if not taken:
                break
            logger.info("spare round: %d candidates for streams short of their quota", len(taken))
            plan = plan_shards(taken, self.root, size=size, first_id=round_id, by_host=by_host)
            round_id += len(plan.shard_ids)
            results.extend(run_planned(plan))
        writer = make_writer(self.output, self.root, shard=True)
        stored = {
            url
            for table in stream_rows(stream_sources(self.root, [(MANIFEST_NAME, None)]))
            for url, status in zip(
                table["url"].to_pylist(), table["status"].to_pylist(), strict=True
            )
            if status == SUCCESS
        }
        remove_unused(writer, self._candidates(), stored)
        outcomes = settle_streams(
            self.root,
            stream_sources(self.root, [(MANIFEST_NAME, None)]),
            writer,
            trim=self.trim,
            targets=self.counts.targets(),
        )
        return results, outcomes

"""One record becomes one file: the resume check, the fetch, the store, the journal.

:class:`Run` is the one download core. The streaming download (:mod:`gbif_dl.pipeline.stream`)
runs it over the whole input, each shard of a ``runner=`` job (:func:`gbif_dl.shards.run.run_shard`)
over the shard's records; only the state files differ (:class:`RunFiles`).

Per record:

- already done (the resume index says so and the writer still has it): skipped, no request; a
  file whose split or label changed is moved by the writer (:meth:`Writer.placement`);
- failed permanently in an earlier run (a 404, an HTML page, ...: the index says
  :data:`~gbif_dl.manifest.resume.GONE`): counted as failed under its old reason, its row kept
  as it is, no request (unless ``retry_failed`` or ``overwrite``);
- stored by a run killed before it journaled it (:meth:`Writer.find_existing`): adopted;
- else fetched by the engine, stored by the writer (in a thread), journaled and counted; with
  content hashes on (:class:`~gbif_dl.dedupe.policy.ContentPolicy`) the same photo is stored
  once (:func:`gbif_dl.dedupe.store.store_unique`) and the end of the run settles splits and
  placeholders (:func:`gbif_dl.dedupe.settle.settle_content`).

Example:
    >>> RunFiles().manifest, RunFiles().attribution
    ('manifest.parquet', True)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

from gbif_dl._memory import release_memory
from gbif_dl.dedupe.index import ContentIndex
from gbif_dl.dedupe.phash import dhash, dhash_many, format_phash
from gbif_dl.dedupe.policy import ContentPolicy
from gbif_dl.dedupe.settle import settle_content
from gbif_dl.dedupe.store import UNHASHED, Stored, Unhashed, store_unique
from gbif_dl.errors import OutputError
from gbif_dl.fetch.engine import FetchConfig, FetchEngine
from gbif_dl.fetch.result import FetchResult, Reason
from gbif_dl.fetch.workers import CorePool
from gbif_dl.manifest import (
    FAILED,
    GONE,
    JOURNAL_NAME,
    MANIFEST_NAME,
    SUCCESS,
    ResumeIndex,
    load_index,
    manifest_row,
    merge_journal_file,
)
from gbif_dl.pipeline.inputs import Assign, normalize_item
from gbif_dl.pipeline.journal import BatchedJournal
from gbif_dl.pipeline.quotas import QuotaGate, stream_sources
from gbif_dl.pipeline.shortfall import remove_unused, settle_streams
from gbif_dl.pipeline.stats import Counters
from gbif_dl.pipeline.store import StoreThreads
from gbif_dl.progress import Progress
from gbif_dl.records import public_url
from gbif_dl.writers.attribution import ATTRIBUTION_NAME, CITATION_NAME, write_attribution
from gbif_dl.writers.base import Writer
from gbif_dl.writers.classes import CLASSES_NAME
from gbif_dl.writers.paths import UnsafePathError, check_state_files, remove_inside

__all__ = ["ROOT_FILES", "Run", "RunFiles", "file_facts"]

logger = logging.getLogger(__name__)

_PENDING = "pending"
#: The index entry of an item this run has finished (a state, no path: the compact index keeps
#: only the url digest of an item first seen in this run, see ResumeIndex).
_FINISHED = ("finished", None)
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: The files a run rewrites at the root besides its manifest and journal.
ROOT_FILES = (ATTRIBUTION_NAME, CITATION_NAME, CLASSES_NAME)


def file_facts(body: bytes, *, phash: bool = True) -> dict[str, Any]:
    """bytes, sha256, mime, pixel size and dHash of a stored file (crash recovery, moves).

    Example:
        >>> file_facts(b"x")["nbytes"], file_facts(b"x")["phash"]
        (1, None)
    """
    from gbif_dl.fetch.images import image_size, sniff_image

    kind = sniff_image(body[:16])
    size = image_size(body)
    return {
        "nbytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "mime": kind.mime if kind else None,
        "width": size[0] if size else None,
        "height": size[1] if size else None,
        "phash": format_phash(value) if phash and (value := dhash(body)) is not None else None,
    }


def _timing(result: FetchResult) -> dict[str, Any]:
    """The manifest columns that say how a fetch went: attempts, host, elapsed seconds and
    the URL fetched."""
    return {
        "attempts": result.attempts,
        "host": result.host or None,
        "elapsed_s": result.elapsed_s if result.attempts else None,
        "fetched_url": result.fetched_url if result.attempts else None,
    }


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """Which state files at the root a run journals to and merges into.

    The streaming download uses ``manifest.parquet`` and ``.gbif-dl-journal.jsonl`` and rewrites
    the attribution files (and the writer's ``finalize`` files); a shard uses its own manifest
    part and journal, and those files are written once all parts are merged.

    Example:
        >>> RunFiles(attribution=False).journal
        '.gbif-dl-journal.jsonl'
    """

    manifest: str = MANIFEST_NAME
    journal: str = JOURNAL_NAME
    attribution: bool = True


class Run:
    """One download run over one output root: resume decisions, writing, journaling, counts.

    Args:
        root: the output root (prepared and locked by the caller).
        writer: where files go (:class:`~gbif_dl.writers.base.Writer`).
        assign: the split assignment for records without a ``subset`` (None: none).
        overwrite: fetch and rewrite items that are already done.
        retry_failed: request again the items whose latest row is a permanent failure (by
            default a rerun leaves them failed; transient failures are always tried again).
        fail_threshold: stop once more than this share of fetched items failed.
        verbose: log every failed item at INFO level.
        progress: the progress display.
        files: the state files (:class:`RunFiles`).
        content: what to do with duplicates (:class:`~gbif_dl.dedupe.policy.ContentPolicy`;
            default: off, every URL's bytes stored as before).

    After :meth:`execute`: ``counters`` (what happened), ``fatal`` (the disk filled up).

    Example:
        >>> import tempfile
        >>> from gbif_dl._aio import run_sync
        >>> from gbif_dl.fetch.engine import DEFAULT_FETCH
        >>> from gbif_dl.testing.mediahost import MediaHosts
        >>> from gbif_dl.writers.imagefolder import ImageFolderWriter
        >>> root = Path(tempfile.mkdtemp())
        >>> async def items(urls):
        ...     for url in urls:
        ...         yield url
        >>> with MediaHosts(n_hosts=1) as hosts:
        ...     urls = [f"{hosts.base_urls[0]}/media/1/{i}.jpg" for i in range(2)]
        ...     run = Run(root, writer=ImageFolderWriter(root))
        ...     counters = run_sync(run.execute(items(urls + urls[:1]), DEFAULT_FETCH))
        >>> counters.success, counters.skipped
        (2, 1)
    """

    def __init__(
        self,
        root: Path,
        *,
        writer: Writer,
        assign: Assign | None = None,
        overwrite: bool = False,
        retry_failed: bool = False,
        fail_threshold: float | None = None,
        verbose: bool = False,
        progress: Progress | None = None,
        files: RunFiles = RunFiles(),
        quotas: QuotaGate | None = None,
        content: ContentPolicy | None = None,
    ) -> None:
        self.root = root
        self.files = files
        self.writer = writer
        self.assign = assign
        self.overwrite = overwrite
        self.retry_failed = retry_failed
        self.fail_threshold = fail_threshold
        self.verbose = verbose
        self.progress = progress if progress is not None else Progress(mode=False)
        self.index = ResumeIndex()
        self.journal: BatchedJournal | None = None
        self.stores: StoreThreads[tuple[FetchResult, str | None], Stored] | None = None
        self.counters = Counters()
        self.fatal: OSError | None = None
        self.stopping = False
        self.engine_task: asyncio.Future[Any] | None = None
        # Writers that make files durable later (WebDataset shards) list them in committed();
        # their rows wait here until then, so the journal never claims a file a crash lost.
        self.held: dict[str, tuple[dict[str, Any], int]] = {}
        self.durable: set[str] = set()  # committed before their row was held (other threads)
        self.quotas = quotas
        #: per stream of quota'd items: requested, delivered, spares used, ran dry (at the end)
        self.streams: dict[str, dict[str, Any]] = {}
        self.content = content if content is not None else ContentPolicy.off()
        self.contents: ContentIndex | None = None  # loaded by execute() when hashing is on
        self.hashers: CorePool | None = None  # the dHashes' worker processes, while hashing

    # records -----------------------------------------------------------------------------------

    async def records_to_fetch(self, items: AsyncIterable[Any]) -> AsyncIterator[dict[str, Any]]:
        """The items that need a request; everything else is settled here."""
        async for item in items:
            if self.stopping:
                break
            record, problem, detail = normalize_item(item, self.assign)
            if self.contents is not None:
                self.contents.follow(record)  # its occurrence follows a near duplicate's split
            url = public_url(record["url"])  # the form the manifest stores (no credentials)
            if self.quotas is not None:
                self.quotas.see(record)  # a primary counts toward its stream's target
            if problem is not None:
                row = manifest_row(record, status=FAILED, reason=problem.value, detail=detail)
                self._finish(row, "failed", reason=problem.value)
                continue
            previous = self.index.get(url)
            if previous is not None and previous[0] in (_PENDING, _FINISHED[0]):
                self._skip()  # the same url twice in one run
                continue
            if previous is not None and previous[0] == GONE and not self._retries_gone:
                self._known_failure(url)
                continue
            if self.quotas is not None and self._held(record, previous):
                continue  # its stream is full for now: a candidate for the spare rounds
            if not self.overwrite and await self._settle_done(record, previous):
                continue
            self.index[url] = (_PENDING, previous[1] if previous else None)
            yield record

    def _held(self, record: dict[str, Any], previous: tuple[str, str | None] | None) -> bool:
        """True when the quota gate sets ``record`` aside (:mod:`gbif_dl.pipeline.quotas`)."""
        assert self.quotas is not None
        if record.get("stream") is None:
            return False
        self.quotas.load(self.root, self.files.manifest, self.files.journal)
        path = previous[1] if previous is not None and previous[0] == SUCCESS else None
        return self.quotas.hold(record, stored=bool(path) and self.writer.is_stored(path or ""))

    @property
    def _retries_gone(self) -> bool:
        return self.retry_failed or self.overwrite

    def _known_failure(self, url: str) -> None:
        """Count ``url``, failed permanently in an earlier run, as failed; its row stays."""
        reason = self.index.gone_reason(url)
        self.index[url] = _FINISHED
        self.counters.count("failed", reason=reason)
        self.counters.not_retried += 1
        log = logger.info if self.verbose else logger.debug
        log("not requesting %s again: it failed for good before (%s)", url, reason)
        self.progress.update("failed")

    async def _settle_done(
        self, record: dict[str, Any], previous: tuple[str, str | None] | None
    ) -> bool:
        """True when ``record`` needs no request (already stored, found, or moved)."""
        path = previous[1] if previous is not None and previous[0] == SUCCESS else None
        if path and self.writer.is_stored(path):
            self.writer.own(record, path)
            target = self.writer.placement(record, path)
            if target == path:
                self._skip()
            else:  # its split or label changed: the writer moves it
                await self._adopt(record, path, target)
            return True
        found = self.writer.find_existing(record)
        if found is not None:  # stored by a run killed before it could journal it
            await self._adopt(record, found, found)
            return True
        return False

    async def _adopt(self, record: dict[str, Any], path: str, target: str) -> None:
        """Record an already stored file as done, moving it to ``target`` first if it differs."""

        def move_and_inspect() -> dict[str, Any]:
            if target != path:
                self.writer.move_stored(path, target)
            facts = file_facts(self.writer.read_stored(target), phash=self.contents is not None)
            if self.contents is not None and (previous_path is None or target != path):
                phash = int(facts["phash"], 16) if facts["phash"] else None
                self.contents.add(facts["sha256"], phash, record.get("subset"), target)
            return facts

        previous_path = self.index.get(public_url(record["url"]), (None, None))[1]

        try:
            facts = await asyncio.to_thread(move_and_inspect)
        except OSError as exc:
            self._fail(record, Reason.WRITE_ERROR, detail=str(exc))
            self._check_disk_full(exc)
            return
        self._finish(manifest_row(record, status=SUCCESS, path=target, **facts), "skipped")

    # results -----------------------------------------------------------------------------------

    def _hash_batch(self, jobs: list[tuple[FetchResult, str | None]]) -> list[int | None]:
        """(in a store thread) the dHashes of a batch's bodies, computed in a worker process."""
        assert self.hashers is not None
        return self.hashers.call(dhash_many, [result.body or b"" for result, _ in jobs])

    def _store_job(
        self, job: tuple[FetchResult, str | None], phash: int | Unhashed | None = UNHASHED
    ) -> Stored:
        result, own_path = job
        return store_unique(self.contents, self.writer, result, own_path=own_path, phash=phash)

    async def _store_shielded(
        self, result: FetchResult, own_path: str | None = None
    ) -> tuple[Stored | OSError, asyncio.CancelledError | None]:
        """Store in a thread; a cancellation meanwhile waits for the thread (which may put the
        file in place) so no stored file is left without its row. Returns (what became of it, or
        the OSError) and the cancellation to re-raise once the row is journaled."""
        # in a thread: creating a file can cost a millisecond of kernel time (ext4 under
        # churn), which then overlaps with the downloads on another core; the run's store
        # threads take the files in batches (see gbif_dl.pipeline.store)
        if self.stores is not None:
            store: asyncio.Future[Stored] = self.stores.submit((result, own_path))
        else:
            loop = asyncio.get_running_loop()
            store = loop.run_in_executor(None, self._store_job, (result, own_path))
        cancelled: asyncio.CancelledError | None = None
        while True:
            try:
                return await asyncio.shield(store), cancelled
            except asyncio.CancelledError as exc:
                cancelled = exc
            except OSError as exc:
                return exc, cancelled

    async def on_result(self, result: FetchResult) -> None:
        """Store, journal and count one engine result."""
        record = result.record
        url = public_url(record["url"])
        if result.reason is Reason.CANCELLED:
            self.index.pop(url, None)  # not finished: the next run tries it again
            if self.quotas is not None:
                self.quotas.release(url, stored=False)
            return
        if not result.ok:
            reason = result.reason or Reason.NETWORK
            self._fail(record, reason, result, http_status=result.http_status, detail=result.detail)
            return
        if self.fatal is not None:  # the disk is full: do not try to write more
            self._fail(record, Reason.WRITE_ERROR, result, detail="not written: the disk is full")
            return
        previous_path = self.index.get(url, (None, None))[1]
        if previous_path:
            self.writer.own(record, previous_path)
        stored, cancelled = await self._store_shielded(result, previous_path)
        if isinstance(stored, OSError):
            unsafe = isinstance(stored, UnsafePathError)
            reason = Reason.UNSAFE_PATH if unsafe else Reason.WRITE_ERROR
            detail = str(stored)
            self._fail(record, reason, result, http_status=result.http_status, detail=detail)
            self._check_disk_full(stored)
        elif stored.path is None:  # the same photo as a stored file: not stored again
            if stored.released is not None and self.quotas is not None:
                self.quotas.uncount(stored.released)  # that file is a placeholder: refill
            self._not_stored(result, stored, previous_path=previous_path)
        else:
            self._stored(result, stored, previous_path=previous_path)
        if cancelled is not None:
            raise cancelled

    def _content_row(self, result: FetchResult, stored: Stored) -> dict[str, Any]:
        """The manifest row of a fetched image: stored, or why not (its hashes either way)."""
        not_stored = stored.path is None
        return manifest_row(
            result.record,
            status=stored.status,
            path=stored.path,
            reason=stored.status if not_stored else None,
            http_status=result.http_status,
            nbytes=len(result.body or b""),
            sha256=stored.sha256,
            mime=result.mime,
            width=result.width,
            height=result.height,
            **_timing(result),
            phash=stored.phash,
            duplicate_of=stored.duplicate_of,
        )

    def _not_stored(
        self, result: FetchResult, stored: Stored, *, previous_path: str | None
    ) -> None:
        """Journal and count a duplicate (failed for good, under its status as the reason)."""
        if previous_path:  # an overwrite whose new bytes duplicate another file
            with contextlib.suppress(OSError):
                remove_inside(self.root, previous_path)
        self.counters.not_stored += 1  # before _finish judges the failure threshold
        self._finish(self._content_row(result, stored), "failed", reason=stored.status)

    def _stored(self, result: FetchResult, stored: Stored, *, previous_path: str | None) -> None:
        """Journal (or hold, for a writer that commits later) a stored result."""
        path = stored.path
        assert path is not None
        if previous_path and previous_path != path:  # overwrite with another type or place
            with contextlib.suppress(OSError):
                remove_inside(self.root, previous_path)  # never through a link
        nbytes = len(result.body or b"")
        row = self._content_row(result, stored)
        if not self.writer.defers_commit:
            self._finish(row, "success", nbytes=nbytes)
        else:
            self.held[path] = (row, nbytes)
            if self.quotas is not None:  # stored now; its row waits for the commit
                self.quotas.release(row["url"], stored=True)
            self._commit()

    def _fail(
        self,
        record: dict[str, Any],
        reason: Reason,
        result: FetchResult | None = None,
        **fields: Any,
    ) -> None:
        """Journal and count ``record`` as failed for ``reason``."""
        timing = _timing(result) if result is not None else {}
        row = manifest_row(record, status=FAILED, reason=reason.value, **fields, **timing)
        self._finish(row, "failed", reason=reason.value)

    def _commit(self) -> None:
        """Journal the held rows whose files the writer has made durable."""
        self.durable.update(self.writer.committed())
        for path in [path for path in self.durable if path in self.held]:
            self.durable.discard(path)
            row, nbytes = self.held.pop(path)
            self._finish(row, "success", nbytes=nbytes)

    def _close_writer(self) -> None:
        """Close the writer, journal what it made durable, and fail what it could not."""
        try:
            self.writer.close()
        except OSError as exc:
            logger.error("cannot finish writing into %s: %s", self.root, exc)
            self._check_disk_full(exc)
        self._commit()
        for row, _ in self.held.values():
            failed = {**row, "status": FAILED, "path": None, "reason": Reason.WRITE_ERROR.value}
            failed["detail"] = "its shard could not be written; the next run fetches it again"
            self._finish(failed, "failed", reason=Reason.WRITE_ERROR.value)
        self.held.clear()

    def _skip(self) -> None:
        self.counters.count("skipped")
        self.progress.update("skipped")

    def _finish(
        self, row: dict[str, Any], outcome: str, *, reason: str | None = None, nbytes: int = 0
    ) -> None:
        """Journal ``row`` (after its file is in place) and count it."""
        assert self.journal is not None
        self.journal.append(row)
        self.index[row["url"]] = _FINISHED
        if self.quotas is not None:
            self.quotas.release(row["url"], stored=row["status"] == SUCCESS)
        self.counters.count(outcome, reason=reason, nbytes=nbytes)
        if reason is not None:
            log = logger.info if self.verbose else logger.debug
            log("failed %s: %s %s", row["url"], reason, row.get("detail") or "")
        self.progress.update(outcome, nbytes)
        if not self.stopping and self.counters.over_threshold(self.fail_threshold):
            self.counters.aborted = True
            logger.error(
                "%d of %d items failed (more than fail_threshold=%g); stopping the run. "
                "Failure reasons: %s",
                self.counters.failed,
                self.counters.failed + self.counters.success,
                self.fail_threshold,
                self.counters.reasons,
            )
            self._stop()

    def _journal_error(self, exc: OSError) -> bool:
        """A journal write failed: True when it is the full disk (the run reports that)."""
        self._check_disk_full(exc)
        return self.fatal is not None

    def _check_disk_full(self, exc: OSError) -> None:
        if exc.errno in _DISK_FULL and self.fatal is None:
            self.fatal = exc
            logger.error("the disk under %s is full; stopping the run", self.root)
            self._stop()

    def _stop(self) -> None:
        self.stopping = True
        if self.engine_task is not None and not self.engine_task.done():
            self.engine_task.cancel()

    # the whole run -----------------------------------------------------------------------------

    async def execute(self, items: AsyncIterable[Any], fetch: FetchConfig) -> Counters:
        """Fetch what ``items`` need into the root, journal every item, merge the manifest."""
        manifest_name, journal_name = self.files.manifest, self.files.journal
        # no link, no folder where a state file goes (an older gbif-dl made label folders there)
        check_state_files(self.root, (manifest_name, journal_name, *ROOT_FILES))
        merge_journal_file(  # a killed run's journal, if any (streamed, nothing kept in memory)
            self.root, manifest_name=manifest_name, journal_name=journal_name
        )
        self.index = load_index(self.root, manifest_name=manifest_name, journal_name=journal_name)
        if self.content.enabled:
            self.contents = ContentIndex.load(
                self.root,
                self.content.near_distance,
                drop_near=self.content.drop_near,
                placeholders=self.content.placeholders,
                manifest_name=manifest_name,
                journal_name=journal_name,
                also=(MANIFEST_NAME,),  # a shard also knows what earlier runs stored
            )
        self.journal = BatchedJournal(
            self.root, journal_name, on_error=self._journal_error, on_late_error=self._stop
        )
        completed = False
        if self.contents is not None:
            self.hashers = CorePool(task="hashing")
        prepare = self._hash_batch if self.hashers is not None else None
        self.stores = StoreThreads(self._store_job, prepare=prepare)
        try:
            engine = FetchEngine(fetch)
            source = self.quotas.feed(items) if self.quotas is not None else items
            self.engine_task = asyncio.ensure_future(
                engine.run(self.records_to_fetch(source), self.on_result)
            )
            try:
                await self.engine_task
                completed = not self.stopping
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
        finally:
            self.stores.close()
            self.stores = None
            if self.hashers is not None:
                self.hashers.close()
                self.hashers = None
            try:
                self._close_writer()
            finally:
                self.journal.close()
                self.progress.close()
                self.index.close()  # its files go before the manifest is built
                self.index = ResumeIndex()
                self.contents = None
            settled = False
            if completed and self.fatal is None:
                settled = self._settle_content_first()
                self._settle_streams()
            self._merge(settle=not settled)
        if self.journal.error is not None and self.fatal is None:
            raise self.journal.error
        return self.counters

    def _settle_content_first(self) -> bool:
        """Quota'd items with content hashes: settle duplicates and placeholders before the
        streams are counted, so what each stream delivered leaves the placeholders out.
        True when it did (the final merge then does not settle again)."""
        if not (self.content.enabled and self.quotas is not None and self.quotas.active):
            return False
        if not self.files.attribution:  # a shard: the job's end settles the whole root
            return False
        manifest = merge_journal_file(
            self.root, manifest_name=self.files.manifest, journal_name=self.files.journal
        )
        if manifest is not None:
            settle_content(self.root, manifest, self.writer, self.content)
        return True

    def _settle_streams(self) -> None:
        """Quota'd items: remove unneeded candidates' orphan files, note what each stream
        delivered and trim (:mod:`gbif_dl.pipeline.shortfall`); trimmed rows go to the journal."""
        if self.quotas is None or not self.quotas.active:
            return
        remove_unused(self.writer, self.quotas.leftovers())
        self.streams = settle_streams(
            self.root,
            stream_sources(self.root, [(self.files.manifest, self.files.journal)]),
            self.writer,
            trim=self.quotas.trim,
            targets=self.quotas.counts.targets(),
            journal_name=self.files.journal,
        )

    def _merge(self, *, settle: bool = True) -> None:
        """Fold the journal into the manifest; settle shared photos and placeholders (unless
        done already: ``settle=False``); write the attribution and the writer's files."""
        try:
            # streamed: the merge, the attribution files and finalize read the manifest file a
            # batch at a time, so memory stays flat whatever the number of rows
            release_memory()  # the fetch phase's buffers, before the merge's peak
            manifest = merge_journal_file(
                self.root, manifest_name=self.files.manifest, journal_name=self.files.journal
            )
            release_memory()
            if manifest is not None and self.files.attribution:
                if settle and self.content.enabled:  # splits that share a photo, placeholders
                    settle_content(self.root, manifest, self.writer, self.content)
                write_attribution(self.root, manifest)
                self.writer.finalize(manifest)  # files derived from the manifest
        except OSError as exc:
            if self.fatal is None:
                raise OutputError(
                    f"cannot write the manifest in {str(self.root)!r}: {exc}; the journal "
                    f"{self.root / self.files.journal} keeps the progress, rerun to merge it"
                ) from exc
            logger.error("cannot write the manifest (%s); rerun once there is space", exc)

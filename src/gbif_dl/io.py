"""Download media records into an image-folder dataset: ``gbif_dl.io.download``.

Compatible with gbif-dl 0.1: ``items`` is a list, a generator, an async generator, a list of URL
strings or the path of a text file with one URL per line; files land at
``root/[subset/]label/<basename>.<ext>``. On top of that a run is resumable and accountable:

- every file is written to a temp file and renamed, so no partial file has a final name;
- ``root/manifest.parquet`` has one row per item, failures included (typed ``reason``);
- a rerun skips what is done without a request (one dict lookup and one ``stat`` per item),
  retries what failed, and ``overwrite=True`` fetches everything again;
- ``splits={"train": .8, "val": .1, "test": .1}`` assigns each occurrence (``split_by``) to one
  split from a hash of (group, seed), stable across reruns and additions;
- ``ATTRIBUTION.csv`` and ``CITATION.txt`` list licences, rights holders and GBIF datasets.

Run state lives in files at the root (``manifest.parquet``, ``.gbif-dl-journal.jsonl``,
``.gbif-dl.lock``), never in folders, so ImageFolder loaders see only classes.

Example:
    >>> from gbif_dl.testing.mediahost import MediaHosts
    >>> import tempfile
    >>> with MediaHosts(n_hosts=1) as hosts:
    ...     urls = [f"{hosts.base_urls[0]}/media/1/{i}.jpg" for i in range(3)]
    ...     stats = download(urls, root=tempfile.mkdtemp(), progress=False)
    >>> stats["success"], stats["failed"], stats["skipped"]
    (3, 0, 0)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import errno
import hashlib
import importlib
import inspect
import logging
import os
import sys
import time
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import Any

from gbif_dl._aio import run_sync
from gbif_dl._memory import release_memory
from gbif_dl.errors import ConfigError, OutputError
from gbif_dl.fetch.result import FetchResult, Reason
from gbif_dl.records import is_http_url, url_basename
from gbif_dl.sampling.splits import Splitter
from gbif_dl.writers import Writer
from gbif_dl.writers.attribution import write_attribution
from gbif_dl.writers.imagefolder import record_folder
from gbif_dl.writers.manifest import (
    FAILED,
    JOURNAL_NAME,
    MANIFEST_NAME,
    SUCCESS,
    Journal,
    ResumeIndex,
    load_index,
    manifest_row,
    merge_journal_file,
)

__all__ = ["LOCK_NAME", "OUTPUTS", "DownloadStats", "download", "download_async"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".gbif-dl.lock"
_PENDING = "pending"
#: The index entry of an item this run has finished (a state, no path: the compact index keeps
#: only the url digest of an item first seen in this run, see ResumeIndex).
_FINISHED = ("finished", None)
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_MIN_ITEMS_FOR_THRESHOLD = 50
_CHUNK = 256
_CHUNK_WAIT_S = 0.1
#: Journal rows are written in batches: when this many are waiting, or this long after the
#: first one. A killed run loses at most these rows, whose files a rerun adopts without a request.
_JOURNAL_BATCH = 256
_JOURNAL_FLUSH_S = 0.1
_DEPRECATED = {"tcp_connections", "nb_workers", "batch_size"}

#: ``output=`` name -> its Writer class (``"module:Class"``, imported on use). Each class takes
#: ``(root, **writer_options)``; a new output format is one line here, never a branch below.
OUTPUTS: dict[str, str] = {
    "imagefolder": "gbif_dl.writers.imagefolder:ImageFolderWriter",
    "webdataset": "gbif_dl.writers.webdataset:WebDatasetWriter",
    "hf": "gbif_dl.writers.hf:HFWriter",
}


@dataclasses.dataclass(frozen=True)
class DownloadStats(Mapping[str, Any]):
    """What a :func:`download` run did; also a read-only mapping (``stats["success"]``).

    Attributes:
        success: images fetched and stored by this run.
        failed: items that failed in this run (see ``reasons``).
        skipped: items already done before this run (no request made).
        reasons: failure counts by :class:`~gbif_dl.fetch.result.Reason` value.
        bytes: bytes of the images stored by this run.
        elapsed_s: wall time of the run.
        manifest: path of ``manifest.parquet``.
        root: the output root.
        aborted: True when the run stopped early (``fail_threshold``).

    Example:
        >>> stats = DownloadStats(success=2, failed=1, skipped=0, reasons={"timeout": 1})
        >>> stats["success"], dict(stats)["reasons"]
        (2, {'timeout': 1})
    """

    success: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes: int = 0
    elapsed_s: float = 0.0
    manifest: str = ""
    root: str = ""
    aborted: bool = False

    def __getitem__(self, key: str) -> Any:
        if key in _STAT_KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(_STAT_KEYS)

    def __len__(self) -> int:
        return len(_STAT_KEYS)


_STAT_KEYS = tuple(f.name for f in dataclasses.fields(DownloadStats))


# --- input ------------------------------------------------------------------------------------


def _read_url_file(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


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


def _as_async_items(items: Any) -> tuple[AsyncIterator[Any] | AsyncIterable[Any], int | None]:
    """Normalise every accepted ``items`` form to an async iterable (+ its length if known)."""
    if isinstance(items, (str, os.PathLike)):
        path = Path(os.fspath(items)).expanduser()
        if isinstance(items, str) and is_http_url(items.strip()):
            return _iterate_plain([items.strip()]), 1
        if path.is_file():
            return _iterate_in_thread(_read_url_file(path)), None
        raise ConfigError(
            f"items={items!r} is neither an existing text file of URLs nor an http(s) URL; "
            "pass a list of records or URLs, a generator, or the path of a file with one URL "
            "per line"
        )
    if isinstance(items, Mapping):
        return _iterate_plain([items]), 1
    if isinstance(items, (AsyncIterator, AsyncIterable)) or hasattr(items, "__aiter__"):
        return items, None
    if isinstance(items, SequenceABC):
        return _iterate_plain(items), len(items)
    if isinstance(items, Iterable):
        return _iterate_in_thread(items), None
    raise ConfigError(
        f"items of type {type(items).__name__} cannot be downloaded; pass a list, a generator, "
        "an async generator, a list of URL strings or the path of a text file of URLs"
    )


# --- configuration ----------------------------------------------------------------------------


def _subset_assigner(
    random_subsets: Mapping[str, float] | None,
    splits: Mapping[str, float] | None,
    split_by: str,
    seed: int | str,
) -> Callable[[Mapping[str, Any]], str] | None:
    if random_subsets is not None and splits is not None:
        raise ConfigError(
            "random_subsets and splits cannot be combined; use splits= with split_by='url' "
            "for independent draws, or split_by='gbifID' to keep occurrences together"
        )
    if random_subsets is not None:
        return Splitter(random_subsets, by="url", seed=seed)
    if splits is not None:
        if not isinstance(split_by, str) or not split_by:
            raise ConfigError(
                f"split_by must be a record field name such as 'gbifID'; got {split_by!r}"
            )
        return Splitter(splits, by=split_by, seed=seed)
    return None


def _apply_compat(compat: dict[str, Any], concurrency: int | None, stacklevel: int) -> int | None:
    """Check the extra keyword arguments; warn about (and drop) gbif-dl 0.1's deprecated ones."""
    for name in list(compat):
        if name not in _DEPRECATED:
            close = difflib.get_close_matches(name, [*_DEPRECATED, *_KNOWN_ARGS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"download() got an unknown argument {name!r}{hint}")
    if "tcp_connections" in compat:
        warnings.warn(
            "tcp_connections is deprecated; use concurrency= (total requests in flight)",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        tcp_connections = compat.pop("tcp_connections")
        if concurrency is None and tcp_connections is not None:
            concurrency = int(tcp_connections)
    for name in ("nb_workers", "batch_size"):
        if name in compat:
            compat.pop(name)
            warnings.warn(
                f"{name} is ignored and deprecated: the engine sizes its own work; "
                "use concurrency= and per_host= to bound requests",
                DeprecationWarning,
                stacklevel=stacklevel,
            )
    return concurrency


_KNOWN_ARGS = (
    "root",
    "random_subsets",
    "retries",
    "overwrite",
    "is_valid_file",
    "proxy",
    "splits",
    "split_by",
    "seed",
    "concurrency",
    "per_host",
    "max_size",
    "decode_check",
    "max_bytes",
    "progress",
    "fail_threshold",
    "verbose",
    "output",
    "shard_size",
    "shard_bytes",
    "runner",
    "workers",
    "dask_address",
    "dask_client",
)


def _writer_factory(output: str, options: Mapping[str, Any]) -> Callable[[Path], Writer]:
    """The constructor of the ``output`` writer with its options; ConfigError before any I/O."""
    target = OUTPUTS.get(output) if isinstance(output, str) else None
    if target is None:
        close = difflib.get_close_matches(str(output), list(OUTPUTS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown output={output!r}; {hint}choose one of {', '.join(map(repr, OUTPUTS))}"
        )
    writer_class = _resolve(target)
    given = {name: value for name, value in options.items() if value is not None}
    accepted = inspect.signature(writer_class).parameters
    for name in given:
        if name not in accepted:
            users = [
                key
                for key, spec in OUTPUTS.items()
                if name in inspect.signature(_resolve(spec)).parameters
            ]
            raise ConfigError(
                f"{name}= does not apply to output={output!r}; it is an option of "
                f"output={' or '.join(map(repr, users)) or 'none'}"
            )

    check = getattr(writer_class, "check_options", None)
    if check is not None:  # the writer's own checks of its options, before any I/O
        check(**given)

    def make(root: Path) -> Writer:
        return writer_class(root, **given)

    return make


def _resolve(spec: str) -> Any:
    module_name, _, class_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _fetch_config(**options: Any) -> Any:
    """A FetchConfig from DEFAULT_FETCH with the options that were given (None = default)."""
    from gbif_dl.fetch.engine import DEFAULT_FETCH
    from gbif_dl.fetch.retry import RetryPolicy

    known = {f.name for f in dataclasses.fields(DEFAULT_FETCH)}
    changes: dict[str, Any] = {}
    retries = options.pop("retries")
    if retries is not None:
        if int(retries) < 0:
            raise ConfigError(f"retries must be >= 0; got {retries!r}")
        changes["retry"] = dataclasses.replace(
            getattr(DEFAULT_FETCH, "retry", RetryPolicy()), retries=int(retries)
        )
    for name, value in options.items():
        if value is None:
            continue
        if name not in known:
            logger.warning("the fetch engine does not support %s=%r; ignored", name, value)
            continue
        changes[name] = value
    for name in ("concurrency", "per_host"):
        if name in changes and (not isinstance(changes[name], int) or changes[name] < 1):
            raise ConfigError(f"{name} must be a positive integer; got {changes[name]!r}")
    return dataclasses.replace(DEFAULT_FETCH, **changes)


def _prepare_root(root: str | os.PathLike[str]) -> Path:
    path = Path(os.fspath(root)).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"the output root {str(path)!r} exists and is not a directory; "
            "pass root= a folder path (it is created if missing)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the output root {str(path)!r}: {exc.strerror or exc}; "
            "pass root= a folder you can write to"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(
            f"the output root {str(path)!r} is not writable; "
            "fix its permissions or pass root= a folder you can write to"
        )
    return path


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root/.gbif-dl.lock`` (released by the OS if we die)."""
    try:
        handle = open(root / LOCK_NAME, "a+b")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OutputError(
            f"cannot write to the output root {str(root)!r}: {exc.strerror or exc}; "
            "fix its permissions or pass root= a folder you can write to"
        ) from exc
    try:
        if sys.platform != "win32":  # Windows: no advisory lock
            import fcntl

            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise OutputError(
                    f"another gbif-dl run is writing to {str(root)!r}; "
                    "wait for it to finish or pass a different root="
                ) from exc
        yield
    finally:
        handle.close()


# --- the run ----------------------------------------------------------------------------------


def _file_facts(body: bytes) -> dict[str, Any]:
    """bytes, sha256, mime and pixel size of a stored file (crash recovery, moves)."""
    from gbif_dl.fetch.images import image_size, sniff_image

    kind = sniff_image(body[:16])
    size = image_size(body)
    return {
        "nbytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "mime": kind.mime if kind else None,
        "width": size[0] if size else None,
        "height": size[1] if size else None,
    }


def _timing(result: FetchResult) -> dict[str, Any]:
    """The manifest columns that say how a fetch went: attempts, host and elapsed seconds."""
    return {
        "attempts": result.attempts,
        "host": result.host or None,
        "elapsed_s": result.elapsed_s if result.attempts else None,
    }


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """Which state files at the root a run journals to and merges into.

    The plain download uses ``manifest.parquet`` and ``.gbif-dl-journal.jsonl`` and rewrites the
    attribution files; a shard (:func:`gbif_dl.shard.run_shard`) uses its own manifest part and
    journal, and the attribution files are written once all parts are merged.

    Example:
        >>> RunFiles().manifest, RunFiles().attribution
        ('manifest.parquet', True)
    """

    manifest: str = MANIFEST_NAME
    journal: str = JOURNAL_NAME
    attribution: bool = True


class _Run:
    """One download run over one output root: resume decisions, writing, journaling.

    The one code path for "fetch these records into root, journaling to these files", shared by
    :func:`download_async` and :func:`gbif_dl.shard.run_shard`.
    """

    def __init__(
        self,
        root: Path,
        *,
        writer: Writer,
        assign: Callable[[Mapping[str, Any]], str] | None,
        overwrite: bool,
        fail_threshold: float | None,
        verbose: bool,
        progress: Any,
        files: RunFiles = RunFiles(),
    ) -> None:
        self.root = root
        self.files = files
        self.writer = writer
        self.assign = assign
        self.overwrite = overwrite
        self.fail_threshold = fail_threshold
        self.verbose = verbose
        self.progress = progress
        self.index = ResumeIndex()
        self.journal: Journal | None = None
        self.counts = {"success": 0, "failed": 0, "skipped": 0}
        self.reasons: dict[str, int] = {}
        self.bytes = 0
        self.fatal: OSError | None = None
        self.aborted = False
        self.stopping = False
        self.engine_task: asyncio.Future[Any] | None = None
        # Writers that make files durable later (WebDataset shards) list them in committed();
        # their rows wait here until then, so the journal never claims a file a crash lost.
        self.committed: Callable[[], list[str]] | None = getattr(writer, "committed", None)
        self.is_stored: Callable[[str], bool] | None = getattr(writer, "is_stored", None)
        self.held: dict[str, tuple[dict[str, Any], int]] = {}
        self.durable: set[str] = set()  # committed before their row was held (other threads)
        self.flush_timer: asyncio.TimerHandle | None = None
        self.journal_error: OutputError | None = None

    # records -----------------------------------------------------------------------------------

    def _normalize(self, item: Any) -> tuple[dict[str, Any], Reason | None, str]:
        if isinstance(item, str):
            record: dict[str, Any] = {"url": item.strip(), "label": None}
        elif isinstance(item, Mapping):
            record = dict(item)
        else:
            digest = hashlib.sha1(repr(item).encode("utf-8", "replace")).hexdigest()
            record = {"url": f"invalid:{digest}", "label": None}
            return record, Reason.INVALID, f"not a record or URL: {type(item).__name__}"
        url = record.get("url")
        if not isinstance(url, str) or not url.strip():
            digest = hashlib.sha1(repr(item).encode("utf-8", "replace")).hexdigest()
            record["url"] = f"invalid:{digest}"
            return record, Reason.INVALID, "the record has no url"
        record["url"] = url = url.strip()
        if not record.get("basename"):
            record["basename"] = url_basename(url)
        if record.get("subset") in (None, "") and self.assign is not None:
            record["subset"] = self.assign(record)
        if not is_http_url(url):
            return record, Reason.UNSAFE_URL, "only http and https URLs are downloaded"
        return record, None, ""

    async def records_to_fetch(
        self, items: AsyncIterator[Any] | AsyncIterable[Any]
    ) -> AsyncIterator[Any]:
        """The items that need a request; everything else is settled here."""
        async for item in items:
            if self.stopping:
                break
            record, problem, detail = self._normalize(item)
            url = record["url"]
            if problem is not None:
                self._finish(
                    manifest_row(record, status=FAILED, reason=problem.value, detail=detail),
                    "failed",
                    reason=problem.value,
                )
                continue
            previous = self.index.get(url)
            if previous is not None and previous[0] in (_PENDING, _FINISHED[0]):
                self._skip()  # the same url twice in one run
                continue
            if not self.overwrite and await self._settle_done(record, previous):
                continue
            self.index[url] = (_PENDING, previous[1] if previous else None)
            yield record

    async def _settle_done(
        self, record: dict[str, Any], previous: tuple[str, str | None] | None
    ) -> bool:
        """True when ``record`` needs no request (already stored, found, or moved)."""
        folder = record_folder(record)
        is_done = previous is not None and previous[0] == SUCCESS and bool(previous[1])
        if is_done and self.is_stored is not None:  # the writer keeps its own layout (shards)
            assert previous is not None and previous[1] is not None
            if self.is_stored(previous[1]):
                self._skip()
                return True
            previous = None
        if previous is not None and previous[0] == SUCCESS and previous[1]:
            old = self.root / previous[1]
            if old.is_file():
                if previous[1].rpartition("/")[0] == folder:
                    self._skip()
                    return True
                await self._adopt(record, previous[1], folder)  # its split or label changed
                return True
        found = self.writer.find_existing(record)
        if found is not None:  # stored by a run killed before it could journal it
            await self._adopt(record, found, None)
            return True
        return False

    async def _adopt(self, record: dict[str, Any], rel: str, new_folder: str | None) -> None:
        """Record an already stored file as done, moving it into ``new_folder`` if given."""

        read_stored = getattr(self.writer, "read_stored", None)

        def move_and_inspect() -> tuple[str, dict[str, Any]]:
            path = rel
            if new_folder is not None:
                name = rel.rpartition("/")[2]
                target_dir = self.root / new_folder if new_folder else self.root
                target_dir.mkdir(parents=True, exist_ok=True)
                os.replace(self.root / rel, target_dir / name)
                path = f"{new_folder}/{name}" if new_folder else name
            body = read_stored(path) if read_stored else (self.root / path).read_bytes()
            return path, _file_facts(body)

        try:
            path, facts = await asyncio.to_thread(move_and_inspect)
        except OSError as exc:
            self._finish(
                manifest_row(
                    record, status=FAILED, reason=Reason.WRITE_ERROR.value, detail=str(exc)
                ),
                "failed",
                reason=Reason.WRITE_ERROR.value,
            )
            self._check_disk_full(exc)
            return
        self._finish(manifest_row(record, status=SUCCESS, path=path, **facts), "skipped")

    # results -----------------------------------------------------------------------------------

    def _store(self, result: FetchResult) -> tuple[str, str]:
        path = self.writer.write(result)
        return path, hashlib.sha256(result.body or b"").hexdigest()

    async def on_result(self, result: FetchResult) -> None:
        """Store, journal and count one engine result."""
        record = result.record
        url = record["url"]
        if result.reason is Reason.CANCELLED:
            self.index.pop(url, None)  # not finished: the next run tries it again
            return
        if not result.ok:
            reason = result.reason.value if result.reason else Reason.NETWORK.value
            row = manifest_row(
                record,
                status=FAILED,
                reason=reason,
                http_status=result.http_status,
                detail=result.detail,
                **_timing(result),
            )
            self._finish(row, "failed", reason=reason)
            return
        if self.fatal is not None:  # the disk is full: do not try to write more
            row = manifest_row(
                record,
                status=FAILED,
                reason=Reason.WRITE_ERROR.value,
                detail="not written: the disk is full",
                **_timing(result),
            )
            self._finish(row, "failed", reason=Reason.WRITE_ERROR.value)
            return
        previous_path = self.index.get(url, (None, None))[1]
        # in a thread: creating a file can cost a millisecond of kernel time (ext4 under
        # churn), which then overlaps with the downloads on another core
        store = asyncio.get_running_loop().run_in_executor(None, self._store, result)
        cancelled: asyncio.CancelledError | None = None
        try:
            while True:
                try:
                    path, sha256 = await asyncio.shield(store)
                    break
                except asyncio.CancelledError as exc:
                    # the thread goes on and may put the file in place: wait for it and journal
                    # the file, so that no stored file is left without its manifest row
                    cancelled = exc
        except OSError as exc:
            row = manifest_row(
                record,
                status=FAILED,
                reason=Reason.WRITE_ERROR.value,
                http_status=result.http_status,
                detail=str(exc),
                **_timing(result),
            )
            self._finish(row, "failed", reason=Reason.WRITE_ERROR.value)
            self._check_disk_full(exc)
            if cancelled is not None:
                raise cancelled from None
            return
        if previous_path and previous_path != path:  # overwrite with another type or place
            with contextlib.suppress(OSError):
                os.unlink(self.root / previous_path)
        nbytes = len(result.body or b"")
        row = manifest_row(
            record,
            status=SUCCESS,
            path=path,
            http_status=result.http_status,
            nbytes=nbytes,
            sha256=sha256,
            mime=result.mime,
            width=result.width,
            height=result.height,
            **_timing(result),
        )
        if self.committed is None:
            self._finish(row, "success", nbytes=nbytes)
        else:
            self.held[path] = (row, nbytes)
            self._commit()
        if cancelled is not None:
            raise cancelled

    def _commit(self) -> None:
        """Journal the held rows whose files the writer has made durable."""
        if self.committed is None:
            return
        self.durable.update(self.committed())
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
        self.counts["skipped"] += 1
        self.progress.update("skipped")

    def _finish(
        self, row: dict[str, Any], outcome: str, *, reason: str | None = None, nbytes: int = 0
    ) -> None:
        """Journal ``row`` (after its file is in place) and count it."""
        assert self.journal is not None
        self.journal.append(row, flush=False)
        if self.journal.buffered >= _JOURNAL_BATCH:
            self._flush_journal()
        elif self.flush_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush_journal()
            else:
                self.flush_timer = loop.call_later(_JOURNAL_FLUSH_S, self._flush_journal_later)
        self.index[row["url"]] = _FINISHED
        self.counts[outcome] += 1
        self.bytes += nbytes
        if reason is not None:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
            log = logger.info if self.verbose else logger.debug
            log("failed %s: %s %s", row["url"], reason, row.get("detail") or "")
        self.progress.update(outcome, nbytes)
        self._check_threshold()

    def _flush_journal(self) -> None:
        """Write the buffered journal rows (their files are all in place already)."""
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        assert self.journal is not None
        try:
            self.journal.flush()
        except OSError as exc:
            self._check_disk_full(exc)
            if self.fatal is None:
                raise OutputError(
                    f"cannot append to the journal in {str(self.root)!r}: {exc}; "
                    "check the output folder"
                ) from exc

    def _close_journal(self) -> None:
        """Write the buffered rows and close the journal; a failure is raised at the run's end."""
        assert self.journal is not None
        try:
            self._flush_journal()
        except OutputError as exc:
            if self.journal_error is None:
                self.journal_error = exc
        finally:
            with contextlib.suppress(OSError):
                self.journal.close()

    def _flush_journal_later(self) -> None:
        self.flush_timer = None
        try:
            self._flush_journal()
        except OutputError as exc:  # a timer callback: stop the run, raise at its end
            if self.journal_error is None:
                self.journal_error = exc
            self._stop()

    def _check_disk_full(self, exc: OSError) -> None:
        if exc.errno in _DISK_FULL and self.fatal is None:
            self.fatal = exc
            logger.error("the disk under %s is full; stopping the run", self.root)
            self._stop()

    def _check_threshold(self) -> None:
        if self.fail_threshold is None or self.stopping:
            return
        fetched = self.counts["success"] + self.counts["failed"]
        if (
            fetched >= _MIN_ITEMS_FOR_THRESHOLD
            and self.counts["failed"] > self.fail_threshold * fetched
        ):
            self.aborted = True
            logger.error(
                "%d of %d items failed (more than fail_threshold=%g); stopping the run. "
                "Failure reasons: %s",
                self.counts["failed"],
                fetched,
                self.fail_threshold,
                self.reasons,
            )
            self._stop()

    def _stop(self) -> None:
        self.stopping = True
        if self.engine_task is not None and not self.engine_task.done():
            self.engine_task.cancel()

    # the whole run -----------------------------------------------------------------------------

    async def execute(
        self, items: AsyncIterator[Any] | AsyncIterable[Any], fetch_config: Any
    ) -> None:
        from gbif_dl.fetch.engine import FetchEngine

        manifest_name, journal_name = self.files.manifest, self.files.journal
        merge_journal_file(  # a killed run's journal, if any (streamed, nothing kept in memory)
            self.root, manifest_name=manifest_name, journal_name=journal_name
        )
        self.index = load_index(self.root, manifest_name=manifest_name, journal_name=journal_name)
        self.journal = Journal(self.root, self.files.journal)
        try:
            engine = FetchEngine(fetch_config)
            self.engine_task = asyncio.ensure_future(
                engine.run(self.records_to_fetch(items), self.on_result)
            )
            try:
                await self.engine_task
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
        finally:
            try:
                self._close_writer()
            finally:
                self._close_journal()
                self.progress.close()
                self.index = ResumeIndex()  # free it before the manifest is built
            try:
                # streamed: the merge, the attribution files and finalize read the manifest
                # file a batch at a time, so memory stays flat whatever the number of rows
                release_memory()  # the fetch phase's buffers, before the merge's peak
                manifest = merge_journal_file(
                    self.root, manifest_name=manifest_name, journal_name=journal_name
                )
                release_memory()
                if manifest is not None and self.files.attribution:
                    write_attribution(self.root, manifest)
                    finalize = getattr(self.writer, "finalize", None)
                    if finalize is not None:  # files derived from the manifest (metadata.jsonl)
                        finalize(manifest)
            except OSError as exc:
                if self.fatal is None:
                    raise OutputError(
                        f"cannot write the manifest in {str(self.root)!r}: {exc}; the journal "
                        f"{self.root / self.files.journal} keeps the progress, rerun to merge it"
                    ) from exc
                logger.error("cannot write the manifest (%s); rerun once there is space", exc)
        if self.journal_error is not None and self.fatal is None:
            raise self.journal_error


# --- public entry points ----------------------------------------------------------------------


async def download_async(
    items: Any,
    root: str | os.PathLike[str] = "data",
    random_subsets: Mapping[str, float] | None = None,
    retries: int = 3,
    overwrite: bool = False,
    is_valid_file: Callable[[bytes], bool] | None = None,
    proxy: str | None = None,
    *,
    splits: Mapping[str, float] | None = None,
    split_by: str = "gbifID",
    seed: int | str = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    max_size: int | None = None,
    decode_check: bool = False,
    max_bytes: int | None = None,
    progress: bool | None = None,
    fail_threshold: float | None = None,
    verbose: bool = False,
    output: str = "imagefolder",
    shard_size: int | None = None,
    shard_bytes: int | None = None,
    **compat: Any,
) -> DownloadStats:
    """The async form of :func:`download`, for code that already runs an event loop.

    Example:
        >>> stats = await download_async(urls, root="data")  # doctest: +SKIP
    """
    from gbif_dl.progress import Progress

    started = time.monotonic()
    concurrency = _apply_compat(compat, concurrency, stacklevel=3)
    assign = _subset_assigner(random_subsets, splits, split_by, seed)
    if fail_threshold is not None and not 0.0 <= float(fail_threshold) <= 1.0:
        raise ConfigError(
            f"fail_threshold is the largest tolerated share of failures, between 0 and 1; "
            f"got {fail_threshold!r}"
        )
    fetch_config = _fetch_config(
        retries=retries,
        concurrency=concurrency,
        per_host=per_host,
        max_size=max_size,
        decode_check=decode_check,
        max_bytes=max_bytes,
        proxy=proxy,
        is_valid_file=is_valid_file,
    )
    make_writer = _writer_factory(output, {"shard_size": shard_size, "shard_bytes": shard_bytes})
    source, total = _as_async_items(items)
    root_path = _prepare_root(root)
    with _locked(root_path):
        run = _Run(
            root_path,
            writer=make_writer(root_path),
            assign=assign,
            overwrite=overwrite,
            fail_threshold=fail_threshold,
            verbose=verbose,
            progress=Progress(total=total, mode=progress),
        )
        await run.execute(source, fetch_config)
    stats = DownloadStats(
        success=run.counts["success"],
        failed=run.counts["failed"],
        skipped=run.counts["skipped"],
        reasons=dict(run.reasons),
        bytes=run.bytes,
        elapsed_s=time.monotonic() - started,
        manifest=str(root_path / MANIFEST_NAME),
        root=str(root_path),
        aborted=run.aborted,
    )
    logger.info(
        "downloaded %d, failed %d, skipped %d in %.1f s into %s%s",
        stats.success,
        stats.failed,
        stats.skipped,
        stats.elapsed_s,
        root_path,
        f"; failures: {stats.reasons}" if stats.reasons else "",
    )
    if run.fatal is not None:
        raise OutputError(
            f"the disk under {str(root_path)!r} is full ({run.fatal.strerror or run.fatal}); "
            f"{stats.success} files were stored and the manifest records every finished item. "
            "Free some space and rerun the same command to continue"
        ) from run.fatal
    return stats


def download(
    items: Any,
    root: str | os.PathLike[str] = "data",
    random_subsets: Mapping[str, float] | None = None,
    retries: int = 3,
    overwrite: bool = False,
    is_valid_file: Callable[[bytes], bool] | None = None,
    proxy: str | None = None,
    *,
    splits: Mapping[str, float] | None = None,
    split_by: str = "gbifID",
    seed: int | str = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    max_size: int | None = None,
    decode_check: bool = False,
    max_bytes: int | None = None,
    progress: bool | None = None,
    fail_threshold: float | None = None,
    verbose: bool = False,
    output: str = "imagefolder",
    shard_size: int | None = None,
    shard_bytes: int | None = None,
    runner: str | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    dask_client: Any = None,
    **compat: Any,
) -> DownloadStats:
    """Download media records into ``root/[subset/]label/<basename>.<ext>``; resumable.

    Args:
        items: records (dicts with at least ``url``; ``label``, ``subset``, ``basename`` and the
            GBIF fields are used when present), URL strings, a generator or async generator of
            either, or the path of a text file with one URL per line.
        root: the output folder (created if missing).
        random_subsets: ``{"train": 0.9, "test": 0.1}``: each item goes to a subset drawn with
            these probabilities (reproducible with ``seed``). An item's own ``subset`` wins.
        retries: retries per item for transient failures (timeouts, 429, 5xx).
        overwrite: fetch and rewrite items that are already done.
        is_valid_file: ``f(bytes) -> bool``; False marks the item failed (reason ``invalid``).
        proxy: proxy URL, e.g. ``"http://user:pass@proxy:3128"``.
        splits: ``{"train": .8, "val": .1, "test": .1}``: grouped, deterministic splits.
        split_by: the record field that groups items for ``splits`` (``"gbifID"``: all media of
            one occurrence in one split; ``"url"``: each item on its own).
        seed: seed of ``splits`` / ``random_subsets``.
        concurrency, per_host: requests in flight in total and per host.
        max_size: resize so the longest side is at most this many pixels.
        decode_check: fully decode each image and reject those that do not decode.
        max_bytes: reject bodies larger than this.
        progress: None = a bar on a terminal, log lines otherwise; True/False to force.
        fail_threshold: stop early when more than this share of items fails (0..1).
        verbose: log every failed item at INFO level.
        output: the layout (:data:`OUTPUTS`): ``"imagefolder"`` (gbif-dl 0.1's folders),
            ``"webdataset"`` (``root/{split}-{shard:06d}.tar`` shards, see
            :mod:`gbif_dl.writers.webdataset`) or ``"hf"`` (folders plus ``metadata.jsonl`` and
            ``classes.json`` for Hugging Face ``datasets``, see :mod:`gbif_dl.writers.hf`).
        shard_size, shard_bytes: ``output="webdataset"`` only: samples per shard (default
            10,000) and/or a size in bytes at which a shard is closed.
        runner: None (default): one process, streaming, no shard files. ``"local"`` or
            ``"dask"``: cut the job into shards of ``shard_size`` records (default 10,000) run
            by :mod:`gbif_dl.runners` (``output="imagefolder"`` or ``"hf"``); see
            docs/distributed.md.
        workers: processes of the local runner, or of the Dask LocalCluster started when
            neither ``dask_address`` nor ``dask_client`` is given.
        dask_address, dask_client: the Dask scheduler (``"tcp://host:8786"``) or an existing
            ``distributed.Client`` for ``runner="dask"``.
        **compat: ``tcp_connections`` (now ``concurrency``), ``nb_workers`` and ``batch_size``
            of gbif-dl 0.1 are accepted with a DeprecationWarning.

    Returns:
        :class:`DownloadStats` (``stats["success"]``, ``["failed"]``, ``["skipped"]``,
        ``["reasons"]``, ``["bytes"]``, ``["elapsed_s"]``, ``["manifest"]``).

    Raises:
        ConfigError: bad arguments, before any request.
        OutputError: the root cannot be used (before any request) or the disk filled up.

    Works in plain scripts and inside a running event loop (Jupyter) alike.

    Example:
        >>> import gbif_dl
        >>> urls = gbif_dl.api.generate_urls({"speciesKey": [5352251]}, label="speciesKey")
        ... # doctest: +SKIP
        >>> stats = download(urls, root="data", splits={"train": .8, "val": .2})  # doctest: +SKIP
        >>> stats["success"], stats["failed"], stats["skipped"]  # doctest: +SKIP
        (120, 2, 0)
    """
    concurrency = _apply_compat(compat, concurrency, stacklevel=3)
    if runner is not None:
        return _download_with_runner(
            items,
            root,
            runner=runner,
            workers=workers,
            dask_address=dask_address,
            dask_client=dask_client,
            output=output,
            shard_size=shard_size,
            shard_bytes=shard_bytes,
            assign=_subset_assigner(random_subsets, splits, split_by, seed),
            fetch_config=_fetch_config(
                retries=retries,
                concurrency=concurrency,
                per_host=per_host,
                max_size=max_size,
                decode_check=decode_check,
                max_bytes=max_bytes,
                proxy=proxy,
                is_valid_file=is_valid_file,
            ),
            overwrite=overwrite,
            fail_threshold=fail_threshold,
            verbose=verbose,
        )
    return run_sync(
        download_async(
            items,
            root,
            random_subsets,
            retries,
            overwrite,
            is_valid_file,
            proxy,
            splits=splits,
            split_by=split_by,
            seed=seed,
            concurrency=concurrency,
            per_host=per_host,
            max_size=max_size,
            decode_check=decode_check,
            max_bytes=max_bytes,
            progress=progress,
            fail_threshold=fail_threshold,
            verbose=verbose,
            output=output,
            shard_size=shard_size,
            shard_bytes=shard_bytes,
            **compat,
        )
    )


# --- sharded runs (gbif_dl.runners) -----------------------------------------------------------


def _download_with_runner(
    items: Any,
    root: str | os.PathLike[str],
    *,
    runner: str,
    workers: int | None,
    dask_address: str | None,
    dask_client: Any,
    output: str,
    shard_size: int | None,
    shard_bytes: int | None,
    assign: Callable[[Mapping[str, Any]], str] | None,
    fetch_config: Any,
    overwrite: bool,
    fail_threshold: float | None,
    verbose: bool,
) -> DownloadStats:
    """``download(..., runner=...)``: plan shards, run them with the runner, merge."""
    from gbif_dl.plan import DEFAULT_SHARD_SIZE
    from gbif_dl.runners import run
    from gbif_dl.shard import hf_writer, imagefolder_writer

    writers = {"imagefolder": imagefolder_writer, "hf": hf_writer}
    writer = writers.get(output) if isinstance(output, str) else None
    if writer is None or shard_bytes is not None:
        raise ConfigError(
            f"runner={runner!r} writes output='imagefolder' or 'hf' (got output={output!r}"
            f"{', shard_bytes=' + repr(shard_bytes) if shard_bytes is not None else ''}); "
            "drop runner= for output='webdataset'"
        )
    return run(
        items,
        root,
        runner=runner,
        shard_size=DEFAULT_SHARD_SIZE if shard_size is None else shard_size,
        workers=workers,
        dask_address=dask_address,
        dask_client=dask_client,
        fetch=fetch_config,
        assign=assign,
        overwrite=overwrite,
        fail_threshold=fail_threshold,
        verbose=verbose,
        writer=writer,
    )

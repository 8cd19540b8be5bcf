"""The run state of a store root: pulled into the local work folder, pushed back as objects.

The store is the truth; the local work folder (:func:`~gbif_dl.storage.location.
default_work_dir`, or ``work_dir=``) is a cache any machine can rebuild:

- :func:`pull_state` (start of a run): the store's ``manifest.parquet`` and ``classes.json``
  replace the local ones; the journal part objects a killed run uploaded are merged into the
  manifest, which is uploaded (whole) before those parts are deleted (a kill in between merges
  the same rows again, with the same result);
- :class:`JournalUploader` (during the run): every few seconds, the journal lines written since
  the last upload become one numbered part object ``.gbif-dl-journal-<run>-<n>.jsonl``, so a
  rerun on another machine knows what this one finished (a row is journaled only once its
  object is in the store; rows lost between two uploads are found again by the writer);
- :func:`push_state` (end of a run): ``manifest.parquet``, then the files derived from it
  (``ATTRIBUTION.csv``, ``CITATION.txt``, ``classes.json``), then the parts are deleted.

Example:
    >>> import tempfile
    >>> from gbif_dl.manifest import SUCCESS, Journal, manifest_row, read_manifest
    >>> from gbif_dl.storage.location import open_store
    >>> mirror = StoreMirror(open_store("memory://doc-state/ds"))
    >>> first = Path(tempfile.mkdtemp())
    >>> with Journal(first) as journal:
    ...     journal.append(manifest_row({"url": "http://h/a.jpg"}, status=SUCCESS, path="a.jpg"))
    >>> uploader = JournalUploader(mirror, first)
    >>> uploader.upload_new(), len(journal_parts(mirror))
    (1, 1)
    >>> other = Path(tempfile.mkdtemp())  # another machine
    >>> pull_state(mirror, other)
    >>> read_manifest(other)["url"].to_pylist(), journal_parts(mirror), mirror.exists(MANIFEST_NAME)
    (['http://h/a.jpg'], [], True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from gbif_dl.manifest import JOURNAL_NAME, MANIFEST_NAME, merge_journal_file
from gbif_dl.storage.mirror import StoreMirror
from gbif_dl.writers.paths import check_state_files, open_state_file

__all__ = [
    "JOURNAL_PART_PREFIX",
    "JOURNAL_UPLOAD_S",
    "PULLED_FILES",
    "JournalUploader",
    "journal_parts",
    "pull_state",
    "push_state",
]

logger = logging.getLogger(__name__)

#: Journal part objects at the root: ``.gbif-dl-journal-<run id>-<number>.jsonl``.
JOURNAL_PART_PREFIX = ".gbif-dl-journal-"
_PART_NAME = re.compile(r"^\.gbif-dl-journal-[0-9A-Za-z]+-[0-9]{6,}\.jsonl$")
#: Seconds between two journal part uploads during a run.
JOURNAL_UPLOAD_S = 5.0
#: The state a run reads back from the store (the other root files are rewritten from them).
PULLED_FILES = (MANIFEST_NAME, "classes.json")


def journal_parts(mirror: StoreMirror) -> list[str]:
    """The journal part objects at the store root, in upload order (run id, then number).

    Example:
        >>> from gbif_dl.storage.location import open_store
        >>> journal_parts(StoreMirror(open_store("memory://doc-parts/ds")))
        []
    """
    return sorted(name for name in mirror.names() if _PART_NAME.match(name))


def pull_state(mirror: StoreMirror, work: Path) -> None:
    """Make the local work folder hold the store's state (see the module docstring).

    The local journal is emptied first: what it holds beyond the store is either in the store's
    objects already (found again by the writer) or worth a new request.

    Example:
        >>> import tempfile
        >>> from gbif_dl.storage.location import open_store
        >>> work = Path(tempfile.mkdtemp())
        >>> pull_state(StoreMirror(open_store("memory://doc-pull/ds")), work)
        >>> sorted(p.name for p in work.iterdir())
        ['.gbif-dl-journal.jsonl']
    """
    check_state_files(work, (*PULLED_FILES, JOURNAL_NAME))
    for name in PULLED_FILES:
        if not mirror.get_file(name, work / name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(work / name)
    parts = journal_parts(mirror)
    with open_state_file(work / JOURNAL_NAME, "wb") as journal:
        for name in parts:
            data = mirror.get_bytes(name) or b""
            if data and not data.endswith(b"\n"):
                data += b"\n"  # a part holds whole lines; never glue two rows together
            journal.write(data)
    if parts:
        merge_journal_file(work)
        mirror.put_file(work / MANIFEST_NAME, MANIFEST_NAME)
        mirror.remove(parts)
        logger.info("merged %d journal parts of an interrupted run into %s", len(parts), mirror.url)


def push_state(mirror: StoreMirror, work: Path, names: Iterable[str] = ()) -> list[str]:
    """Upload the manifest, then ``names`` (root files derived from it), then delete the journal
    parts the manifest now holds; returns the names uploaded.

    Example:
        >>> import tempfile
        >>> from gbif_dl.storage.location import open_store
        >>> work = Path(tempfile.mkdtemp())
        >>> _ = (work / MANIFEST_NAME).write_bytes(b"...")
        >>> push_state(StoreMirror(open_store("memory://doc-push/ds")), work, ["CITATION.txt"])
        ['manifest.parquet']
    """
    uploaded = []
    for name in (MANIFEST_NAME, *names):
        if (work / name).is_file():
            mirror.put_file(work / name, name)
            uploaded.append(name)
    if MANIFEST_NAME in uploaded:
        mirror.remove(journal_parts(mirror))
    return uploaded


class JournalUploader:
    """Upload the lines appended to the local journal as numbered part objects.

    Thread-safe; :meth:`keep_uploading` runs it every :data:`JOURNAL_UPLOAD_S` seconds beside a
    run (each upload in a thread), :meth:`close` stops it (waiting for an upload under way).

    Args:
        mirror: the store root.
        work: the local work folder holding ``name``.
        name: the journal file.

    Example:
        >>> import tempfile
        >>> from gbif_dl.storage.location import open_store
        >>> uploader = JournalUploader(StoreMirror(open_store("memory://doc-up/ds")),
        ...                            Path(tempfile.mkdtemp()))
        >>> uploader.upload_new()
        0
    """

    def __init__(self, mirror: StoreMirror, work: Path, name: str = JOURNAL_NAME) -> None:
        self.mirror = mirror
        self.path = work / name
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + secrets.token_hex(3)
        self.number = 0
        self.offset = 0
        self.closed = False
        self._lock = threading.Lock()

    def upload_new(self) -> int:
        """Upload the whole lines written since the last upload as one part; returns how many
        lines (0: nothing new, or closed)."""
        with self._lock:
            if self.closed:
                return 0
            try:
                with open_state_file(self.path, "rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    if size < self.offset:  # merged and emptied by the run: start again
                        self.offset = 0
                    handle.seek(self.offset)
                    data = handle.read(size - self.offset)
            except FileNotFoundError:
                return 0
            data = data[: data.rfind(b"\n") + 1]  # whole lines only: the rest is being written
            if not data:
                return 0
            name = f"{JOURNAL_PART_PREFIX}{self.run_id}-{self.number:06d}.jsonl"
            self.mirror.put_bytes(name, data)
            self.number += 1
            self.offset += len(data)
            return data.count(b"\n")

    async def keep_uploading(self, interval: float = JOURNAL_UPLOAD_S) -> None:
        """Call :meth:`upload_new` every ``interval`` seconds until cancelled; a failed upload is
        logged and tried again at the next turn (the rows stay in the local journal)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.upload_new)
            except OSError as exc:
                logger.warning(
                    "cannot upload the journal to %s (%s); retrying", self.mirror.url, exc
                )

    def close(self) -> None:
        """Stop uploading (waits for an upload under way)."""
        with self._lock:
            self.closed = True

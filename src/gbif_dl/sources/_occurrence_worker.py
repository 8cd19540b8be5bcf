"""The occurrence file of a big archive, read by a worker process for the streaming join.

The main process reads the multimedia file and builds the records; meanwhile this worker
inflates and parses ``occurrence.txt`` (the larger file, often 200+ columns) and sends compact
messages (see ``ArchiveSource._occurrence_messages``) down a pipe, so the two files are read on
two cores. The worker is a plain ``python -c`` child, not :mod:`multiprocessing`: nothing of
the caller's ``__main__`` is imported again, so it works from any script, notebook or
``python -c``. Where it cannot start, the main process reads the occurrences itself.

Example:
    >>> with open_occurrence_feed(source, archive, ["speciesKey"]) as feed:  # doctest: +SKIP
    ...     first = next(feed)
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gbif_dl.errors import ArchiveError

if TYPE_CHECKING:
    from gbif_dl.sources.archive import ArchiveSource

logger = logging.getLogger(__name__)

#: Messages the worker may have ready before the main process takes them (16,384 keys and
#: their code columns: about 0.6 MB each, from the array widths).
_OUTBOX = 4
_PIPE_BYTES = 1 << 20
#: numpy's BLAS starts a spinning thread per core at import; the worker never multiplies
#: matrices, and on a small machine those threads take CPU from the two readers.
_QUIET_BLAS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from gbif_dl.sources._occurrence_worker import main; main()"
)


@contextmanager
def open_occurrence_feed(
    source: ArchiveSource, archive: zipfile.ZipFile, wanted: Sequence[str]
) -> Iterator[Iterator[dict[str, Any]]]:
    """The occurrence messages of ``source``: from a worker process for a big file, else
    read here. Leaving the block stops the worker.

    Example:
        >>> with open_occurrence_feed(source, archive, ["speciesKey"]) as feed:  # doctest: +SKIP
        ...     keys = next(feed)["keys"]
    """
    size = archive.getinfo(source.core.location).file_size
    worker = None
    if size >= source.worker_min_bytes and (os.cpu_count() or 1) > 1 and sys.executable:
        worker = _Worker.start(source, wanted)
    source._occurrence_process = None if worker is None else worker.process
    local: Generator[dict[str, Any], None, None] = source._occurrence_messages(archive, wanted)
    try:
        yield local if worker is None else worker.messages(local)
    finally:
        local.close()
        if worker is not None:
            worker.close()


class _Worker:
    """A running worker process and the end of its pipe."""

    def __init__(self, process: subprocess.Popen[bytes], errors: IO[bytes], where: str) -> None:
        self.process = process
        self.errors = errors
        self.where = where

    @classmethod
    def start(cls, source: ArchiveSource, wanted: Sequence[str]) -> _Worker | None:
        import gbif_dl

        root = str(Path(gbif_dl.__file__).resolve().parent.parent)
        spec = {
            "path": str(source.path),
            "wanted": list(wanted),
            "block_size": source.block_size,
            "batch_rows": source.batch_rows,
        }
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, root],
                env={**os.environ, **_QUIET_BLAS},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        except OSError as exc:
            errors.close()
            logger.debug("no occurrence worker (%s): reading occurrences in this process", exc)
            return None
        assert process.stdin is not None and process.stdout is not None
        _widen_pipe(process.stdout.fileno())
        try:
            process.stdin.write(json.dumps(spec).encode() + b"\n")
            process.stdin.close()
        except OSError:
            pass  # it died at once: messages() notices and reads here instead
        return cls(process, errors, str(source.path))

    def messages(self, local: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The worker's messages; ``local`` (this process's reader) if it never sent one."""
        stdout = self.process.stdout
        assert stdout is not None
        received = False
        while True:
            try:
                message = pickle.load(stdout)
            except (EOFError, pickle.UnpicklingError, OSError) as exc:
                code = self.process.wait()
                detail = self._stderr()
                if not received:
                    logger.debug(
                        "occurrence worker did not start (exit %s: %s): reading here", code, detail
                    )
                    yield from local
                    return
                raise ArchiveError(
                    f"the process reading the occurrences of {self.where} stopped unexpectedly "
                    f"(exit code {code}{': ' + detail if detail else ''}); run again",
                    path=self.where,
                ) from exc
            received = True
            if "error" in message:
                if message.get("kind") == "ArchiveError":
                    raise ArchiveError(message["error"], path=self.where)
                raise RuntimeError(
                    f"reading the occurrences of {self.where} failed: "
                    f"{message['kind']}: {message['error']}"
                )
            yield message
            if message.get("end"):
                return

    def _stderr(self) -> str:
        self.errors.seek(0)
        lines = self.errors.read(64 << 10).decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.errors.close()


def _widen_pipe(fd: int) -> None:
    """Let a whole message sit in the pipe (Linux), so neither side waits on the other."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass  # other systems, or a lower limit: smaller writes, same result


def main() -> None:
    """The worker: read the spec line on stdin, write pickled messages to stdout."""
    from gbif_dl.sources.archive import ArchiveSource

    spec = json.loads(sys.stdin.buffer.readline())
    out = sys.stdout.buffer
    outbox: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=_OUTBOX)

    def send() -> None:
        while True:
            message = outbox.get()
            try:
                pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
            except OSError:  # the main process went away
                os._exit(0)
            if message.get("end") or "error" in message:
                return

    sender = threading.Thread(target=send, name="gbif-dl-occurrences", daemon=True)
    sender.start()
    try:
        source = ArchiveSource(
            spec["path"], block_size=spec["block_size"], batch_rows=spec["batch_rows"]
        )
        with source._open_zip() as archive:
            for message in source._occurrence_messages(archive, spec["wanted"]):
                outbox.put(message)
    except BaseException as exc:  # every failure goes to the main process
        outbox.put({"error": str(exc), "kind": type(exc).__name__})
    sender.join()

"""The occurrence file of a big archive, read by a worker process for the streaming join.

The main process reads the multimedia file and builds the records; meanwhile this worker
inflates and parses ``occurrence.txt`` (the larger file, often 200+ columns) and sends compact
messages (see :func:`~gbif_dl.sources.archive.occurrences.occurrence_messages`) down a pipe,
so the two files are read on two cores.

On Linux, in a process with no other Python thread, the worker is a fork of this process: it
starts in a millisecond with numpy and pyarrow already imported, and shares their pages.
Elsewhere (other threads running, which a fork could leave holding locks in the child; macOS;
Windows) it is a plain ``python -c`` child, not :mod:`multiprocessing`: nothing of the caller's
``__main__`` is imported again, so it works from any script, notebook or ``python -c``. Where
no worker can start, the main process reads the occurrences itself.

Example:
    >>> with open_occurrence_feed(reader, archive, core, ["speciesKey"]) as feed:  # doctest: +SKIP
    ...     first = next(feed.messages)
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Union

from gbif_dl.errors import ArchiveError
from gbif_dl.sources.archive.members import MemberReader
from gbif_dl.sources.archive.meta import DataFileSpec, open_zip, read_meta
from gbif_dl.sources.archive.occurrences import occurrence_messages

__all__ = [
    "ForkedProcess",
    "OccurrenceFeed",
    "WorkerProcess",
    "fork_is_safe",
    "main",
    "open_occurrence_feed",
]

logger = logging.getLogger(__name__)

#: Messages the worker may have ready before the main process takes them (16,384 keys and
#: their code columns: about 0.6 MB each, from the array widths).
_OUTBOX = 4
_PIPE_BYTES = 1 << 20
#: The worker's chunks of the occurrence file, in multiples of the source's block size.
_OCCURRENCE_BLOCKS = 2
#: numpy's BLAS starts a spinning thread per core at import; the worker never multiplies
#: matrices, and on a small machine those threads take CPU from the two readers.
_QUIET_BLAS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from gbif_dl.sources.archive.worker import main; main()"
)


@dataclass(frozen=True)
class OccurrenceFeed:
    """The occurrence messages and the worker process sending them (``None``: read here)."""

    messages: Iterator[dict[str, Any]]
    process: WorkerProcess | None


@contextmanager
def open_occurrence_feed(
    reader: MemberReader,
    archive: zipfile.ZipFile,
    core: DataFileSpec,
    wanted: Sequence[str],
    *,
    min_bytes: int,
    start: Literal["auto", "fork", "spawn"] = "auto",
) -> Iterator[OccurrenceFeed]:
    """The occurrence messages of ``core``: from a worker process when the file has at least
    ``min_bytes`` (uncompressed), else read here. Leaving the block stops the worker.

    ``start``: ``"auto"`` forks this process where that is safe (:func:`fork_is_safe`) and
    starts a new interpreter elsewhere; ``"fork"`` or ``"spawn"`` choose (a fork that cannot
    happen falls back to a new interpreter).

    Example:
        >>> with open_occurrence_feed(reader, zf, core, ["speciesKey"], min_bytes=0) as feed:
        ...     keys = next(feed.messages)["keys"]  # doctest: +SKIP
    """
    size = archive.getinfo(core.location).file_size
    worker = None
    if size >= min_bytes and (os.cpu_count() or 1) > 1:
        worker = _Worker.start(reader, wanted, start)
    local: Generator[dict[str, Any], None, None] = occurrence_messages(
        reader, archive, core, wanted
    )
    try:
        if worker is None:
            yield OccurrenceFeed(local, None)
        else:
            yield OccurrenceFeed(worker.messages(local), worker.process)
    finally:
        local.close()
        if worker is not None:
            worker.close()


def fork_is_safe() -> bool:
    """Whether a worker can be forked from this process: Linux, and no Python thread but this
    one. (The C threads always there, numpy's BLAS pool and arrow's jemalloc thread, register
    fork handlers of their own.)

    Example:
        >>> isinstance(fork_is_safe(), bool)
        True
    """
    return sys.platform == "linux" and hasattr(os, "fork") and threading.active_count() == 1


class ForkedProcess:
    """The parts of :class:`subprocess.Popen` the worker needs, for a forked child.

    Example:
        >>> ForkedProcess(os.getpid(), open(os.devnull, "rb")).returncode is None
        True
    """

    def __init__(self, pid: int, stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code if the child ended (reaped now), else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        """Wait for the child to end; its exit code."""
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        """Stop the child (SIGKILL) unless it was reaped already."""
        if self.returncode is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


WorkerProcess = Union["subprocess.Popen[bytes]", "ForkedProcess"]


class _Worker:
    """A running worker process and the end of its pipe."""

    def __init__(self, process: WorkerProcess, errors: IO[bytes] | None, where: str) -> None:
        self.process = process
        self.errors = errors  # the child's stderr (a spawned one's)
        self.where = where

    @classmethod
    def start(
        cls, reader: MemberReader, wanted: Sequence[str], how: Literal["auto", "fork", "spawn"]
    ) -> _Worker | None:
        """A forked worker where that is safe (see ``how``), else a new interpreter; None if
        neither starts."""
        spec = {
            "path": str(reader.path),
            "wanted": list(wanted),
            # chunks twice as large: an occurrence line has some 240 fields, so a chunk holds
            # few rows and arrow's cost per parse call counts (on the benchmark archive, 8
            # alternating runs: worker CPU 2.21 -> 2.14 s, its peak RSS 94 -> 97 MB)
            "block_size": _OCCURRENCE_BLOCKS * reader.block_size,
            "batch_rows": reader.batch_rows,
        }
        if how == "fork" or (how == "auto" and fork_is_safe()):
            worker = cls._fork(spec)
            if worker is not None:
                return worker
        return cls._spawn(spec)

    @classmethod
    def _fork(cls, spec: dict[str, Any]) -> _Worker | None:
        if not hasattr(os, "fork"):
            return None
        read_fd, write_fd = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns of fork in a process with threads; the only ones here are
                # numpy's and arrow's own, which reset in the child (see fork_is_safe)
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            logger.debug("cannot fork an occurrence worker (%s)", exc)
            return None
        if pid == 0:  # the child: serve, then leave without running the parent's exit code
            code = 1
            try:
                # like a new interpreter's, nothing of the parent's stays open but stdio and
                # the pipe (a socket of the parent's would otherwise outlive its close there)
                os.closerange(3, write_fd)
                os.closerange(write_fd + 1, _max_fd())
                with suppress(ValueError):  # Ctrl-C is the parent's to handle: it stops us
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                with os.fdopen(write_fd, "wb") as out:
                    _serve(spec, out)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        _widen_pipe(read_fd)
        return cls(ForkedProcess(pid, os.fdopen(read_fd, "rb")), None, spec["path"])

    @classmethod
    def _spawn(cls, spec: dict[str, Any]) -> _Worker | None:
        import gbif_dl

        if not sys.executable:
            return None
        root = str(Path(gbif_dl.__file__).resolve().parent.parent)
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
        return cls(process, errors, spec["path"])

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
        if self.errors is None:
            return ""
        self.errors.seek(0)
        lines = self.errors.read(64 << 10).decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.errors is not None:
            self.errors.close()


def _max_fd() -> int:
    try:
        return max(int(os.sysconf("SC_OPEN_MAX")), 256)
    except (ValueError, OSError):
        return 1 << 16


def _widen_pipe(fd: int) -> None:
    """Let a whole message sit in the pipe (Linux), so neither side waits on the other."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass  # other systems, or a lower limit: smaller writes, same result


def main() -> None:
    """A spawned worker: read the spec line on stdin, write pickled messages to stdout.

    Example:
        >>> args = [sys.executable, "-c", _BOOT, root]                   # doctest: +SKIP
        >>> subprocess.Popen(args, stdin=PIPE, stdout=PIPE)             # doctest: +SKIP
    """
    _serve(json.loads(sys.stdin.buffer.readline()), sys.stdout.buffer)


def _serve(spec: dict[str, Any], out: IO[bytes]) -> None:
    """Read the occurrences ``spec`` names and write their messages, pickled, to ``out``."""
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
        reader = MemberReader(
            Path(spec["path"]), block_size=spec["block_size"], batch_rows=spec["batch_rows"]
        )
        with open_zip(reader.path) as archive:
            core, _ = read_meta(archive, reader.where)
            for message in occurrence_messages(reader, archive, core, spec["wanted"]):
                outbox.put(message)
    except BaseException as exc:  # every failure goes to the main process
        outbox.put({"error": str(exc), "kind": type(exc).__name__})
    sender.join()

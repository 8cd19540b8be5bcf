"""Atomic file writes: a temp file in the target folder, then ``os.replace``.

A crash (even ``SIGKILL``) never leaves a partial file under a final name: the bytes go to
``.<name>.gbif-dl-<random>.tmp`` next to the final file (created with ``O_EXCL``, so never
through a link) and are renamed only once complete. Leftover temp files from a killed run are
recognised by :func:`is_temp_name` (the ``gbif-dl-`` marker: a user's own ``*.tmp`` file is
never taken for one) and removed by :func:`remove_temp_files`, which never follows a link.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_bytes(folder / "a.txt", b"hello")
    >>> (folder / "a.txt").read_bytes()
    b'hello'
    >>> with atomic_path(folder / "b.txt") as tmp:
    ...     _ = tmp.write_text("world")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'b.txt']
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from gbif_dl.writers.paths import NOFOLLOW

__all__ = [
    "TEMP_MARKER",
    "atomic_path",
    "atomic_write_bytes",
    "create_temp",
    "is_temp_name",
    "remove_temp_files",
    "temp_path",
]

#: What every temp name carries before its random part.
TEMP_MARKER = "gbif-dl-"
_TEMP_NAME = re.compile(r"^\..+\.gbif-dl-[0-9a-f]{12}\.tmp$")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def temp_path(final: Path) -> Path:
    """A fresh temp path next to ``final``: ``.<final name>.gbif-dl-<12 random hex>.tmp``.

    Example:
        >>> is_temp_name(temp_path(Path("x/a.jpg")).name)
        True
    """
    return final.with_name(_temp_name(final.name))


def _temp_name(name: str) -> str:
    return f".{name}.{TEMP_MARKER}{secrets.token_hex(6)}.tmp"


def is_temp_name(name: str) -> bool:
    """True for a file name made by :func:`temp_path`.

    Example:
        >>> is_temp_name(".a.jpg.gbif-dl-0123456789ab.tmp"), is_temp_name("a.jpg")
        (True, False)
        >>> is_temp_name(".a.jpg.0123456789ab.tmp")  # not ours: no marker
        False
    """
    return bool(_TEMP_NAME.match(name))


def create_temp(final: Path) -> tuple[Path, int]:
    """A new temp file next to ``final``, created exclusively (never through a link): its path
    and an open write descriptor.

    Example:
        >>> import tempfile
        >>> tmp, fd = create_temp(Path(tempfile.mkdtemp()) / "a.txt")
        >>> os.close(fd); is_temp_name(tmp.name)
        True
    """
    tmp = temp_path(final)
    return tmp, os.open(tmp, _CREATE, 0o666)


@contextlib.contextmanager
def atomic_path(final: Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path to write to; on success it is renamed to ``final``, else removed.

    With ``fsync=True`` the file's data is flushed to disk before the rename.
    """
    tmp, fd = create_temp(final)  # made here: the caller reopens our own file, never a link
    os.close(fd)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``final`` atomically (temp file in the same folder, then rename).

    The temp file is created exclusively (never through a link), as :func:`create_temp` does;
    paths are handled as strings (no ``Path`` objects per file on the download path).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
        >>> atomic_write_bytes(target, b"\\x00\\x01")
        >>> target.stat().st_size
        2
    """
    target = os.fspath(final)
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, _temp_name(name))
    fd = os.open(tmp, _CREATE, 0o666)
    try:
        try:
            # os.write on the descriptor: no file object (its fstat, ioctl and buffer) per file
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_temp_files(folder: Path) -> int:
    """Delete the temp files a killed run left directly in ``folder``; return how many.

    Only names :func:`is_temp_name` recognises are removed, only regular files, and nothing at
    all when ``folder`` is a link (a link never leads the sweep out of the root).

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = temp_path(folder / "a.jpg").write_bytes(b"partial")
        >>> _ = (folder / ".b.jpg.0123456789ab.tmp").write_bytes(b"the user's own")
        >>> remove_temp_files(folder)
        1
    """
    removed = 0
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            return 0
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed

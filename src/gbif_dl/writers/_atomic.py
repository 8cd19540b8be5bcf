"""Atomic file writes: a temp file in the target folder, then ``os.replace``.

A crash (even ``SIGKILL``) never leaves a partial file under a final name: the bytes go to
``.<name>.<random>.tmp`` next to the final file and are renamed only once complete. Leftover temp
files from a killed run are recognised by :func:`is_temp_name` and removed by
:func:`remove_temp_files`.

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
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "is_temp_name", "remove_temp_files", "temp_path"]

_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def temp_path(final: Path) -> Path:
    """A fresh temp path next to ``final``: ``.<final name>.<12 random hex>.tmp``.

    Example:
        >>> is_temp_name(temp_path(Path("x/a.jpg")).name)
        True
    """
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")


def is_temp_name(name: str) -> bool:
    """True for a file name made by :func:`temp_path`.

    Example:
        >>> is_temp_name(".a.jpg.0123456789ab.tmp"), is_temp_name("a.jpg")
        (True, False)
    """
    return bool(_TEMP_NAME.match(name))


@contextlib.contextmanager
def atomic_path(final: Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path to write to; on success it is renamed to ``final``, else removed.

    With ``fsync=True`` the file's data is flushed to disk before the rename.
    """
    tmp = temp_path(final)
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


def atomic_write_bytes(final: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``final`` atomically (temp file in the same folder, then rename).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
        >>> atomic_write_bytes(target, b"\\x00\\x01")
        >>> target.stat().st_size
        2
    """
    tmp = temp_path(final)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_temp_files(folder: Path) -> int:
    """Delete the temp files a killed run left directly in ``folder``; return how many.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = temp_path(folder / "a.jpg").write_bytes(b"partial")
        >>> remove_temp_files(folder)
        1
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed

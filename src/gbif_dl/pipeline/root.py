"""The output root: check or create it, and hold its lock for the length of a run.

Example:
    >>> import tempfile
    >>> root = prepare_root(tempfile.mkdtemp())
    >>> with locked(root):
    ...     (root / LOCK_NAME).is_file()
    True
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from gbif_dl.errors import OutputError
from gbif_dl.writers.paths import open_state_file

__all__ = ["LOCK_NAME", "locked", "prepare_root"]

#: The lock file at the root; a second run on the same root fails fast instead of interleaving.
LOCK_NAME = ".gbif-dl.lock"


def prepare_root(root: str | os.PathLike[str]) -> Path:
    """The output root as a Path, created if missing; OutputError when it cannot be used.

    Example:
        >>> import tempfile
        >>> prepare_root(tempfile.mkdtemp()).is_dir()
        True
    """
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
def locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root/.gbif-dl.lock`` (released by the OS if we die).

    Example:
        >>> import tempfile
        >>> with locked(Path(tempfile.mkdtemp())):
        ...     pass
    """
    try:
        handle = open_state_file(root / LOCK_NAME, "a+b")  # never through a link
    except OutputError:
        raise
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

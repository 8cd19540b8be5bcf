"""Paths under the output root that never lead out of it: no symbolic link is ever followed.

A label folder, a split folder or a state file that is a symbolic link (``ln -s ../outside
root/birds``) would otherwise send writes, truncations and deletions outside the root. Every path
gbif-dl writes or deletes below the root goes through this module:

- :class:`SafeFolders` checks each component between the root and a folder with ``os.lstat``
  (a real folder, not a link), creating missing ones; a checked folder is remembered, so the cost
  is one check per new folder, not per file;
- :func:`remove_inside` deletes a file only after the same check of its folders;
- :func:`open_state_file` opens a state file (journal, lock) with ``O_NOFOLLOW``;
- :func:`check_state_files` refuses, before a run touches anything, state files that are links
  or folders, with a message saying which file to remove.

A refused path raises :class:`UnsafePathError` (an :class:`OSError`): a writer's caller records
the item as failed with reason ``unsafe_path`` and goes on with the others.

Example:
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> folders = SafeFolders(root)
    >>> folders.ensure("train/bee").is_dir()
    True
    >>> os.symlink(tempfile.mkdtemp(), root / "wasp")
    >>> folders.ensure("wasp")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gbif_dl.writers.paths.UnsafePathError: ...wasp' is a symbolic link...
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from gbif_dl.errors import OutputError

__all__ = [
    "NOFOLLOW",
    "SafeFolders",
    "UnsafePathError",
    "check_state_files",
    "open_state_file",
    "remove_inside",
    "subfolders",
]

#: ``os.O_NOFOLLOW`` where the platform has it (0 elsewhere: the ``lstat`` checks remain).
NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)


class UnsafePathError(PermissionError):
    """A path below the output root would leave it (a symbolic link) or is not a folder.

    Example:
        >>> isinstance(UnsafePathError("x"), OSError)
        True
    """


def _relative_parts(rel: str) -> list[str]:
    parts = [part for part in rel.split("/") if part]
    for part in parts:
        if part in (".", "..") or "\\" in part or "\0" in part:
            raise UnsafePathError(f"refusing the path {rel!r}: it must stay inside the output root")
    return parts


def _check_folder(path: Path, *, create: bool) -> bool:
    """True when ``path`` is a real folder (made when missing and ``create``); False when it is
    missing; UnsafePathError for a link or a file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(
            f"{str(path)!r} is a symbolic link; gbif-dl never writes through links in the output "
            "root. Remove the link (or replace it with a real folder) and rerun"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(
            f"{str(path)!r} is not a folder; move it out of the output root and rerun"
        )
    return True


class SafeFolders:
    """The folders below one root, each checked once: every component a real folder, no link.

    Thread-safe (writers store files from worker threads).

    Example:
        >>> import tempfile
        >>> folders = SafeFolders(tempfile.mkdtemp())
        >>> folders.ensure("a/b", create=False) is None
        True
        >>> folders.ensure("a/b").name, folders.is_checked("a/b")
        ('b', True)
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def is_checked(self, rel: str) -> bool:
        """True when ``rel`` was checked (and exists) since the last :meth:`forget`."""
        return rel in self._checked

    def forget(self) -> None:
        """Check every folder again on next use (one was removed during the run)."""
        with self._lock:
            self._checked.clear()

    def ensure(self, rel: str, *, create: bool = True) -> Path | None:
        """``root/rel`` once every component of it is a real folder; missing ones are made
        (``create``) or the answer is None.

        Raises:
            UnsafePathError: a component is a symbolic link, a file, ``..`` or ``.``.
        """
        if rel in self._checked or not rel:
            return self.root / rel if rel else self.root
        path, done = self.root, ""
        for part in _relative_parts(rel):
            done = f"{done}/{part}" if done else part
            path = path / part
            if done in self._checked:
                continue
            if not _check_folder(path, create=create):
                return None
            with self._lock:
                self._checked.add(done)
        return path


def subfolders(root: Path | str, depth: int, *, hidden: bool = True) -> Iterator[tuple[str, Path]]:
    """``("", root)``, then every folder below ``root`` down to ``depth`` levels, a level at a
    time, as ``(relative name, path)``; never through a link (a linked folder is neither
    yielded nor entered); a folder that cannot be listed is left out. ``hidden=False`` leaves
    out folders whose name starts with a dot, and what is below them.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "train" / "Apis").mkdir(parents=True)
        >>> (root / ".state").mkdir()
        >>> [rel for rel, _ in subfolders(root, 2, hidden=False)]
        ['', 'train', 'train/Apis']
        >>> [rel for rel, _ in subfolders(root, 0)]
        ['']
    """
    level = [("", Path(root))]
    for below_root in range(depth + 1):
        deeper: list[tuple[str, Path]] = []
        for rel, folder in level:
            yield rel, folder
            if below_root == depth:
                continue
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if (hidden or not entry.name.startswith(".")) and entry.is_dir(
                    follow_symlinks=False
                ):
                    deeper.append((f"{rel}/{entry.name}" if rel else entry.name, Path(entry.path)))
        level = deeper


def remove_inside(root: Path | str, rel: str) -> bool:
    """Delete the file ``root/rel`` unless a folder on the way is a link (then nothing is
    deleted); True when a file was removed. The file itself, if a link, is removed as a link.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "a.jpg").write_bytes(b"x")
        >>> remove_inside(root, "a.jpg"), (root / "a.jpg").exists()
        (True, False)
    """
    parts = _relative_parts(rel)
    if not parts:
        return False
    folder = Path(root)
    for part in parts[:-1]:
        folder = folder / part
        if not _check_folder(folder, create=False):
            return False
    try:
        os.unlink(folder / parts[-1])
    except (FileNotFoundError, IsADirectoryError):
        return False
    return True


def open_state_file(path: Path, mode: str) -> IO[Any]:
    """Open the state file ``path`` (``"a"``, ``"a+b"``, ``"r+b"``...) without following a link.

    Raises:
        OutputError: ``path`` is a symbolic link (the message says to remove it).
        OSError: the file cannot be opened otherwise.

    Example:
        >>> import tempfile
        >>> with open_state_file(Path(tempfile.mkdtemp()) / "x.jsonl", "a") as handle:
        ...     _ = handle.write("{}\\n")
    """
    flags = NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_RDWR if "+" in mode else (os.O_WRONLY if mode[0] in "aw" else os.O_RDONLY)
    if mode[0] == "a":
        flags |= os.O_APPEND | os.O_CREAT
    elif mode[0] == "w":
        flags |= os.O_TRUNC | os.O_CREAT
    _refuse_link(path)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if os.path.islink(path):
            raise _link_error(path) from exc
        raise
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8")


def _link_error(path: Path) -> OutputError:
    return OutputError(
        f"the state file {str(path)!r} is a symbolic link; gbif-dl never writes through a link "
        f"in the output root. Remove the link ({str(path)!r}) and rerun: gbif-dl makes a new file"
    )


def _refuse_link(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise _link_error(path)
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(
            f"{str(path)!r} is a folder, but gbif-dl keeps a state file of that name there (an "
            "older gbif-dl made a label folder of that name). Move the folder out of the output "
            "root and rerun"
        )


def check_state_files(root: Path | str, names: Iterable[str]) -> None:
    """OutputError when a state file at ``root`` (``names``) is a link or a folder.

    Called before a run reads or writes anything: a link there would have the run truncate or
    write its target, a folder (an older gbif-dl made one for a label named like the file)
    would stop every run with a raw error.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "manifest.parquet").mkdir()
        >>> check_state_files(root, ["manifest.parquet"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbif_dl.errors.OutputError: ...manifest.parquet' is a folder, but gbif-dl keeps a state...
    """
    for name in names:
        _refuse_link(Path(root) / name)

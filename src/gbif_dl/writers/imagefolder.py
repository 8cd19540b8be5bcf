"""ImageFolder layout: ``root/[subset/]label/<basename>.<ext>``, as gbif-dl 0.1 wrote it.

- ``label`` None (or ``""``): no label folder. A ``dict`` label (``generate_urls(label=None)``
  yields whole records) also gets no folder, but a ``<basename>.json`` sidecar next to the image,
  as in gbif-dl 0.1. Any other label becomes one safe path component
  (:func:`gbif_dl.records.safe_component`): no ``..``, separators or control characters, and
  distinct labels stay distinct.
- The extension comes from the bytes (the fetch engine sniffs it), never from the URL.
- A ``basename`` that would name a state file (``classes`` -> ``classes.json``) is escaped like a
  label; a ``basename`` a run already used for another URL in the same folder gets ``-`` and 10
  hex digits of the URL's sha1 appended (the manifest row's ``path`` and ``basename`` say so):
  two URLs never share a file.
- Every file is written to a temp file in its folder and renamed (:mod:`gbif_dl.writers._atomic`);
  every folder between the root and the file is checked once to be a real folder, not a link
  (:mod:`gbif_dl.writers.paths`): a label folder that is a link out of the root fails its items
  with :class:`~gbif_dl.writers.paths.UnsafePathError` instead of writing through it.
- After each run, ``root/classes.json`` (:mod:`gbif_dl.writers.classes`) gets the labels of the
  stored images, so every layout and loader shares one class index.
- Nothing is ever written outside ``root``.

Example:
    >>> import tempfile
    >>> from gbif_dl.fetch.result import FetchResult
    >>> writer = ImageFolderWriter(tempfile.mkdtemp())
    >>> record = {"url": "http://h/a.jpg", "basename": "abc", "label": "../../etc",
    ...           "subset": "train"}
    >>> result = FetchResult(record=record, ok=True, body=b"\\xff\\xd8\\xff", ext=".jpg")
    >>> path = writer.write(result)
    >>> path.startswith("train/"), path.endswith("/abc.jpg"), ".." in path.split("/")
    (True, True, False)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gbif_dl.records import RESERVED_NAMES, public_url, safe_component, url_basename, url_digest
from gbif_dl.writers._atomic import atomic_write_bytes, remove_temp_files
from gbif_dl.writers.base import Writer
from gbif_dl.writers.classes import update_classes_from_manifest
from gbif_dl.writers.paths import SafeFolders, UnsafePathError, subfolders

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from gbif_dl.fetch.result import FetchResult

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderWriter",
    "NameClaims",
    "disambiguated",
    "existing_folders",
    "record_folder",
    "safe_basename",
]

logger = logging.getLogger(__name__)

#: Extensions the fetch engine can produce, most frequent first (probed on resume).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".png", ".gif", ".webp", ".tif", ".bmp")
#: :func:`existing_folders` gives up (None: probe every folder) past this many folders: the
#: list travels with every shard's task (about 25 bytes a species folder, pickled).
MAX_LISTED_FOLDERS = 4_096


def existing_folders(root: Path | str) -> frozenset[str] | None:
    """The folders ``[subset/]label`` under ``root`` as :func:`record_folder` names them, with
    ``""`` for the root itself: where an earlier run can have stored images. Hidden folders
    (the run state) and links are left out; None past :data:`MAX_LISTED_FOLDERS`.

    A sharded job lists them once before its shards start, so that a shard does not probe the
    folders its siblings created for files of an earlier run (they cannot hold one).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "train" / "Apis").mkdir(parents=True)
        >>> sorted(existing_folders(root))
        ['', 'train', 'train/Apis']
    """
    found: set[str] = set()
    for rel, _folder in subfolders(root, 2, hidden=False):  # record_folder: "subset/label"
        found.add(rel)
        if len(found) > MAX_LISTED_FOLDERS:
            return None
    return frozenset(found)


_PLAIN_BASENAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_MAX_CACHED_COMPONENTS = 100_000
#: Stems a basename may not take as is: the stems of the state files (``classes`` ->
#: ``classes.json``) and the names themselves, compared without case.
_RESERVED_STEMS = frozenset(
    {*RESERVED_NAMES, *(name.rpartition(".")[0] for name in RESERVED_NAMES if "." in name)}
)
#: Hex digits of the URL's sha1 appended to a basename another URL of the run took.
_DISAMBIGUATION_DIGITS = 10


def safe_basename(record: Mapping[str, Any]) -> str:
    """The file name stem for ``record``: its ``basename`` if harmless, else a safe form of it.

    A basename that names a state file (``classes``, ``manifest``...) gets ``-`` and a short
    hash appended, as :func:`~gbif_dl.records.safe_component` does for labels.

    Example:
        >>> safe_basename({"url": "http://h/a.jpg", "basename": "abc"})
        'abc'
        >>> "/" in safe_basename({"url": "http://h/a.jpg", "basename": "../x"})
        False
        >>> safe_basename({"url": "http://h/a.jpg", "basename": "classes"}) != "classes"
        True
    """
    basename = record.get("basename")
    if basename is None or basename == "":
        return url_basename(str(record.get("url") or ""))
    text = str(basename)
    if _PLAIN_BASENAME.match(text) and text not in (".", ".."):
        if text.casefold() not in _RESERVED_STEMS:
            return text
        return f"{text}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"
    return safe_component(text)


def disambiguated(stem: str, url: str) -> str:
    """``stem`` for a URL whose basename another URL took first: ``-`` and 10 hex digits of
    the URL's sha1 appended (deterministic, so a rerun finds the same name).

    Example:
        >>> disambiguated("a", "http://h/b.jpg")
        'a-9a69842317'
    """
    return f"{stem}-{url_basename(url)[:_DISAMBIGUATION_DIGITS]}"


class NameClaims:
    """Which URL took which file stem of which folder (compared without case, as a
    case-insensitive filesystem would): a second URL gets :func:`disambiguated` instead.

    Names are remembered as 64-bit digests (about 100 bytes a name), and only caller-given
    ones: a name made from the URL itself (its sha1, the default basename) is checked against
    the remembered ones but not stored, since no other URL makes it.

    Example:
        >>> claims = NameClaims()
        >>> claims.claim("bee", "a", "http://h/1.jpg"), claims.claim("bee", "a", "http://h/1.jpg")
        (('a', False), ('a', True))
        >>> claims.claim("bee", "a", "http://h/2.jpg")
        ('a-54dcbe84d1', True)
        >>> claims.taken("bee", "a", "http://h/2.jpg"), claims.taken("bee", "b", "http://h/2.jpg")
        (True, False)
    """

    def __init__(self) -> None:
        self._owners: dict[int, int] = {}  # digest of "folder/stem" -> digest of the url
        self._lock = threading.Lock()

    @staticmethod
    def _key(folder: str, stem: str) -> int:
        return url_digest(f"{folder}/{stem}".casefold())

    def taken(self, folder: str, stem: str, url: str) -> bool:
        """True when another URL took ``folder/stem``."""
        owner = self._owners.get(self._key(folder, stem))
        return owner is not None and owner != url_digest(url)

    def claim(self, folder: str, stem: str, url: str, *, remember: bool = True) -> tuple[str, bool]:
        """The stem ``url`` gets in ``folder`` (``stem``, or its disambiguated form when another
        URL took ``stem``), and whether that name is known to be ``url``'s (False on a first
        claim: a file there may be another URL's from an earlier run). ``remember=False``: a
        name made from the URL itself, known to be its own, checked but not stored."""
        if not remember and not self._owners:  # the common case: default names only
            return stem, True
        key, mine = self._key(folder, stem), url_digest(url)
        with self._lock:
            owner = self._owners.get(key)
            if owner is None:
                if remember:
                    self._owners[key] = mine
                return stem, not remember
            if owner == mine:
                return stem, True
            stem = disambiguated(stem, url)  # a name only ``url`` makes
            self._owners.setdefault(self._key(folder, stem), mine)
            return stem, True

    def own(self, folder: str, stem: str, url: str) -> None:
        """Note that ``folder/stem`` holds ``url``'s stored file (the manifest says so)."""
        with self._lock:
            self._owners.setdefault(self._key(folder, stem), url_digest(url))


class _ComponentCache:
    """safe_component() per distinct label/subset, computed once."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def __call__(self, value: object) -> str | None:
        if value is None or isinstance(value, dict):
            return None
        text = value if isinstance(value, str) else str(value)
        if text == "":
            return None
        component = self._cache.get(text)
        if component is None:
            component = safe_component(text)
            if len(self._cache) < _MAX_CACHED_COMPONENTS:
                self._cache[text] = component
        return component


_components = _ComponentCache()


def record_folder(record: Mapping[str, Any]) -> str:
    """The folder of ``record`` relative to the root: ``"subset/label"``, ``"label"`` or ``""``.

    Example:
        >>> record_folder({"label": "Apis mellifera", "subset": "train"})
        'train/Apis mellifera'
        >>> record_folder({"label": {"gbifID": 1}})
        ''
    """
    parts = [
        part
        for part in (_components(record.get("subset")), _components(record.get("label")))
        if part is not None
    ]
    return "/".join(parts)


class ImageFolderWriter(Writer):
    """Write images into ``root/[subset/]label/<basename>.<ext>``.

    Args:
        root: the output root (must exist).
        fsync: flush each file to disk before renaming it (slower, survives power loss).
        clean_temp_files: remove temp files a killed run left in a folder on its first use.
            Shards that run at the same time share folders, so their writers pass False (the
            sharded job cleans up once no shard runs).
        folders_before: the folders (as :func:`existing_folders` gives them) that existed
            before the job; only they are probed for images an earlier run stored (None:
            every folder that exists when this writer first uses it).

    Example:
        >>> import tempfile
        >>> writer = ImageFolderWriter(tempfile.mkdtemp())
        >>> writer.find_existing({"url": "http://h/a.jpg", "label": "x"}) is None
        True
    """

    shardable = True

    def __init__(
        self,
        root: Path | str,
        *,
        fsync: bool = False,
        clean_temp_files: bool = True,
        folders_before: Collection[str] | None = None,
    ) -> None:
        super().__init__(root)
        self.fsync = fsync
        self.clean_temp_files = clean_temp_files
        self.folders_before = folders_before
        self._root_prefix = os.path.normpath(os.path.abspath(self.root)) + os.sep
        self._folders: dict[str, bool] = {}  # relative folder -> existed before this run / job
        self._folder_texts: dict[str, str] = {}  # relative folder -> its absolute path
        self._safe = SafeFolders(self.root)  # each folder checked once: real, not a link
        self._claims = NameClaims()
        self._listed: np.ndarray | None = None  # digests of the manifest's paths, on demand

    @classmethod
    def for_shard(cls, root: Path | str, **options: Any) -> ImageFolderWriter:
        """A writer for one shard: shards share folders, so the job (not each shard) sweeps
        temp files, once no shard runs.

        Example:
            >>> import tempfile
            >>> ImageFolderWriter.for_shard(tempfile.mkdtemp()).clean_temp_files
            False
        """
        return cls(root, **{**options, "clean_temp_files": False})

    def _folder(self, rel: str) -> tuple[Path, bool]:
        """The absolute folder for ``rel`` and whether it existed before this run (before the
        job, for a shard given ``folders_before``).

        On first use in a run, a pre-existing folder is cleaned of temp files a killed run left.
        """
        path = self.root / rel if rel else self.root
        existed = self._folders.get(rel)
        if existed is None:
            existed = self._safe.ensure(rel, create=False) is not None  # a link: UnsafePathError
            if self.folders_before is not None:
                existed = existed and rel in self.folders_before
            if existed and self.clean_temp_files:
                removed = remove_temp_files(path)
                if removed:
                    logger.info("removed %d leftover temp files in %s", removed, path)
            self._folders[rel] = existed
        return path, existed

    def _check_inside(self, path: str | Path) -> None:
        if not os.path.abspath(path).startswith(self._root_prefix):  # abspath normalises
            raise PermissionError(f"refusing to write outside the output root: {path}")

    def _folder_text(self, rel: str) -> str:
        """The absolute folder of ``rel`` as a string (made once per folder: no ``Path``
        objects per file on the download path)."""
        text = self._folder_texts.get(rel)
        if text is None:
            folder, _ = self._folder(rel)
            text = self._folder_texts[rel] = os.path.abspath(folder)
        return text

    def write(self, result: FetchResult) -> str:
        """Store ``result.body``; return the path relative to the root.

        Raises:
            UnsafePathError: a folder on the way is a link (or a file): nothing is written.
            OSError: the file could not be written (disk full, permissions, ...).
        """
        record = result.record
        if result.body is None:
            raise ValueError("ImageFolderWriter.write needs a successful result with a body")
        rel = record_folder(record)
        folder = self._folder_text(rel)
        if not self._safe.is_checked(rel):  # one check (and mkdir) per folder and run
            self._safe.ensure(rel)
        ext = result.ext if result.ext in IMAGE_EXTENSIONS else ".bin"
        stem = self._stem(record, rel, folder, ext)
        final = f"{folder}{os.sep}{stem}{ext}"
        self._check_inside(final)
        label = record.get("label")
        files = [(final, result.body)]
        if isinstance(label, dict):
            sidecar = json.dumps(label, ensure_ascii=False, default=str).encode("utf-8", "replace")
            files.insert(0, (f"{folder}{os.sep}{stem}.json", sidecar))
        for path, data in files:
            try:
                atomic_write_bytes(path, data, fsync=self.fsync)
            except FileNotFoundError:  # the folder was removed during the run: make it again
                self._safe.forget()
                self._safe.ensure(rel)
                atomic_write_bytes(path, data, fsync=self.fsync)
        return f"{rel}/{stem}{ext}" if rel else f"{stem}{ext}"

    def _stem(self, record: dict[str, Any], rel: str, folder: str, ext: str) -> str:
        """The file stem of ``record`` in ``rel``: its safe basename, unless another URL has it
        (in this run, or a file from an earlier run under a caller-given basename)."""
        url = str(record.get("url") or "")
        base = safe_basename(record)
        given = base != url_basename(url)  # a caller-given basename (not its url's sha1)
        stem, known = self._claims.claim(rel, base, url, remember=given)
        if not known and os.path.lexists(f"{folder}{os.sep}{base}{ext}"):
            stem = self._claims.claim(rel, disambiguated(base, url), url)[0]  # not ours
        if stem != base:
            logger.warning(
                "the basename %r in %r belongs to another URL; %s is stored as %s",
                record.get("basename"),
                rel or ".",
                public_url(url),
                stem,
            )
            record["basename"] = stem  # the manifest row says which name it got
        return stem

    def own(self, record: Mapping[str, Any], path: str) -> None:
        """Note that ``path`` holds ``record``'s stored file (so a rewrite keeps its name);
        remembered only for a caller-given basename (the others are unique by construction).

        Example:
            >>> import tempfile
            >>> ImageFolderWriter(tempfile.mkdtemp()).own({"url": "http://h/a"}, "bee/a.jpg")
        """
        folder, _, name = path.rpartition("/")
        url = str(record.get("url") or "")
        stem = name.rpartition(".")[0] or name
        if stem != url_basename(url):
            self._claims.own(folder, stem, url)

    def expected_folder(self, record: Mapping[str, Any]) -> str:
        """The relative folder ``record`` goes to."""
        return record_folder(record)

    def find_existing(self, record: Mapping[str, Any]) -> str | None:
        """The relative path of an image already stored for ``record`` (a few ``stat`` calls).

        Only folders that existed before this run are probed: a folder created by this run
        cannot hold an unjournaled file from an earlier one; nor is a folder behind a link. A
        caller-given basename is looked for under its disambiguated name first (only this URL
        makes it), and under the plain name only when no other URL of the run has it.
        """
        rel = record_folder(record)
        try:
            folder, existed = self._folder(rel)
        except UnsafePathError:
            return None  # fetched, then refused by write() with a clear reason
        if not existed:
            return None
        url = str(record.get("url") or "")
        stem = safe_basename(record)
        stems = [stem] if stem == url_basename(url) else [disambiguated(stem, url), stem]
        for candidate in stems:
            if self._claims.taken(rel, candidate, url):
                continue
            for ext in IMAGE_EXTENSIONS:
                path = f"{rel}/{candidate}{ext}" if rel else f"{candidate}{ext}"
                try:
                    if os.stat(folder / f"{candidate}{ext}").st_size == 0:
                        continue
                except OSError:
                    continue
                if candidate == stem and len(stems) > 1 and self._is_listed(path):
                    continue  # a caller-given name the manifest gives another URL
                self._claims.own(rel, candidate, url)
                return path
        return None

    def _is_listed(self, path: str) -> bool:
        """True when ``root/manifest.parquet`` lists ``path`` (read once, 8 bytes a row)."""
        if self._listed is None:
            from gbif_dl.manifest import MANIFEST_NAME, iter_manifest, url_digests

            manifest = self.root / MANIFEST_NAME
            parts = [np.zeros(0, np.uint64)]
            if manifest.is_file():
                parts += [
                    url_digests(t["path"].to_pylist()) for t in iter_manifest(manifest, ["path"])
                ]
            self._listed = np.sort(np.concatenate(parts))
        digest = np.uint64(url_digest(path))
        at = int(np.searchsorted(self._listed, digest))
        return at < len(self._listed) and self._listed[at] == digest

    def close(self) -> None:
        """Nothing to flush: every file is complete once :meth:`write` returns."""

    def placement(self, record: Mapping[str, Any], path: str) -> str:
        """``path`` moved into ``record``'s folder (a rerun changed its split or label).

        Example:
            >>> import tempfile
            >>> writer = ImageFolderWriter(tempfile.mkdtemp())
            >>> writer.placement({"label": "bee", "subset": "val"}, "train/bee/a.jpg")
            'val/bee/a.jpg'
        """
        folder = record_folder(record)
        name = path.rpartition("/")[2]
        return f"{folder}/{name}" if folder else name

    def move_stored(self, path: str, target: str) -> None:
        """Move the stored file at ``path`` to ``target`` (both relative to the root)."""
        destination = self.root / target
        self._check_inside(destination)
        source_folder = path.rpartition("/")[0]
        if self._safe.ensure(source_folder, create=False) is None:
            raise FileNotFoundError(f"no folder {source_folder!r} in {self.root}")
        self._safe.ensure(target.rpartition("/")[0])
        os.replace(self.root / path, destination)

    def finalize(self, manifest: pa.Table | str | os.PathLike[str]) -> None:
        """Add the labels of the stored images to ``root/classes.json`` (called after a run).

        Indices follow :mod:`gbif_dl.writers.classes`: sorted on the first run (the
        torchvision order), new labels appended on later ones. A root without any labelled
        image gets no ``classes.json``.
        """
        update_classes_from_manifest(self.root, manifest, skip_empty=True)

"""WebDataset shards: ``root/{split}-{shard:06d}.tar``, written atomically, resumable per shard.

Each sample is three adjacent tar members sharing one key (the record's ``basename``, a sha1 hex,
with any dot replaced, so keys never contain dots; a basename a run already gave another URL gets
``-`` and 10 hex digits of the URL's sha1 appended, so two URLs never share a sample):

- ``<key>.jpg`` (or ``.png``, ``.gif``, ...; the type comes from the bytes): the image;
- ``<key>.json``: the record: ``label``, ``class_index``, ``gbifID``, ``datasetKey``, ``license``,
  ``rightsHolder``, ``creator``, ``publisher``, ``url``, ``scientificName``... when known;
- ``<key>.cls``: the class index as decimal text (``-1`` when the record has no label), the
  same index as ``classes.json`` (:mod:`gbif_dl.writers.classes`).

Records without a ``subset`` go to the ``train`` split, as Hugging Face ``datasets`` does.

A shard is built in a temp file in the root (``.{split}-{shard:06d}.tar.gbif-dl-<random>.tmp``) and
renamed when it holds ``shard_size`` samples (or ``shard_bytes`` bytes), or when the run ends.
Class indices of labels new to the root are fixed at that moment (sorted, appended to
``classes.json``) and patched into the fixed-width ``.cls``/``.json`` fields before the rename.
A shard is the unit of resume: :meth:`WebDatasetWriter.committed` hands the download run the
samples of finalized shards only, so the manifest never claims a sample a killed run lost with
its temp file. A rerun removes leftover temp shards, numbers new shards after the existing ones
and never rewrites a finished shard (so ``overwrite=True`` or a changed split does not remove
samples from old shards: delete those shards, or use a new root, to rebuild).

Example:
    >>> import tarfile, tempfile
    >>> from gbif_dl.fetch.result import FetchResult
    >>> root = tempfile.mkdtemp()
    >>> writer = WebDatasetWriter(root, shard_size=2)
    >>> for i, label in enumerate(["wasp", "bee"]):
    ...     record = {"url": f"http://h/{i}.jpg", "basename": f"k{i}", "label": label}
    ...     result = FetchResult(record=record, ok=True, body=b"\\xff\\xd8\\xff", ext=".jpg")
    ...     _ = writer.write(result)
    >>> writer.committed()
    ['train-000000.tar/k0.jpg', 'train-000000.tar/k1.jpg']
    >>> with tarfile.open(f"{root}/train-000000.tar") as tar:
    ...     names = tar.getnames()
    ...     cls = int(tar.extractfile("k0.cls").read())
    >>> names, cls  # "bee" sorts before "wasp"
    (['k0.jpg', 'k0.json', 'k0.cls', 'k1.jpg', 'k1.json', 'k1.cls'], 1)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import tarfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gbif_dl.errors import ConfigError
from gbif_dl.records import public_url, safe_component, url_basename
from gbif_dl.writers._atomic import create_temp
from gbif_dl.writers.base import Writer
from gbif_dl.writers.classes import CLASSES_NAME, NO_CLASS, class_label, load_classes
from gbif_dl.writers.imagefolder import IMAGE_EXTENSIONS, NameClaims, safe_basename

if TYPE_CHECKING:  # pragma: no cover
    from gbif_dl.fetch.result import FetchResult

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "DEFAULT_SPLIT",
    "RECORD_FIELDS",
    "WebDatasetWriter",
    "list_shards",
    "parse_shard_name",
    "read_sample_record",
    "record_split",
    "sample_key",
    "shard_name",
]

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 10_000
DEFAULT_SPLIT = "train"
#: Record fields copied into each sample's ``.json`` (when not None).
RECORD_FIELDS = (
    "label",
    "gbifID",
    "datasetKey",
    "license",
    "license_code",
    "rightsHolder",
    "creator",
    "publisher",
    "url",
    "references",
    "scientificName",
    "speciesKey",
    "taxonKey",
    "subset",
    "basename",
)
_SHARD_NAME = re.compile(r"^(?P<split>.+)-(?P<number>[0-9]{6,})\.tar$")
_TEMP_SHARD = re.compile(r"^\.(?P<final>.+-[0-9]{6,}\.tar)\.gbif-dl-[0-9a-f]{12}\.tmp$")
_CLASS_WIDTH = 10  # room for the class index, patched in place when the shard is finalized
_BLOCK = 512
_END_OF_ARCHIVE = b"\0" * (2 * _BLOCK)
_IMAGE_EXTS = frozenset(ext[1:] for ext in IMAGE_EXTENSIONS) | {"bin"}


def shard_name(split: str, number: int) -> str:
    """The file name of shard ``number`` of ``split``.

    Example:
        >>> shard_name("train", 12)
        'train-000012.tar'
    """
    return f"{split}-{number:06d}.tar"


def record_split(record: Mapping[str, Any]) -> str:
    """The split (shard name prefix) of ``record``: its safe ``subset``, or ``train``.

    Example:
        >>> record_split({"subset": "val"}), record_split({})
        ('val', 'train')
    """
    subset = record.get("subset")
    if subset is None or subset == "":
        return DEFAULT_SPLIT
    return safe_component(subset)


def sample_key(record: Mapping[str, Any]) -> str:
    """The WebDataset key of ``record``: its safe basename without dots.

    Example:
        >>> sample_key({"url": "http://h/a.jpg", "basename": "a.b"})
        'a_b'
    """
    return safe_basename(record).replace(".", "_")


def list_shards(root: Path | str, split: str | None = None) -> list[Path]:
    """The finished shards under ``root`` (of ``split``, or all), by split then number.

    Example:
        >>> import tempfile
        >>> list_shards(tempfile.mkdtemp())
        []
    """
    found = []
    for entry in os.scandir(root):
        match = _SHARD_NAME.match(entry.name)
        is_file = entry.is_file(follow_symlinks=False)
        if match and is_file and (split is None or match["split"] == split):
            found.append((match["split"], int(match["number"]), Path(entry.path)))
    return [path for _, _, path in sorted(found)]


def parse_shard_name(name: str) -> tuple[str, int] | None:
    """``(split, number)`` of a finished shard's file name, or None for another name.

    Example:
        >>> parse_shard_name("val-000003.tar"), parse_shard_name(".val-000003.tar.keys")
        (('val', 3), None)
    """
    match = _SHARD_NAME.match(name)
    return (match["split"], int(match["number"])) if match else None


def _member(name: str, data: bytes, mtime: int) -> bytes:
    """One tar member: header(s) + data + padding to the block size."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return header + data + b"\0" * (-len(data) % _BLOCK)


def _header_size(name: str, size: int) -> int:
    info = tarfile.TarInfo(name)
    info.size = size
    return len(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))


@dataclass
class _Sample:
    path: str
    label: str | None
    cls_offset: int
    json_offset: int


@dataclass
class _OpenShard:
    name: str
    tmp: Path
    handle: IO[bytes]
    mtime: int
    offset: int = 0
    samples: list[_Sample] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # label -> scientificName


class WebDatasetWriter(Writer):
    """Write samples into ``root/{split}-{shard:06d}.tar`` shards (see the module docstring).

    Args:
        root: the output root (must exist).
        shard_size: samples per shard (default 10,000; unlimited when only ``shard_bytes`` is
            given).
        shard_bytes: finalize a shard once it holds at least this many bytes.
        fsync: flush each shard to disk before renaming it.

    Thread-safe: the download run calls :meth:`write` from worker threads.

    Example:
        >>> import tempfile
        >>> writer = WebDatasetWriter(tempfile.mkdtemp(), shard_bytes=100_000_000)
        >>> writer.shard_size is None, writer.committed()
        (True, [])
    """

    def __init__(
        self,
        root: Path | str,
        *,
        shard_size: int | None = None,
        shard_bytes: int | None = None,
        fsync: bool = False,
    ) -> None:
        self.check_options(shard_size=shard_size, shard_bytes=shard_bytes)
        if shard_size is None and shard_bytes is None:
            shard_size = DEFAULT_SHARD_SIZE
        super().__init__(root)
        self.shard_size = shard_size
        self.shard_bytes = shard_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._open: dict[str, _OpenShard] = {}
        self._committed: list[str] = []
        self._stored: dict[str, str] | None = None  # key -> sample path, built on demand
        self._claims = NameClaims()
        self._classes = load_classes(self.root)
        self._classes_dirty = not (self.root / CLASSES_NAME).exists()
        self._remove_temp_shards()
        self._finished: set[str] = set()
        self._next: dict[str, int] = {}
        for name in self._finished_names():
            parsed = parse_shard_name(name)
            if parsed is None:
                continue
            self._finished.add(name)
            split, number = parsed
            self._next[split] = max(self._next.get(split, 0), number + 1)

    defers_commit = True
    removable = False  # a member of a written tar cannot be removed (no trim)

    @staticmethod
    def check_options(  # type: ignore[override]  # takes only its own options
        *, shard_size: int | None = None, shard_bytes: int | None = None
    ) -> None:
        """Raise ConfigError for bad shard limits (called before any I/O).

        Example:
            >>> WebDatasetWriter.check_options(shard_size=0)
            Traceback (most recent call last):
            ...
            gbif_dl.errors.ConfigError: shard_size must be a positive integer; got 0
        """
        for name, value in (("shard_size", shard_size), ("shard_bytes", shard_bytes)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")

    def _remove_temp_shards(self) -> None:
        removed = 0
        for entry in os.scandir(self.root):
            if _TEMP_SHARD.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
        if removed:
            logger.info(
                "removed %d unfinished shards of an interrupted run in %s", removed, self.root
            )

    # where finished shards go (a store root overrides these) ----------------------------------

    def _finished_names(self) -> list[str]:
        """The names of the finished shards already under the root."""
        return [path.name for path in list_shards(self.root)]

    def _save_classes(self) -> None:
        """Write ``classes.json`` (before a shard that uses its indices is published)."""
        self._classes.save(self.root)

    def _publish(self, tmp: Path, name: str, samples: list[str]) -> None:
        """Put the complete shard ``tmp`` in place under ``name`` (``samples``: its sample
        paths); raise OSError on failure (the shard is then dropped)."""
        os.replace(tmp, self.root / name)

    def _open_shard(self, name: str) -> IO[bytes]:
        """A binary reader of the finished shard ``name``."""
        return open(self.root / name, "rb")

    # writing -----------------------------------------------------------------------------------

    def write(self, result: FetchResult) -> str:
        """Append ``result`` to the open shard of its split; return ``"<shard>/<key>.<ext>"``.

        The sample becomes durable (and is listed by :meth:`committed`) once its shard is
        finalized. If the shard cannot be written, the whole open shard is dropped (its samples
        are never committed) and the :class:`OSError` is raised.
        """
        if result.body is None:
            raise ValueError("WebDatasetWriter.write needs a successful result with a body")
        record = result.record
        split = record_split(record)
        url = str(record.get("url") or "")
        key = sample_key(record)
        remember = key != url_basename(url)  # a caller-given basename: two URLs may share it
        key, _ = self._claims.claim("", key, url, remember=remember)  # never a shared key
        key = key.replace(".", "_")
        ext = result.ext[1:] if result.ext in IMAGE_EXTENSIONS and result.ext else "bin"
        label = class_label(record.get("label"))
        with self._lock:
            shard = self._open.get(split) or self._start(split)
            path = f"{shard.name}/{key}.{ext}"
            blob, cls_at, json_at = self._sample_bytes(record, key, ext, result.body, shard.mtime)
            try:
                shard.handle.write(blob)
            except OSError:
                self._drop(split)
                raise
            start = shard.offset
            shard.offset += len(blob)
            shard.samples.append(_Sample(path, label, start + cls_at, start + json_at))
            name = record.get("scientificName")
            if label is not None and name and label not in shard.names:
                shard.names[label] = str(name)
            full = (self.shard_size is not None and len(shard.samples) >= self.shard_size) or (
                self.shard_bytes is not None and shard.offset >= self.shard_bytes
            )
            if full:
                self._finalize(split)
        return path

    @staticmethod
    def _sample_bytes(
        record: Mapping[str, Any], key: str, ext: str, body: bytes, mtime: int
    ) -> tuple[bytes, int, int]:
        """The three members of one sample, and where the class index goes (offsets in it)."""
        fields = {name: record[name] for name in RECORD_FIELDS if record.get(name) is not None}
        if "url" in fields:  # never the credentials of the request
            fields["url"] = public_url(str(fields["url"]))
        text = json.dumps(fields, ensure_ascii=False, default=str).encode("utf-8")
        prefix = text[:-1] + (b', "class_index": ' if fields else b'"class_index": ')
        json_data = prefix + b" " * _CLASS_WIDTH + b"}"
        image = _member(f"{key}.{ext}", body, mtime)
        json_member = _member(f"{key}.json", json_data, mtime)
        cls_member = _member(f"{key}.cls", b"0" * _CLASS_WIDTH, mtime)
        json_at = len(image) + _header_size(f"{key}.json", len(json_data)) + len(prefix)
        cls_at = len(image) + len(json_member) + _header_size(f"{key}.cls", _CLASS_WIDTH)
        return image + json_member + cls_member, cls_at, json_at

    def _start(self, split: str) -> _OpenShard:
        number = self._next.get(split, 0)
        self._next[split] = number + 1
        name = shard_name(split, number)
        tmp, fd = create_temp(self.root / name)  # exclusive: never through a link
        shard = _OpenShard(name=name, tmp=tmp, handle=open(fd, "wb"), mtime=int(time.time()))  # noqa: SIM115 - closed in _finalize/_drop
        self._open[split] = shard
        return shard

    def _drop(self, split: str) -> None:
        shard = self._open.pop(split)
        with contextlib.suppress(OSError):
            shard.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(shard.tmp)
        logger.error(
            "dropped the unfinished shard %s (%d samples): it could not be written; "
            "the next run fetches its samples again",
            shard.name,
            len(shard.samples),
        )

    def _finalize(self, split: str) -> None:
        """Fix class indices, close the tar and rename it into place; commit its samples."""
        shard = self._open[split]
        try:
            names_before = len(self._classes.names)
            if self._classes.add((s.label for s in shard.samples), shard.names):
                self._classes_dirty = True
            if self._classes_dirty or len(self._classes.names) != names_before:
                self._save_classes()  # before the shard that uses the indices
                self._classes_dirty = False
            shard.handle.flush()
            fd = shard.handle.fileno()
            for sample in shard.samples:
                index = self._classes.get(sample.label, NO_CLASS)
                os.pwrite(fd, f"{index:0{_CLASS_WIDTH}d}".encode("ascii"), sample.cls_offset)
                os.pwrite(fd, f"{index:>{_CLASS_WIDTH}d}".encode("ascii"), sample.json_offset)
            shard.handle.write(_END_OF_ARCHIVE)
            shard.handle.flush()
            if self.fsync:
                os.fsync(fd)
            shard.handle.close()
            self._publish(shard.tmp, shard.name, [sample.path for sample in shard.samples])
        except OSError:
            self._drop(split)
            raise
        del self._open[split]
        self._finished.add(shard.name)
        self._committed.extend(sample.path for sample in shard.samples)
        logger.debug("finalized %s with %d samples", shard.name, len(shard.samples))

    def committed(self) -> list[str]:
        """The sample paths whose shards were finalized since the last call (durable now)."""
        with self._lock:
            done, self._committed = self._committed, []
        return done

    def close(self) -> None:
        """Finalize every open shard; the first error is raised after trying them all."""
        error: OSError | None = None
        with self._lock:
            for split in list(self._open):
                if not self._open[split].samples:
                    self._drop(split)
                    continue
                try:
                    self._finalize(split)
                except OSError as exc:
                    error = error or exc
        if error is not None:
            raise error

    # resume ------------------------------------------------------------------------------------

    def is_stored(self, path: str) -> bool:
        """True when the sample at ``path`` (as returned by :meth:`write`) is in a finished shard.

        Example:
            >>> import tempfile
            >>> WebDatasetWriter(tempfile.mkdtemp()).is_stored("train-000000.tar/k.jpg")
            False
        """
        shard, sep, _ = path.partition("/")
        return bool(sep) and shard in self._finished

    def find_existing(self, record: Mapping[str, Any]) -> str | None:
        """The path of ``record``'s sample in a finished shard the manifest does not know about.

        That happens only when a run was killed between finalizing a shard and journaling it;
        the first call reads the member names of every finished shard (headers only).
        """
        if not self._finished:
            return None
        if self._stored is None:
            self._stored = self._scan()
        return self._stored.get(sample_key(record))

    def _scan(self) -> dict[str, str]:
        stored: dict[str, str] = {}
        for name in sorted(self._finished):
            try:
                for member in self._image_members(name):
                    stored[member.partition(".")[0]] = f"{name}/{member}"
            except (OSError, tarfile.TarError) as exc:
                logger.warning(
                    "cannot read the shard %s (%s); its samples are not reused", name, exc
                )
        return stored

    def _image_members(self, name: str) -> list[str]:
        """The image member names of the finished shard ``name`` (tar headers only)."""
        found = []
        with self._open_shard(name) as handle, tarfile.open(fileobj=handle) as tar:
            for member in tar:
                ext = member.name.partition(".")[2]
                if ext in _IMAGE_EXTS and member.isfile():
                    found.append(member.name)
        return found

    def read_stored(self, path: str) -> bytes:
        """The bytes of the stored sample at ``path`` (``"<shard>/<member>"``).

        Raises:
            OSError: no such finished shard or member.
        """
        shard, _, member = path.partition("/")
        if shard not in self._finished or not _SHARD_NAME.match(shard):
            raise FileNotFoundError(f"no finished shard {shard!r} in {self.root}")
        try:
            with self._open_shard(shard) as raw, tarfile.open(fileobj=raw) as tar:
                handle = tar.extractfile(member)
                if handle is None:
                    raise FileNotFoundError(f"{member!r} is not a file in {shard}")
                return handle.read()
        except (KeyError, tarfile.TarError) as exc:
            raise FileNotFoundError(f"cannot read {member!r} from {shard}: {exc}") from exc


def read_sample_record(data: bytes) -> dict[str, Any]:
    """Parse a sample's ``.json`` member.

    Example:
        >>> read_sample_record(b'{"label": "bee", "class_index":          0}')
        {'label': 'bee', 'class_index': 0}
    """
    value = json.load(io.BytesIO(data))
    return value if isinstance(value, dict) else {}

"""The end-of-run pass: one photo in one split, placeholders out, duplicates across shards.

Streaming cannot settle everything: two groups already stored in different splits may turn
out to share a photo, shards of a ``runner=`` job store copies without seeing each other, and a
placeholder is only known once enough occurrences have shown it. So after the manifest is merged,
:func:`settle_content` reads its content columns and:

1. links rows into *photos*: the same sha256, a ``duplicate_of`` pointing at a stored file, or
   dHashes within the near distance (multi-index hashing, :class:`~gbif_dl.dedupe.keys.NearIndex`);
2. keeps one file of each set of stored byte-identical files (the others become
   ``duplicate`` rows and their files are removed);
3. marks a photo shown by at least ``placeholder_occurrences`` different occurrences (``gbifID``)
   a ``placeholder``: every row of it, its files removed (unless placeholders are kept);
4. links photos and occurrences (an occurrence's media stay together) into components, and moves
   each component's files into one split: the split most of its files are in (ties: the split of
   its first row). Moved rows name the file they follow in ``duplicate_of``, so a rerun keeps them
   there (:meth:`ContentIndex.follow <gbif_dl.dedupe.index.ContentIndex.follow>`).

A layout that cannot move or remove a stored file (WebDataset: finished shards are never
rewritten) keeps the file where it is and its row says so: a copy left in another split becomes
a ``near_duplicate`` row (its ``path`` kept: the sample is still in that shard), a placeholder a
``placeholder`` row; a loader that must exclude them filters by the manifest's ``status``.

Example:
    >>> import tempfile
    >>> from gbif_dl.writers.imagefolder import ImageFolderWriter
    >>> root = tempfile.mkdtemp()
    >>> settle_content(root, None, ImageFolderWriter(root), ContentPolicy()).moved
    0
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gbif_dl.dedupe.index import hex64
from gbif_dl.dedupe.keys import NearIndex
from gbif_dl.dedupe.policy import ContentPolicy
from gbif_dl.manifest import (
    DUPLICATE,
    NEAR_DUPLICATE,
    PLACEHOLDER,
    SUCCESS,
    iter_manifest,
    read_manifest,
    rows_to_table,
    write_manifest,
)
from gbif_dl.records import safe_component
from gbif_dl.writers.base import Writer
from gbif_dl.writers.paths import remove_inside

__all__ = ["Settled", "settle_content"]

logger = logging.getLogger(__name__)

_COLUMNS = ("url", "path", "subset", "gbifID", "status", "sha256", "phash", "duplicate_of")
_LINKED = (SUCCESS, DUPLICATE, NEAR_DUPLICATE, PLACEHOLDER)


@dataclass
class Settled:
    """What :func:`settle_content` changed: files moved to another split, byte-identical
    files removed, placeholder rows (and their removed files), rows left in place."""

    moved: int = 0
    duplicates: int = 0
    placeholders: int = 0
    left: int = 0


class _Groups:
    """Union-find over integer nodes."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, node: int) -> int:
        parent = self.parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def members(self, nodes: range) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for node in nodes:
            found.setdefault(self.find(node), []).append(node)
        return found


def _array(column: pa.ChunkedArray) -> pa.Array:
    """``column`` as one array (an empty one when it has no chunks)."""
    return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)


class _Rows:
    """The content columns of the manifest rows that hold a photo, compact (text as Arrow
    arrays, statuses, splits and occurrences as codes, digests as 64-bit ints), and the
    changes to them (by url, for the manifest)."""

    _TEXT = ("url", "path", "duplicate_of")
    _NAMED = ("status", "subset")

    def __init__(self, table: pa.Table) -> None:
        table = table.filter(pc.fill_null(pc.is_in(table["status"], pa.array(_LINKED)), False))
        self.size = table.num_rows
        self._text = {n: _array(table[n]) for n in self._TEXT}
        self._over: dict[str, dict[int, Any]] = {n: {} for n in self._TEXT}
        self._names: dict[str, list[Any]] = {}
        self._codes: dict[str, np.ndarray] = {}
        for name in self._NAMED:
            encoded = _array(table[name]).dictionary_encode()
            self._names[name] = [*encoded.dictionary.to_pylist(), None]
            nulls = len(self._names[name]) - 1
            self._codes[name] = np.asarray(pc.fill_null(encoded.indices, nulls), dtype=np.int64)
        occurrence = _array(table["gbifID"]).dictionary_encode()
        known = occurrence.dictionary.to_pylist()
        empty = known.index("") if "" in known else -2  # an empty gbifID is no occurrence
        codes = np.asarray(pc.fill_null(occurrence.indices, -1), dtype=np.int64)
        self._occurrence = np.where(codes == empty, -1, codes)
        self._hex = {n: hex64(table[n]) for n in ("sha256", "phash")}
        self.changes: dict[str, dict[str, Any]] = {}
        self.moved: dict[str, str] = {}  # old path -> new path of the files moved

    def __len__(self) -> int:
        return self.size

    def get(self, name: str, row: int) -> Any:
        """The value of column ``name`` (``gbifID``: a code; digests: ints) at ``row``."""
        if name in self._over:
            over = self._over[name]
            return over[row] if row in over else self._text[name][row].as_py()
        if name in self._codes:
            return self._names[name][int(self._codes[name][row])]
        if name == "gbifID":
            code = int(self._occurrence[row])
            return code if code >= 0 else None
        values, valid = self._hex[name]
        return int(values[row]) if valid[row] else None

    def hashes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The ``sha256`` prefixes or ``phash`` values of every row, and which rows have one."""
        return self._hex[name]

    def stored(self, row: int) -> bool:
        return self.get("status", row) == SUCCESS and bool(self.get("path", row))

    def change(self, row: int, **values: Any) -> None:
        values["updated"] = time.time()  # the latest row of its url when shard parts merge again
        for name, value in values.items():
            if name in self._over:
                self._over[name][row] = value
            elif name in self._codes:
                names = self._names[name]
                if value not in names:
                    names.append(value)
                self._codes[name][row] = names.index(value)
        self.changes.setdefault(self.get("url", row), {}).update(values)


def _photos(rows: _Rows, distance: int) -> _Groups:
    """Rows linked by sha256, by ``duplicate_of`` and by near dHashes."""
    groups = _Groups(len(rows))
    first_of: dict[int, int] = {}
    path_of: dict[str, int] = {}
    for row in range(len(rows)):
        sha = rows.get("sha256", row)
        if sha is not None:
            groups.union(first_of.setdefault(sha, row), row)
        if rows.stored(row):
            path_of[rows.get("path", row)] = row
    for row in range(len(rows)):
        target = path_of.get(rows.get("duplicate_of", row) or "")
        if target is not None:
            groups.union(target, row)
    values, valid = rows.hashes("phash")
    near = NearIndex(distance)
    near.add_many(values[valid], np.flatnonzero(valid))
    for row in np.flatnonzero(valid).tolist():
        for other, _ in near.near(int(values[row])):
            groups.union(other, row)
    return groups


def _remove(root: Path, writer: Writer, path: str) -> bool:
    """Remove a stored file; False when the layout cannot (it stays, its row says why)."""
    if not _can_move(writer):
        return False
    try:
        remove_inside(root, path)
    except OSError as exc:
        logger.warning("cannot remove %s: %s", path, exc)
    return True


def _can_move(writer: Writer) -> bool:
    return type(writer).move_stored is not Writer.move_stored


def _exact_copies(rows: _Rows, root: Path, writer: Writer, done: Settled) -> None:
    """Keep the first stored file of each sha256; the other stored copies become duplicates."""
    kept: dict[str, int] = {}
    for row in range(len(rows)):
        sha = rows.get("sha256", row)
        if sha is None or not rows.stored(row):
            continue
        first = kept.setdefault(sha, row)
        if first == row or not _remove(root, writer, rows.get("path", row)):
            continue
        rows.change(
            row,
            status=DUPLICATE,
            reason=DUPLICATE,
            path=None,
            duplicate_of=rows.get("path", first),
            subset=rows.get("subset", first),
        )
        done.duplicates += 1


def _placeholders(
    rows: _Rows, photos: dict[int, list[int]], threshold: int, root: Path, writer: Writer
) -> int:
    """Mark the photos of at least ``threshold`` occurrences; remove their files."""
    marked = 0
    for members in photos.values():
        occurrences = {rows.get("gbifID", r) for r in members} - {None}
        if len(occurrences) < threshold:
            continue
        kept = next((rows.get("path", r) for r in members if rows.stored(r)), None)
        for row in members:
            if rows.stored(row):
                removed = _remove(root, writer, rows.get("path", row))
                rows.change(row, status=PLACEHOLDER, reason=PLACEHOLDER, duplicate_of=kept)
                if removed:
                    rows.change(row, path=None)
            elif rows.get("status", row) != PLACEHOLDER:
                rows.change(row, status=PLACEHOLDER, reason=PLACEHOLDER)
            marked += 1
    return marked


def _components(rows: _Rows, photo: _Groups) -> dict[int, list[int]]:
    """Rows linked by photo or by occurrence."""
    groups = _Groups(len(rows))
    occurrence: dict[str, int] = {}
    for row in range(len(rows)):
        groups.union(photo.find(row), row)
        gbif_id = rows.get("gbifID", row)
        if gbif_id is not None and rows.get("status", row) != PLACEHOLDER:
            groups.union(occurrence.setdefault(gbif_id, row), row)
    return groups.members(range(len(rows)))


def _split_path(path: str, old: str, new: str) -> str | None:
    """``path`` under split ``new`` instead of ``old`` (its first folder), or None."""
    head, sep, rest = path.partition("/")
    return f"{safe_component(new)}/{rest}" if sep and head == safe_component(old) else None


def _one_split(rows: _Rows, members: list[int], writer: Writer, done: Settled) -> None:
    """Move the stored files of one component into its majority split."""
    stored = [r for r in members if rows.stored(r) and rows.get("subset", r) is not None]
    splits = Counter(rows.get("subset", r) for r in stored)
    if len(splits) < 2:
        return
    first = {split: min(r for r in stored if rows.get("subset", r) == split) for split in splits}
    target = min(splits, key=lambda split: (-splits[split], first[split]))
    anchor = rows.get("path", first[target])
    for row in members:
        subset, path = rows.get("subset", row), rows.get("path", row)
        if subset in (None, target):
            continue
        if not rows.stored(row):
            rows.change(row, subset=target)
            continue
        new = _split_path(path, subset, target) if _can_move(writer) else None
        if new is None:
            rows.change(row, status=NEAR_DUPLICATE, reason=NEAR_DUPLICATE, duplicate_of=anchor)
            done.left += 1
            continue
        try:
            writer.move_stored(path, new)
        except OSError as exc:
            logger.warning("cannot move %s into split %r: %s", path, target, exc)
            continue
        rows.change(row, subset=target, path=new, duplicate_of=anchor)
        rows.moved[path] = new
        done.moved += 1


def _mentions(manifest: Path, changes: dict[str, dict[str, Any]]) -> bool:
    """True when a row of ``manifest`` has a url of ``changes``."""
    return any(
        url in changes
        for table in iter_manifest(manifest, ("url",))
        for url in table["url"].to_pylist()
    )


def _patched(manifest: Path, changes: dict[str, dict[str, Any]]) -> Iterator[pa.Table]:
    """The manifest's rows with ``changes`` (by url) applied."""
    for table in iter_manifest(manifest):
        urls = table["url"].to_pylist()
        if not any(url in changes for url in urls):
            yield table
            continue
        rows = table.to_pylist()
        for row in rows:
            row.update(changes.get(row["url"], {}))
        yield rows_to_table(rows)


def settle_content(
    root: Path | str,
    manifest: Path | str | os.PathLike[str] | None,
    writer: Writer,
    policy: ContentPolicy,
    *,
    parts: Iterable[Path | str] = (),
) -> Settled:
    """Settle splits, exact copies and placeholders over the whole manifest (see the module
    docstring); rewrite the manifest when a row changed, and the manifest ``parts`` of a
    ``runner=`` job's shards that hold a changed row (a shard's rerun reads its own part).
    Returns what changed.

    Example:
        >>> settle_content("data", None, Writer("data"), ContentPolicy()).placeholders
        0
    """
    done = Settled()
    if manifest is None or not policy.enabled:
        return done
    root, manifest = Path(root), Path(os.fspath(manifest))
    table = read_manifest(manifest.parent, _COLUMNS, name=manifest.name)
    if table is None or not table.num_rows:
        return done
    rows = _Rows(table)
    del table
    _exact_copies(rows, root, writer, done)
    photo = _photos(rows, policy.near_distance)
    if policy.placeholders is not None:
        photos = photo.members(range(len(rows)))
        done.placeholders = _placeholders(rows, photos, policy.placeholders, root, writer)
    for members in _components(rows, photo).values():
        if len(members) > 1:
            _one_split(rows, members, writer, done)
    for row in range(len(rows)):  # rows that name a moved file follow it
        moved = rows.moved.get(rows.get("duplicate_of", row) or "")
        if moved is not None:
            rows.change(row, duplicate_of=moved)
    if rows.changes:
        write_manifest(_patched(manifest, rows.changes), manifest)
        for part in map(Path, parts):
            if part != manifest and _mentions(part, rows.changes):
                write_manifest(_patched(part, rows.changes), part)
        logger.info(
            "content: %d files moved to keep a photo in one split, %d copies removed, "
            "%d placeholder rows, %d copies left in another split",
            done.moved,
            done.duplicates,
            done.placeholders,
            done.left,
        )
    return done

"""The append-only journal (``.gbif-dl-journal.jsonl``) and its merge into the manifest.

During a run every finished item appends one JSON line (a :func:`~gbif_dl.manifest.table.
manifest_row`) to the journal, *after* its file was renamed into place. At the end of a run (and
at the start of the next one, after a crash) the journal is merged into ``manifest.parquet``
atomically, deduplicated by url (the latest row wins), and then truncated. A torn last line,
left by a killed process, is ignored.

Both files live at the root of the output folder, never in a sub-folder, so image-folder loaders
see only class folders.

Example:
    >>> import tempfile, pathlib
    >>> from gbif_dl.manifest.table import SUCCESS, manifest_row
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with Journal(root) as journal:
    ...     journal.append(manifest_row({"url": "http://h/a.jpg", "label": "x"}, status=SUCCESS,
    ...                                 path="x/a.jpg", nbytes=10))
    >>> table = merge_journal(root)
    >>> table.num_rows, table["status"][0].as_py()
    (1, 'success')
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from gbif_dl._memory import release_memory
from gbif_dl.manifest.table import (
    MANIFEST_NAME,
    SCHEMA,
    TableSource,
    iter_manifest,
    latest_rows,
    read_manifest,
    rows_to_table,
    write_manifest,
)
from gbif_dl.writers.paths import NOFOLLOW, check_state_files, open_state_file

__all__ = [
    "JOURNAL_NAME",
    "Journal",
    "iter_journal",
    "journal_blocks",
    "merge_journal",
    "merge_journal_file",
    "read_journal",
]

logger = logging.getLogger(__name__)
#: json.dumps(row, ensure_ascii=False, default=str), with one encoder made once (dumps makes one
#: per call when given options).
_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str).encode

JOURNAL_NAME = ".gbif-dl-journal.jsonl"

#: The journal's JSON types: ``updated`` is epoch seconds there, a timestamp in the manifest.
_JOURNAL_SCHEMA = pa.schema(
    [pa.field(f.name, pa.float64()) if f.name == "updated" else f for f in SCHEMA]
)
#: Bytes of journal text parsed at a time by the merge (a block of rows, never the whole file).
#: Small on purpose: Arrow's JSON parser needs several times a block in temporary memory,
#: which the allocator keeps (measured: 8 MiB blocks leave ~80 MiB of RSS behind, 1 MiB ~4).
_JOURNAL_BLOCK = 1 << 20
#: Blocks parsed between two hand-backs of freed memory to the OS.
_RELEASE_EVERY = 8


class Journal:
    """Append-only JSON-lines journal at ``root/.gbif-dl-journal.jsonl``.

    Each :meth:`append` writes one line and hands it to the operating system at once, so a killed
    process loses at most the line being written (which the reader then ignores).

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with Journal(root) as journal:
        ...     journal.append({"url": "http://h/a.jpg", "status": "failed"})
        >>> [row["url"] for row in read_journal(root)]
        ['http://h/a.jpg']
    """

    def __init__(self, root: Path | str, name: str = JOURNAL_NAME) -> None:
        self.path = Path(root) / name
        # never through a link: a journal that is one is refused with a message
        self._handle: IO[str] = open_state_file(self.path, "a")
        self._pending: list[str] = []
        self.lines = 0

    def append(self, row: Mapping[str, Any], *, flush: bool = True) -> None:
        """Append one row and flush it to the OS; ``flush=False`` keeps it until :meth:`flush`.

        Buffered rows are lost if the process is killed, which is safe when their files are in
        place (a rerun adopts stored files that no journal line names), and saves a write per
        row on fast downloads.
        """
        self._pending.append(_ENCODE(row))
        self.lines += 1
        if flush:
            self.flush()

    @property
    def buffered(self) -> int:
        """Rows appended with ``flush=False`` and not yet handed to the OS."""
        return len(self._pending)

    def flush(self) -> None:
        """Hand every buffered row to the OS in one write."""
        if self._pending:
            lines, self._pending = self._pending, []
            self._handle.write("\n".join(lines) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if not self._handle.closed:
            try:
                self.flush()
            finally:
                self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_journal(root: Path | str, name: str = JOURNAL_NAME) -> list[dict[str, Any]]:
    """The rows of the journal, oldest first; a torn or corrupt line is skipped.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / JOURNAL_NAME).write_text('{"url": "a"}\\n{"url": "b", "sta')
        >>> [row["url"] for row in read_journal(root)]
        ['a']
    """
    return list(iter_journal(root, name))


def iter_journal(root: Path | str, name: str = JOURNAL_NAME) -> Iterator[dict[str, Any]]:
    """The rows of the journal one at a time (memory stays flat whatever its length).

    Example:
        >>> import tempfile
        >>> list(iter_journal(tempfile.mkdtemp()))
        []
    """
    path = Path(root) / name
    try:
        handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except FileNotFoundError:
        return
    with handle:
        for number, line in enumerate(handle, 1):
            row = _journal_line(line, path, number)
            if row is not None:
                yield row


def _journal_line(line: str, path: Path, number: int | None = None) -> dict[str, Any] | None:
    """One journal line as a row; None for a blank, torn (logged) or url-less line."""
    line = line.strip()
    if not line:
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        where = f"line {number} of " if number is not None else "a line of "
        logger.warning("ignoring torn %s%s", where, path)
        return None
    if isinstance(row, dict) and isinstance(row.get("url"), str):
        return row
    return None


def _parse_journal_block(data: bytes, path: Path) -> pa.Table | None:
    """One block of whole journal lines as a table conformed to ``SCHEMA`` (None: no rows).

    Arrow's JSON reader builds the columns directly (no Python object per cell); a block it
    cannot take as is (a torn line, rows of an older format) is read row by row, skipping bad
    lines.
    """
    try:
        table = pa_json.read_json(
            pa.py_buffer(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pa_json.ParseOptions(
                explicit_schema=_JOURNAL_SCHEMA, unexpected_field_behavior="ignore"
            ),
            # malloc gives the parser's memory back at once (the default pool keeps ~4x more)
            memory_pool=pa.system_memory_pool(),
        )
    except pa.ArrowException:
        lines = data.decode("utf-8", errors="replace").splitlines()
        rows = [row for row in (_journal_line(line, path) for line in lines) if row is not None]
        return rows_to_table(rows) if rows else None
    if table["url"].null_count:
        table = table.filter(pc.is_valid(table["url"]))
    if table.num_rows == 0:
        return None
    epoch_ms = pc.cast(pc.floor(pc.multiply(table["updated"], 1000.0)), pa.int64())
    updated = pc.cast(epoch_ms, SCHEMA.field("updated").type)
    index = table.schema.get_field_index("updated")
    return table.set_column(index, SCHEMA.field("updated"), updated)


def _whole_lines(path: Path) -> Iterator[bytes]:
    """The file's text in blocks of about :data:`_JOURNAL_BLOCK` bytes cut after a newline
    (a line longer than a block makes a longer block; the last line may lack its newline)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with handle:
        rest = b""
        while chunk := handle.read(_JOURNAL_BLOCK):
            data = rest + chunk
            cut = data.rfind(b"\n")
            if cut < 0:  # a line longer than a block: read on
                rest = data
                continue
            data, rest = data[: cut + 1], data[cut + 1 :]
            yield data
        if rest:  # the end: a last line without newline (maybe torn) is parsed alone
            yield rest


def journal_blocks(
    root: Path | str, name: str = JOURNAL_NAME, columns: Iterable[str] | None = None
) -> Iterator[pa.Table]:
    """The journal's rows as tables of at most about 1 MiB of text each, conformed to the
    manifest's schema (only ``columns``, when given).

    Deterministic (the same file gives the same blocks), so a merge can read it twice and line
    up positions. Memory: one block of text and its table, whatever the journal's length.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / JOURNAL_NAME).write_text('{"url": "a", "status": "failed"}\\n')
        >>> [t.to_pylist() for t in journal_blocks(root, columns=("url", "status"))]
        [[{'url': 'a', 'status': 'failed'}]]
    """
    path = Path(root) / name
    wanted = list(columns) if columns is not None else None
    for blocks, data in enumerate(_whole_lines(path), 1):
        if data.strip():
            table = _parse_journal_block(data, path)
            if table is not None and table.num_rows:
                yield table if wanted is None else table.select(wanted)
        if blocks % _RELEASE_EVERY == 0:
            release_memory()


def merge_journal_file(
    root: Path | str,
    *,
    fsync: bool = False,
    manifest_name: str = MANIFEST_NAME,
    journal_name: str = JOURNAL_NAME,
) -> Path | None:
    """:func:`merge_journal` without loading the result: returns the manifest's path, or None.

    Streaming: the journal is parsed in blocks and the old manifest read in row batches, twice
    (url digests to find the latest row of each url, then writing with a ``ParquetWriter``), so
    memory stays at a block plus about 24 bytes per row, whatever the number of rows.

    Example:
        >>> import tempfile, pathlib
        >>> import pyarrow.parquet as pq
        >>> from gbif_dl.manifest.table import FAILED, SUCCESS, manifest_row
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with Journal(root) as journal:
        ...     journal.append(manifest_row({"url": "http://h/a.jpg"}, status=FAILED))
        ...     journal.append(manifest_row({"url": "http://h/a.jpg"}, status=SUCCESS))
        >>> path = merge_journal_file(root)
        >>> pq.read_table(path)["status"].to_pylist()
        ['success']
    """
    root = Path(root)
    check_state_files(root, (manifest_name, journal_name))  # never read or truncate a link
    manifest = root / manifest_name
    journal = root / journal_name
    try:
        has_rows = journal.stat().st_size > 0
    except FileNotFoundError:
        has_rows = False
    if has_rows:  # (only torn or invalid lines: nothing to merge)
        has_rows = next(journal_blocks(root, journal_name), None) is not None
    if not has_rows:
        _truncate_journal(root, journal_name)
        return manifest if manifest.exists() else None
    sources: list[TableSource] = []
    if manifest.exists():
        sources.append(lambda: iter_manifest(manifest))
    sources.append(lambda: journal_blocks(root, journal_name))
    rows = write_manifest(latest_rows(sources), manifest, fsync=fsync)
    _truncate_journal(root, journal_name)
    logger.debug("merged the journal into %s (%d rows)", manifest, rows)
    return manifest


def merge_journal(
    root: Path | str,
    *,
    fsync: bool = False,
    manifest_name: str = MANIFEST_NAME,
    journal_name: str = JOURNAL_NAME,
) -> pa.Table | None:
    """Merge the journal into ``manifest.parquet`` (dedupe by url, latest wins), then truncate it.

    The parquet file is replaced atomically; if the process dies before the journal is
    truncated, the next merge applies the same rows again with the same result.
    Returns the merged manifest (None when there is neither a manifest nor a journal).
    ``manifest_name`` / ``journal_name`` select another pair of files at the root (a shard's
    manifest part and journal). The merge itself streams (:func:`merge_journal_file`); only
    the returned table is whole: large jobs call :func:`merge_journal_file` and read the result
    with :func:`~gbif_dl.manifest.table.iter_manifest`.

    Example:
        >>> import tempfile
        >>> merge_journal(tempfile.mkdtemp()) is None
        True
    """
    path = merge_journal_file(
        root, fsync=fsync, manifest_name=manifest_name, journal_name=journal_name
    )
    return read_manifest(root, name=manifest_name) if path is not None else None


def _truncate_journal(root: Path, name: str = JOURNAL_NAME) -> None:
    """Empty the journal; never through a link (its target is left as it is)."""
    check_state_files(root, (name,))
    try:
        fd = os.open(root / name, os.O_WRONLY | NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        if os.fstat(fd).st_size:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)

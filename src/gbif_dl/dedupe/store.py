"""Storing one fetched image once: hash it, ask the content index, write it (or not).

Runs in the run core's store thread (never on the event loop). The sha256 costs 12 to 15 µs
for a 20 kB body, the dHash 250 to 370 µs by machine (:mod:`gbif_dl.dedupe.phash`: the JPEG
must be entropy-decoded whole, even at 1/8 scale): the run computes the dHashes of a store
thread's batch in a worker process (:class:`gbif_dl.fetch.workers.CorePool`) and passes each
one in, so the event loop's process keeps its core for the downloads.

Example:
    >>> import tempfile
    >>> from gbif_dl.fetch.result import FetchResult
    >>> from gbif_dl.writers.imagefolder import ImageFolderWriter
    >>> writer = ImageFolderWriter(tempfile.mkdtemp())
    >>> index = ContentIndex(4)
    >>> def fetched(url):
    ...     return FetchResult(record={"url": url, "basename": url[-1]}, ok=True, body=b"x",
    ...                        ext=".jpg")
    >>> first = store_unique(index, writer, fetched("http://h/a"))
    >>> second = store_unique(index, writer, fetched("http://h/b"))
    >>> first.status, first.path, second.status, second.duplicate_of
    ('success', 'a.jpg', 'duplicate', 'a.jpg')
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from gbif_dl.dedupe.index import ContentIndex
from gbif_dl.dedupe.phash import dhash, format_phash
from gbif_dl.fetch.result import FetchResult
from gbif_dl.manifest import SUCCESS
from gbif_dl.writers.base import Writer

__all__ = ["UNHASHED", "Stored", "Unhashed", "store_unique"]


class Unhashed(enum.Enum):
    """The type of :data:`UNHASHED` (a one-value enum: a sentinel that type checkers know)."""

    TOKEN = "unhashed"


#: ``store_unique(phash=...)``: not computed yet (store_unique computes it).
UNHASHED = Unhashed.TOKEN


@dataclass(frozen=True)
class Stored:
    """What became of one fetched image.

    Attributes:
        path: where it is stored (None when it was not).
        sha256: the sha256 of its bytes (hex).
        phash: its dHash as 16 hex digits (None: not hashed, or not decodable).
        status: SUCCESS, or why it was not stored (DUPLICATE, NEAR_DUPLICATE).
        duplicate_of: the kept file it duplicates, or the neighbour whose split it follows.
        released: the stream whose stored file became a placeholder with this copy
            (:attr:`gbif_dl.dedupe.index.Claim.released`).
    """

    path: str | None
    sha256: str
    phash: str | None = None
    status: str = SUCCESS
    duplicate_of: str | None = None
    released: str | None = None


def store_unique(
    contents: ContentIndex | None,
    writer: Writer,
    result: FetchResult,
    *,
    own_path: str | None = None,
    phash: int | Unhashed | None = UNHASHED,
) -> Stored:
    """Write ``result`` unless ``contents`` holds the same photo; ``own_path`` is the file the
    record itself had (an overwrite), never its own duplicate; ``phash`` the body's dHash when
    it was computed elsewhere (None: the body does not decode). Without ``contents`` (hashing
    off) it only writes and takes the sha256.

    Raises:
        OSError: the writer could not store it (the reservation is released).
    """
    body = result.body or b""
    sha256 = hashlib.sha256(body).hexdigest()
    if contents is None:
        return Stored(writer.write(result), sha256)
    value = dhash(body) if phash is UNHASHED else phash
    hex_phash = format_phash(value) if value is not None else None
    record = result.record
    claim = contents.claim(record, sha256, value, own=own_path)
    if claim.subset != record.get("subset"):
        record["subset"] = claim.subset  # the split of the photo it duplicates or resembles
    if claim.status != SUCCESS:
        return Stored(None, sha256, hex_phash, claim.status, claim.duplicate_of, claim.released)
    try:
        path = writer.write(result)
    except BaseException:
        contents.abandon(claim)
        raise
    contents.complete(claim, path)
    return Stored(path, sha256, hex_phash, SUCCESS, claim.duplicate_of)

"""Every zip member, read through one bounded stream, whatever its compression method.

A member is read from its local header on: stored, deflate (ISA-L where installed, else zlib),
bzip2 or LZMA, each decompressor asked for at most the bytes the caller wants at a time, so a
member that lies about its size (a few KB inflating to gigabytes) never takes more memory than
one read. A member may not produce more than it declares (nor more than the caller's
``limit``); its size and CRC-32 are checked at the end. A member whose declared size exceeds
its compressed size :data:`MAX_COMPRESSION_RATIO` times (and 64 MiB) is refused from its
headers alone.

Example:
    >>> path = Path("tests/data/dwca-0022697-200613084148143.zip")
    >>> with zipfile.ZipFile(path) as zf:
    ...     text = read_member(path, zf.getinfo("meta.xml"), "dl.zip", limit=1 << 20)
    >>> text.startswith(b"<archive")
    True
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Protocol

from gbif_dl.errors import ArchiveError

__all__ = [
    "INFLATE",
    "MAX_COMPRESSION_RATIO",
    "MemberStream",
    "read_member",
]

#: What inflates deflated members: ``isal_zlib`` or ``zlib`` (same API).
INFLATE: Any
try:  # ISA-L: the same API as zlib, several times faster to inflate
    from isal import isal_zlib as INFLATE
except ImportError:  # pragma: no cover - isal is a dependency; zlib where it cannot install
    INFLATE = zlib

#: A member whose declared size exceeds its compressed size this many times is refused.
MAX_COMPRESSION_RATIO = 1000
#: ... when it also declares more than this (small members may compress very well).
_RATIO_FLOOR = 64 << 20
#: Compressed bytes read at a time.
_READ_CHUNK = 1 << 18
#: The largest output one ``read_member`` call asks a decompressor for at a time.
_READ_STEP = 1 << 20


class _Decoder(Protocol):
    """What the stream needs of a decompressor (the shape of ``bz2``/``lzma``'s)."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Stored:
    """A stored member: the bytes as they are, at most ``max_length`` at a time."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._held = b""
        self.eof = size == 0
        self.needs_input = size > 0

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        held = self._held + data
        n = len(held) if max_length < 0 else max_length
        out, self._held = held[:n], held[n:]
        self._left -= len(out)
        self.needs_input = not self._held
        self.eof = self._left <= 0 and not self._held
        return out


class _Deflate:
    """Raw deflate (ISA-L or zlib) behind the ``bz2``/``lzma`` decompressor interface."""

    def __init__(self) -> None:
        self._inflater = INFLATE.decompressobj(-15)
        self.needs_input = True

    @property
    def eof(self) -> bool:
        return bool(self._inflater.eof)

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        tail = self._inflater.unconsumed_tail
        data = tail + data if tail else data
        out = self._inflater.decompress(data, max(max_length, 0))
        self.needs_input = not self._inflater.unconsumed_tail
        return bytes(out)


def _lzma_decoder(header: bytes, file_size: int) -> lzma.LZMADecompressor:
    """The raw LZMA1 decoder of a zip member from its properties (APPNOTE 5.8.8).

    The dictionary is never larger than the member declares (a hostile header cannot make the
    decoder reserve gigabytes; an honest member never refers further back than its own size).
    """
    props = header[4:]
    if len(props) != 5 or props[0] >= 9 * 5 * 5:
        raise ValueError("bad LZMA properties")
    pb, rest = divmod(props[0], 9 * 5)
    lp, lc = divmod(rest, 9)
    dict_size = struct.unpack("<I", props[1:5])[0]
    dict_size = max(4096, min(dict_size, max(file_size, 4096)))
    lzma1 = {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb, "dict_size": dict_size}
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma1])


class MemberStream(io.RawIOBase):
    """One zip member, decompressed as it is read, never past its declared size or ``limit``.

    Stored, deflate, bzip2 and LZMA members go through the same loop: a compressed chunk in,
    at most the caller's buffer out. More bytes than the member declares (a lie about its
    size), more than ``limit``, a truncated member or a wrong CRC-32 raise
    :class:`ArchiveError`; so do an encrypted member, an unknown method and a likely zip bomb
    (declared size over :data:`MAX_COMPRESSION_RATIO` times the compressed size).

    Example:
        >>> path = Path("tests/data/dwca-0022697-200613084148143.zip")
        >>> with zipfile.ZipFile(path) as zf:
        ...     info = zf.getinfo("meta.xml")
        >>> with MemberStream(path, info, "dl.zip") as member:
        ...     member.read(5)
        b'<arch'
    """

    def __init__(
        self, path: Path, info: zipfile.ZipInfo, where: str, *, limit: int | None = None
    ) -> None:
        super().__init__()
        self._info = info
        self._where = where
        self._limit = info.file_size if limit is None else min(limit, info.file_size)
        self._check_headers()
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self._left = info.compress_size
            self._seek_data()
            self._decoder = self._new_decoder()
        except BaseException:
            self._file.close()
            raise
        self._crc = 0
        self._size = 0

    def _refuse(self, what: str) -> ArchiveError:
        return ArchiveError(f"{self._info.filename} in {self._where} {what}", path=self._where)

    def _corrupt(self, what: str) -> ArchiveError:
        return self._refuse(
            f"{what}; the archive is corrupt or incomplete: delete it and fetch it again"
        )

    def _check_headers(self) -> None:
        info = self._info
        if info.flag_bits & 0x1:
            raise self._refuse("is encrypted; GBIF archives never are")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) and (
            info.file_size > _RATIO_FLOOR
        ):
            raise self._refuse(
                f"claims {info.file_size} bytes from {info.compress_size} compressed bytes; "
                "refusing a likely zip bomb"
            )
        methods = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
        if info.compress_type not in methods:
            raise self._refuse(
                f"uses compression method {info.compress_type}; only stored, deflate, bzip2 "
                "and LZMA members can be read (GBIF writes deflate)"
            )

    def _seek_data(self) -> None:
        offset = self._info.header_offset
        self._file.seek(offset)
        header = self._file.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise self._corrupt("has no valid local header")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        self._file.seek(offset + 30 + name_length + extra_length)

    def _new_decoder(self) -> _Decoder:
        method = self._info.compress_type
        if method == zipfile.ZIP_STORED:
            return _Stored(self._info.compress_size)
        if method == zipfile.ZIP_DEFLATED:
            return _Deflate()
        if method == zipfile.ZIP_BZIP2:
            return bz2.BZ2Decompressor()
        header = self._file.read(min(9, self._left))  # LZMA: version, size, 5 property bytes
        self._left -= len(header)
        try:
            return _lzma_decoder(header, self._info.file_size)
        except (ValueError, lzma.LZMAError) as exc:
            raise self._corrupt(f"has an invalid LZMA header ({exc})") from exc

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Decompress into ``buffer`` as much as the next compressed chunk gives (0 at the end)."""
        view = memoryview(buffer).cast("B")
        decoder = self._decoder
        while not decoder.eof:
            data = b""
            if decoder.needs_input:
                data = self._file.read(min(_READ_CHUNK, self._left)) if self._left else b""
                self._left -= len(data)
            try:
                out = decoder.decompress(data, len(view))
            except (zlib.error, INFLATE.error, OSError, EOFError, lzma.LZMAError) as exc:
                raise self._corrupt(f"cannot be decompressed ({exc})") from exc
            if out:
                return self._emit(out, view)
            if decoder.needs_input and not data:  # nothing more to read, nothing produced
                raise self._corrupt("ends before its compressed data does (truncated)")
        if self._size != self._info.file_size or self._crc != self._info.CRC:
            raise self._corrupt("does not match its size or CRC-32")
        return 0

    def _emit(self, out: bytes, view: memoryview) -> int:
        self._size += len(out)
        if self._size > self._limit:
            if self._limit < self._info.file_size:
                raise self._refuse(
                    f"is larger than the {self._limit} bytes allowed for it; it is not a "
                    "GBIF archive member"
                )
            raise self._refuse(
                f"decompresses to more than its declared {self._info.file_size} bytes; the "
                "archive is corrupt or malicious, fetch it again"
            )
        self._crc = INFLATE.crc32(out, self._crc)
        view[: len(out)] = out
        return len(out)

    def close(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()
        super().close()


def read_member(path: Path, info: zipfile.ZipInfo, where: str, *, limit: int) -> bytes:
    """The whole of a (small) member, decompressed through :class:`MemberStream`.

    Raises:
        ArchiveError: the member declares or produces more than ``limit`` bytes, or any
            refusal of :class:`MemberStream`.

    Example:
        >>> path = Path("tests/data/dwca-0022697-200613084148143.zip")
        >>> with zipfile.ZipFile(path) as zf:
        ...     info = zf.getinfo("meta.xml")
        >>> len(read_member(path, info, "dl.zip", limit=1 << 20)) == info.file_size
        True
    """
    if info.file_size > limit:
        raise ArchiveError(
            f"{info.filename} in {where} declares {info.file_size} bytes, more than the "
            f"{limit} allowed for it; the archive is not a GBIF download",
            path=where,
        )
    out = bytearray()
    step = bytearray(min(_READ_STEP, max(limit, 1)))
    with MemberStream(path, info, where, limit=limit) as member:
        while True:
            n = member.readinto(step)
            if not n:
                return bytes(out)
            out += step[:n]

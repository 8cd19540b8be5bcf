"""Seeded ranks: one stable hash, computed one value at a time or over numpy arrays.

Every seeded choice that two sources must agree on goes through here, so that the occurrence
search and an archive of the same occurrences make the same choice for the same seed. The hash is
splitmix64's finaliser (stable across processes and machines, unlike ``hash()``); a seed is
folded to 64 bits with FNV-1a.

The media of an occurrence are ranked by ``(seed, occurrence key, position)``, where the position
counts all the occurrence's media entries in source order (the search record's ``media`` list,
the occurrence's multimedia rows in file order); one media per occurrence means the media with the
lowest rank among those still allowed.

Example:
    >>> keys = np.array([7, 7, 8], dtype=np.int64)
    >>> ranks = media_ranks(1, keys, np.array([0, 1, 0]))
    >>> [int(r) for r in ranks] == [media_rank(1, 7, 0), media_rank(1, 7, 1), media_rank(1, 8, 0)]
    True
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["media_rank", "media_ranks", "occurrence_number", "seed_value", "splitmix64"]

_MASK64 = (1 << 64) - 1
_MEDIA_SALT = 1


def seed_value(seed: int | str | None, salt: int) -> int:
    """A 64-bit value for ``(seed, salt)`` (FNV-1a of their text; ``None`` reads as 0).

    Example:
        >>> seed_value(None, 1) == seed_value(0, 1) != seed_value(0, 2)
        True
    """
    text = f"{0 if seed is None else seed!r}:{salt}".encode()
    value = 1469598103934665603
    for byte in text:
        value = ((value ^ byte) * 1099511628211) & _MASK64
    return value


def _mix_int(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over an integer array, as ``uint64`` (a copy).

    Example:
        >>> int(splitmix64(np.array([1], dtype=np.uint64))[0]) == _mix_int(1)
        True
    """
    x = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def occurrence_number(key: object) -> int:
    """An occurrence key as the 64-bit number the ranks use (an int as it is, two's complement
    for negatives; any other text through blake2b).

    Example:
        >>> occurrence_number(42), occurrence_number("42"), occurrence_number(-1) == 2**64 - 1
        (42, 42, True)
    """
    if isinstance(key, int) and not isinstance(key, bool):
        return key & _MASK64
    text = str(key).strip()
    try:
        return int(text) & _MASK64
    except ValueError:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big")


def media_rank(seed: int | str | None, key: object, position: int) -> int:
    """The rank of the media at ``position`` of occurrence ``key`` for ``seed``.

    Example:
        >>> media_rank(1, 42, 0) == media_rank(1, "42", 0) != media_rank(2, 42, 0)
        True
    """
    base = _mix_int(occurrence_number(key) ^ seed_value(seed, _MEDIA_SALT))
    return _mix_int(base ^ (position & _MASK64))


def media_ranks(seed: int | str | None, keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """:func:`media_rank` over arrays of integer occurrence keys and positions (``uint64``).

    Example:
        >>> bool(media_ranks(3, np.array([42]), np.array([2]))[0] == media_rank(3, 42, 2))
        True
    """
    base = splitmix64(keys.view(np.uint64) ^ np.uint64(seed_value(seed, _MEDIA_SALT)))
    base ^= positions.astype(np.uint64)
    return splitmix64(base)

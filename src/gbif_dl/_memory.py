"""Handing freed memory back to the operating system between the phases of a long job.

Example:
    >>> release_memory()
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pyarrow as pa


def _load_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def jemalloc_pool() -> pa.MemoryPool:
    """jemalloc where pyarrow has it (it hands freed blocks back to the OS promptly), else the
    default pool.

    Example:
        >>> isinstance(jemalloc_pool(), pa.MemoryPool)
        True
    """
    try:
        return pa.jemalloc_memory_pool()
    except (NotImplementedError, AttributeError):
        return pa.default_memory_pool()


def release_memory() -> None:
    """Return unused memory of arrow's pools and of glibc's heap to the operating system.

    A phase that frees many short-lived buffers (parsing batches, merging a journal) leaves
    holes that stay resident; calling this between phases keeps the next phase's peak lower.

    Example:
        >>> release_memory()  # cheap when there is nothing to release
    """
    pa.default_memory_pool().release_unused()
    jemalloc_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)

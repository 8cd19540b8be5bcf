"""The media fetch engine: download, validate and resize images, politely and fast.

Example:
    >>> from gbif_dl.fetch import FetchConfig, FetchEngine, Reason
    >>> FetchEngine(FetchConfig(concurrency=32, per_host=4)).config.per_host
    4
"""

from __future__ import annotations

from gbif_dl.fetch.engine import (
    DEFAULT_CONCURRENCY,
    DEFAULT_FETCH,
    DEFAULT_PER_HOST,
    FetchConfig,
    FetchEngine,
)
from gbif_dl.fetch.result import FetchResult, FetchSummary, Reason
from gbif_dl.fetch.retry import DEFAULT_RETRY, RetryPolicy

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_FETCH",
    "DEFAULT_PER_HOST",
    "DEFAULT_RETRY",
    "FetchConfig",
    "FetchEngine",
    "FetchResult",
    "FetchSummary",
    "Reason",
    "RetryPolicy",
]

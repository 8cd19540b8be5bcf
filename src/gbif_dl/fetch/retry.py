"""Retry policy shared by the GBIF client and the media download engine.

Retries use exponential backoff with full jitter, and a server's ``Retry-After`` is a floor:
a retry never comes earlier than the server asked.

Example:
    >>> policy = RetryPolicy(retries=3, backoff_s=0.5, max_backoff_s=8.0)
    >>> 0.0 <= policy.delay(attempt=1) <= 1.0
    True
    >>> policy.delay(attempt=1, retry_after=5.0) >= 5.0
    True
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

__all__ = [
    "DEFAULT_RETRY",
    "MEDIA_MAX_RETRY_AFTER_S",
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "parse_retry_after",
]

#: HTTP statuses worth another try: throttling and server-side trouble.
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 420, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How often and how patiently to try again.

    Attributes:
        retries: how many times to try again after the first attempt (0 = never).
        backoff_s: the base delay; attempt ``n`` waits up to ``backoff_s * 2**(n-1)``.
        max_backoff_s: the ceiling of the exponential part.
        max_retry_after_s: a ``Retry-After`` longer than this is not waited for: the attempt
            fails (the GBIF API clients then give up; the media engine asks once more at the end
            of its run, see :class:`~gbif_dl.fetch.engine.FetchEngine`).
        jitter_s: extra random delay added on top of ``Retry-After`` so that clients spread out.
    """

    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 600.0
    jitter_s: float = 0.25

    def delay(self, *, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based).

        With ``retry_after`` the delay is at least that (never earlier than the server asked).
        """
        cap = min(self.max_backoff_s, self.backoff_s * (2 ** max(0, attempt - 1)))
        backoff = random.uniform(0.0, cap)  # full jitter
        if retry_after is not None and retry_after > 0:
            return retry_after + random.uniform(0.0, self.jitter_s) + min(backoff, self.jitter_s)
        return backoff

    def should_retry(self, attempt: int) -> bool:
        """True while retry number ``attempt`` (1-based) is allowed."""
        return attempt <= self.retries

    def too_long(self, retry_after: float | None) -> bool:
        """True when the server asked for a wait (``Retry-After``) above ``max_retry_after_s``.

        Example:
            >>> RetryPolicy(max_retry_after_s=120).too_long(599), DEFAULT_RETRY.too_long(None)
            (True, False)
        """
        return retry_after is not None and retry_after > self.max_retry_after_s


#: The media engine's ceiling on ``Retry-After``: a media host asking for a longer wait is asked
#: once more at the end of the run instead of holding the item for minutes per attempt.
MEDIA_MAX_RETRY_AFTER_S = 120.0

#: The media engine's policy (:data:`gbif_dl.fetch.engine.DEFAULT_FETCH`).
DEFAULT_RETRY = RetryPolicy(max_retry_after_s=MEDIA_MAX_RETRY_AFTER_S)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (seconds or an HTTP date) into seconds from now.

    Example:
        >>> parse_retry_after("3")
        3.0
        >>> parse_retry_after(None) is None, parse_retry_after("soon") is None
        (True, True)
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)

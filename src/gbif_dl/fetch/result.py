"""What the fetch engine hands back for each record: a value, never an exception.

Example:
    >>> from gbif_dl.records import make_record
    >>> record = make_record("https://x.org/a.jpg")
    >>> result = FetchResult.failed(record, Reason.HTTP_STATUS, http_status=404)
    >>> result.ok, result.reason.value, result.http_status
    (False, 'http_status', 404)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PERMANENT_REASONS",
    "TRANSIENT_CLIENT_STATUSES",
    "FetchResult",
    "FetchSummary",
    "Reason",
    "is_permanent",
]


class Reason(str, enum.Enum):
    """Why one image was not fetched. The values are stable: they go into manifests.

    Example:
        >>> Reason("too_large") is Reason.TOO_LARGE
        True
    """

    HTTP_STATUS = "http_status"  #: the server answered an error status (see ``http_status``)
    TIMEOUT = "timeout"  #: connect, read or total timeout
    NETWORK = "network"  #: connection refused/reset, DNS failure, protocol error
    NOT_IMAGE = "not_image"  #: the bytes are not JPEG/PNG/GIF/WebP/TIFF/BMP (e.g. an HTML page)
    TOO_LARGE = "too_large"  #: larger than ``max_bytes``
    TRUNCATED = "truncated"  #: fewer bytes than the announced ``Content-Length``
    DECODE_ERROR = "decode_error"  #: the image does not decode (``decode_check``)
    UNSAFE_URL = "unsafe_url"  #: not an http(s) URL, or redirected to one
    TOO_MANY_REDIRECTS = "too_many_redirects"  #: more than ``max_redirects`` hops
    INVALID = "invalid"  #: ``is_valid_file`` returned False
    WRITE_ERROR = "write_error"  #: a writer could not store the file
    UNSAFE_PATH = "unsafe_path"  #: its folder in the output root is a link (or a file): not written
    RESIZE_ERROR = "resize_error"  #: resizing / re-encoding failed
    CANCELLED = "cancelled"  #: the run was stopped before the record finished
    #: the server kept asking to wait (``Retry-After``) longer than ``max_retry_after_s``, also
    #: when asked once more at the end of the run
    RETRY_AFTER = "retry_after"
    #: the URL or a redirect leads to a private, loopback or link-local address (SSRF guard)
    BLOCKED_ADDRESS = "blocked_address"
    #: the image header claims more pixels than ``max_pixels`` (refused before decoding)
    TOO_MANY_PIXELS = "too_many_pixels"
    #: the same bytes as a file already stored (the manifest's ``duplicate_of``)
    DUPLICATE = "duplicate"
    #: looks like a file already stored (a resized or re-encoded copy), dropped on request
    NEAR_DUPLICATE = "near_duplicate"
    #: one image behind the URLs of many occurrences (a publisher's "no image" picture)
    PLACEHOLDER = "placeholder"


#: Failures that a rerun cannot cure: the same URL gives the same answer (the bytes are not an
#: image, too large, undecodable, refused by ``is_valid_file``, the URL is unusable, or the
#: image is a duplicate, a dropped near duplicate or a placeholder). A rerun
#: does not request them again unless asked to (``retry_failed=True``). An ``http_status``
#: failure is permanent or not by its status (see :func:`is_permanent`); every other reason
#: (timeouts, network errors, truncated bodies, write and resize errors, cancellation, a too
#: long ``Retry-After``, an address the guard refused: allowed on a rerun, it is fetched) is
#: transient: a rerun tries it again.
PERMANENT_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.NOT_IMAGE,
        Reason.TOO_LARGE,
        Reason.DECODE_ERROR,
        Reason.UNSAFE_URL,
        Reason.TOO_MANY_REDIRECTS,
        Reason.INVALID,
        Reason.TOO_MANY_PIXELS,
        Reason.DUPLICATE,
        Reason.NEAR_DUPLICATE,
        Reason.PLACEHOLDER,
    }
)

#: 4xx statuses that are not permanent: a timeout or throttling (408, 420, 425, 429), and access
#: refusals that may lift (401, 403 - often a temporary block by a CDN - and 407, a proxy's).
#: Every other 4xx (400, 404, 410, 414, 451, ...) is permanent; 5xx are transient.
TRANSIENT_CLIENT_STATUSES: frozenset[int] = frozenset({401, 403, 407, 408, 420, 425, 429})


def is_permanent(reason: Reason | str | None, http_status: int | None = None) -> bool:
    """True when a failure for ``reason`` (and ``http_status``) would recur on a rerun.

    Example:
        >>> is_permanent(Reason.HTTP_STATUS, 404), is_permanent("http_status", 429)
        (True, False)
        >>> is_permanent("not_image"), is_permanent(Reason.TIMEOUT), is_permanent("http_status")
        (True, False, False)
    """
    try:
        reason = Reason(reason) if reason is not None else None
    except ValueError:  # a reason this version does not know: try it again
        return False
    if reason is Reason.HTTP_STATUS:
        return (
            http_status is not None
            and 400 <= http_status < 500
            and http_status not in TRANSIENT_CLIENT_STATUSES
        )
    return reason in PERMANENT_REASONS


@dataclass(slots=True, kw_only=True)
class FetchResult:
    """The outcome for one record.

    Attributes:
        record: the MediaRecord as given.
        ok: True when ``body`` holds a valid image.
        reason: why not, when ``ok`` is False.
        http_status: the last HTTP status received, if any.
        detail: a short human-readable explanation of a failure.
        body: the bytes to write (already resized/re-encoded when asked).
        ext: ``.jpg`` ``.png`` ``.gif`` ``.webp`` ``.tif`` ``.bmp``, from the bytes, never the URL.
        mime: the media type matching ``ext``.
        width, height: pixel size of ``body``.
        attempts: requests made (0 when none was, e.g. an unsafe URL).
        elapsed_s: seconds from the first request to the result, waits included.
        host: ``host:port`` the record was fetched from.
        final_url: the URL after redirects.
        fetched_url: the URL requested: the record's, or a smaller rendition of it
            (:mod:`gbif_dl.fetch.renditions`).

    Example:
        >>> FetchResult(record={"url": "https://x.org/a.jpg"}, ok=True, ext=".jpg").ext
        '.jpg'
    """

    record: dict[str, Any]
    ok: bool
    reason: Reason | None = None
    http_status: int | None = None
    detail: str = ""
    body: bytes | None = None
    ext: str | None = None
    mime: str | None = None
    width: int | None = None
    height: int | None = None
    attempts: int = 0
    elapsed_s: float = 0.0
    host: str = ""
    final_url: str | None = None
    fetched_url: str | None = None

    @classmethod
    def failed(
        cls,
        record: dict[str, Any],
        reason: Reason,
        *,
        http_status: int | None = None,
        detail: str = "",
        **fields: Any,
    ) -> FetchResult:
        """A failed result.

        Example:
            >>> FetchResult.failed({"url": "file:///etc/passwd"}, Reason.UNSAFE_URL).ok
            False
        """
        return cls(
            record=record,
            ok=False,
            reason=reason,
            http_status=http_status,
            detail=detail,
            **fields,
        )


@dataclass(slots=True, kw_only=True)
class FetchSummary:
    """Totals of one :meth:`FetchEngine.run <gbif_dl.fetch.engine.FetchEngine.run>`.

    Example:
        >>> s = FetchSummary(total=4, ok=3, failed=1, by_reason={"timeout": 1}, elapsed_s=2.0)
        >>> s.images_per_s
        1.5
    """

    total: int = 0
    ok: int = 0
    failed: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    elapsed_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        """Successful images per second of wall time."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

"""Every exception gbif-dl raises, in one tree.

::

    GbifDlError                 base class; catch this to catch everything below
     ├─ ConfigError             bad arguments or query; raised before any I/O (also a ValueError)
     ├─ GbifApiError            GBIF answered with an error (.url, .status, .message)
     │   ├─ DownloadNotReadyError   an occurrence download is not SUCCEEDED (.status_name)
     │   └─ TooManyDownloadsError   HTTP 420/429 on download creation
     ├─ ArchiveError            malformed, corrupt or unsuitable Darwin Core Archive (.path)
     ├─ OutputError             the output root cannot be used (unwritable, disk full, ...)
     └─ MissingExtraError       an optional dependency is not installed (.extra)

Every message says what went wrong, where, and what to do next. Failures of single images are
*not* exceptions: the download engine records them as values with a typed reason (see
:class:`gbif_dl.fetch.result.Reason`).

Example:
    >>> try:
    ...     raise ConfigError("unknown GBIF search parameter 'publishingOrgKey'")
    ... except GbifDlError as exc:
    ...     print(type(exc).__name__)
    ConfigError
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "ConfigError",
    "DownloadNotReadyError",
    "GbifApiError",
    "GbifDlError",
    "MissingExtraError",
    "OutputError",
    "TooManyDownloadsError",
]


class GbifDlError(Exception):
    """Base class of every gbif-dl error."""


class ConfigError(GbifDlError, ValueError):
    """Bad arguments, query or configuration, detected before any request is made."""


class GbifApiError(GbifDlError):
    """GBIF answered with an error status.

    Attributes:
        url: the requested URL.
        status: the HTTP status code (0 when no answer was received at all).
        message: GBIF's own message (the response body, trimmed).
    """

    def __init__(self, message: str, *, url: str = "", status: int = 0, body: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.message = body.strip() if body else message

    def __reduce__(self) -> tuple[object, ...]:  # pickling (Dask) keeps kw-only args and extras
        return (
            _rebuild_api_error,
            (type(self), str(self), self.url, self.status, self.message),
            dict(self.__dict__),
        )


def _rebuild_api_error(
    cls: type[GbifApiError], text: str, url: str, status: int, body: str
) -> GbifApiError:
    err = cls.__new__(cls)
    GbifApiError.__init__(err, text, url=url, status=status, body=body)
    return err


class DownloadNotReadyError(GbifApiError):
    """An occurrence download exists but its file cannot be fetched (not SUCCEEDED, or erased)."""

    status_name: str = ""


class TooManyDownloadsError(GbifApiError):
    """GBIF refused to create a download: too many simultaneous downloads (HTTP 420/429)."""


class ArchiveError(GbifDlError):
    """A Darwin Core Archive is corrupt, incomplete or of a format without media URLs."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class OutputError(GbifDlError):
    """The output root cannot be used: not writable, not a directory, or the disk is full."""


class MissingExtraError(GbifDlError, ImportError):
    """An optional dependency is missing; the message names the ``pip install`` command."""

    def __init__(self, extra: str, package: str) -> None:
        super().__init__(
            f"this feature needs the optional dependency {package!r}; "
            f"install it with: pip install 'gbif-dl[{extra}]'"
        )
        self.extra = extra
        self.package = package


def require(module: str, *, extra: str, package: str | None = None) -> object:
    """Import an optional dependency or raise :class:`MissingExtraError` naming the extra.

    Example:
        >>> json = require("json", extra="core")
        >>> json.dumps([1])
        '[1]'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, package or module.split(".")[0]) from exc

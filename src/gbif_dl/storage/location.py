"""Where a dataset lives: a local folder or an object store (an fsspec URL), and its checks.

``root="s3://bucket/ds"`` (or ``gs://``, ``memory://``, any fsspec protocol with a ``://``)
names a *store root*; a plain path, a :class:`~pathlib.Path` or a ``file://`` URL names a local
folder and keeps the local code path. :func:`open_store` connects (fsspec, with the caller's
``storage_options``) and checks that the root can be used before any image is requested, so a
missing bucket or missing credentials fail fast with a message that names the fix.

Example:
    >>> is_store_root("s3://bucket/ds"), is_store_root("data"), is_store_root("file:///tmp/x")
    (True, False, False)
    >>> local_root("file:///tmp/x")
    '/tmp/x'
    >>> store = open_store("memory://example/ds")
    >>> store.url, store.key("manifest.parquet")
    ('memory://example/ds', '/example/ds/manifest.parquet')
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError, MissingExtraError, OutputError

__all__ = [
    "STORE_OUTPUTS",
    "StoreRoot",
    "check_store_options",
    "default_work_dir",
    "is_store_root",
    "local_root",
    "open_store",
    "store_error",
]

#: The layouts a store root takes: each object is written whole (a finished tar shard, an image).
STORE_OUTPUTS = ("webdataset", "hf")
#: Protocols whose first path component is a bucket (a missing one is named in the error).
_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "r2"})
_CREDENTIAL_ERRORS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
)


def is_store_root(root: object) -> bool:
    """True when ``root`` is an fsspec URL of an object store (not a local folder).

    Example:
        >>> is_store_root("memory://ds"), is_store_root(Path("data"))
        (True, False)
    """
    if not isinstance(root, str) or "://" not in root:
        return False
    return not root.lower().startswith("file://")


def local_root(root: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """``root`` with a ``file://`` prefix removed (a local folder); other roots unchanged.

    Example:
        >>> local_root("file://relative/dir"), local_root("data")
        ('relative/dir', 'data')
    """
    if isinstance(root, str) and root.lower().startswith("file://"):
        return root[len("file://") :]
    return root


def check_store_options(
    root: object,
    *,
    output: str,
    runner: str | None,
    storage_options: Mapping[str, Any] | None,
) -> None:
    """ConfigError for a combination a store root does not take (called before any I/O).

    Example:
        >>> check_store_options("s3://b/ds", output="imagefolder", runner=None,
        ...                     storage_options=None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: output='imagefolder' cannot be written to the object store...
    """
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise ConfigError(
            f"storage_options must be a mapping such as {{'key': ..., 'secret': ...}}; "
            f"got {type(storage_options).__name__}"
        )
    if not is_store_root(root):
        if storage_options:
            raise ConfigError(
                f"storage_options= applies to an object-store root such as 's3://bucket/ds'; "
                f"root={str(root)!r} is a local folder (drop storage_options=)"
            )
        return
    if output not in STORE_OUTPUTS:
        raise ConfigError(
            f"output={output!r} cannot be written to the object store {root!r}: a store takes "
            "whole objects, so use output='webdataset' (tar shards) or output='hf' (one object "
            "per image + metadata.jsonl), or download to a local folder"
        )
    if runner is not None:
        raise ConfigError(
            f"runner={runner!r} cannot write to the object store {root!r} yet; drop runner= "
            "(the streaming run writes to the store), or run the job into a local root and "
            "copy it up"
        )


def default_work_dir(url: str, kind: str = "stores") -> Path:
    """The local folder of store root ``url``: ``$XDG_CACHE_HOME/gbif-dl/<kind>/<digest of the
    url>`` (``~/.cache`` by default). ``stores``: a download's state (journal, manifest, the
    shard being written); ``copies``: a loader's local copy.

    Example:
        >>> url = "s3://b/ds"
        >>> default_work_dir(url).parent.name, default_work_dir(url, "copies").parent.name
        ('stores', 'copies')
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]
    return Path(base) / "gbif-dl" / kind / digest


@dataclass(frozen=True)
class StoreRoot:
    """A dataset root in an object store.

    Attributes:
        url: the root as the user gave it, without a trailing ``/``.
        fs: the fsspec filesystem (connected with the caller's ``storage_options``).
        path: the root in ``fs``'s own spelling (``bucket/ds`` for S3).
        protocol: the URL's protocol (``s3``, ``memory``, ...).
    """

    url: str
    fs: Any
    path: str
    protocol: str

    def key(self, name: str) -> str:
        """The ``fs`` path of ``name`` (``/``-separated, relative to the root)."""
        return f"{self.path}/{name}" if name else self.path

    def name_of(self, key: str) -> str:
        """The name relative to the root of the ``fs`` path ``key``."""
        prefix = self.path.rstrip("/") + "/"
        return key[len(prefix) :] if key.startswith(prefix) else key.rpartition("/")[2]


def open_store(url: str, storage_options: Mapping[str, Any] | None = None) -> StoreRoot:
    """Connect to the store root ``url`` with ``storage_options`` (no request yet).

    Raises:
        MissingExtraError: fsspec, or the protocol's package (s3fs, gcsfs...), is missing.
        ConfigError: the URL names no root (``s3://`` alone).

    Example:
        >>> open_store("memory://bucket/ds/").path
        '/bucket/ds'
    """
    try:
        import fsspec.core
    except ImportError as exc:
        raise MissingExtraError("s3", "fsspec") from exc
    scheme, _, rest = url.partition("://")
    url = f"{scheme}://{rest.rstrip('/')}"
    protocol = scheme.lower()
    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as exc:
        package = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}.get(protocol)
        if package == "s3fs":
            raise MissingExtraError("s3", "s3fs") from exc
        raise OutputError(
            f"cannot open {url!r}: {exc}; install the fsspec package of the {protocol}:// "
            f"protocol{f' ({package})' if package else ''}"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"cannot open the store root {url!r}: {exc}") from exc
    path = str(path).rstrip("/")
    if not path.strip("/"):
        raise ConfigError(
            f"root={url!r} names no folder; pass a bucket and prefix such as 's3://bucket/ds'"
        )
    return StoreRoot(url=url, fs=fs, path=path, protocol=protocol)


def store_error(store: StoreRoot, exc: BaseException, action: str) -> OutputError:
    """The OutputError for a store failure during ``action``, naming the problem and the fix.

    Example:
        >>> store = open_store("memory://b/ds")
        >>> print(store_error(store, PermissionError("Denied"), "list"))  # doctest: +ELLIPSIS
        cannot list memory://b/ds: access denied (Denied); check the credentials...
    """
    name = type(exc).__name__
    bucket = store.path.strip("/").partition("/")[0]
    if name in _CREDENTIAL_ERRORS:
        return OutputError(
            f"cannot {action} {store.url}: no credentials for the store ({exc}); pass "
            "storage_options={'key': ..., 'secret': ...} (--storage-option key=... on the "
            "command line), or set the store's usual credentials (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials)"
        )
    if isinstance(exc, PermissionError):
        return OutputError(
            f"cannot {action} {store.url}: access denied ({exc}); check the credentials in "
            "storage_options= and that they may read, write and list the bucket"
        )
    if isinstance(exc, FileNotFoundError) and store.protocol in _BUCKET_PROTOCOLS:
        return OutputError(
            f"cannot {action} {store.url}: the bucket {bucket!r} does not exist ({exc}); create "
            f"it first (for S3: aws s3 mb s3://{bucket}), or pass root= a bucket you own; check "
            "the endpoint_url in storage_options= if you use an S3-compatible server"
        )
    return OutputError(f"cannot {action} {store.url}: {name}: {exc}; check the store and rerun")

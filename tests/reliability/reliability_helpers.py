"""Helpers of the reliability tests: output-root invariants, a raw resetting server.

The invariants every fault test checks (see RELIABILITY.md):

* no partial file under a final name: every image under the root is complete (decodes, or
  equals the exact bytes the media host serves);
* no manifest row lost or duplicated: one row per distinct URL;
* after a successful rerun, no temp file is left anywhere.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gbif_dl.fetch.guard import allow_service, forget_service
from gbif_dl.io import LOCK_NAME
from gbif_dl.manifest import JOURNAL_NAME, MANIFEST_NAME, read_manifest
from gbif_dl.writers._atomic import is_temp_name

STATE_FILES = {
    MANIFEST_NAME,
    JOURNAL_NAME,
    LOCK_NAME,
    "ATTRIBUTION.csv",
    "CITATION.txt",
    "classes.json",
}


def stored_files(root: Path) -> list[Path]:
    """Every file under ``root`` with a final (non-temp) name, run-state files excluded."""
    out = []
    for path in root.rglob("*"):
        if not path.is_file() or is_temp_name(path.name):
            continue
        if path.parent == root and path.name in STATE_FILES:
            continue
        out.append(path)
    return sorted(out)


def temp_files(root: Path) -> list[Path]:
    """Every leftover temp file under ``root``."""
    return sorted(p for p in root.rglob("*") if p.is_file() and is_temp_name(p.name))


def assert_complete_images(root: Path) -> list[Path]:
    """Every stored file decodes fully (no partial file under a final name); returns them."""
    files = stored_files(root)
    for path in files:
        if path.suffix == ".json":  # label sidecars
            continue
        with Image.open(path) as image:
            image.load()
    return files


def manifest_rows(root: Path) -> list[dict[str, Any]]:
    """The manifest as a list of rows ([] when there is none)."""
    table = read_manifest(root)
    return [] if table is None else table.to_pylist()


def assert_manifest_exact(root: Path, urls: set[str]) -> list[dict[str, Any]]:
    """One manifest row per URL of ``urls``: none lost, none duplicated, none extra."""
    rows = manifest_rows(root)
    seen = [row["url"] for row in rows]
    assert len(seen) == len(set(seen)), "duplicated manifest rows"
    assert set(seen) == urls, (
        f"lost: {sorted(urls - set(seen))[:3]}, extra: {sorted(set(seen) - urls)[:3]}"
    )
    for row in rows:
        if row["status"] == "success":
            assert (root / row["path"]).is_file(), row
        else:
            assert row["path"] is None and row["reason"], row
    return rows


def requests(hosts: Any) -> int:
    """Requests the media hosts received since their last ``reset_stats``."""
    return sum(s.requests for s in hosts.stats().values())


# --- file systems --------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (tests run as root); unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs at {path} ({done.stderr.strip()}); the disk-full and "
            "read-only tests need root (or CAP_SYS_ADMIN) to mount a small file system"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def remount(path: Path, options: str) -> None:
    """``mount -o remount,<options> path`` (e.g. ``ro``, ``rw``, ``size=20m``)."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


# --- a raw HTTP server that resets connections -----------------------------------------------


class ResetServer:
    """A tiny HTTP/1.1 server on loopback whose first answers for a path end in a TCP reset.

    ``/reset-before/...``: the first ``resets`` requests of a path are reset before any byte of
    the answer; ``/reset-mid/...``: they get the headers and half the body, then a reset. Later
    requests get the full image (the bytes :func:`render_image` makes for the path).
    """

    def __init__(self, resets: int = 1) -> None:
        self.resets = resets
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)  # so that the accept loop sees ``closed`` soon
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        allow_service("127.0.0.1", self.sock.getsockname()[1])  # past the address guard
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.closed = False

    def __enter__(self) -> ResetServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True
        self.thread.join(5)
        forget_service("127.0.0.1", self.sock.getsockname()[1])
        self.sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: the kernel sends RST instead of FIN

    def _handle(self, conn: socket.socket) -> None:
        from gbif_dl.testing.mediahost import render_image

        with contextlib.suppress(OSError):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    conn.close()
                    return
                data += chunk
            path = data.split(b" ", 2)[1].decode("latin-1")
            with self.lock:
                attempt = self.attempts[path] = self.attempts.get(path, 0) + 1
            body, mime = render_image(path)
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            if attempt <= self.resets and path.startswith("/reset-before/"):
                self._reset(conn)
                return
            if attempt <= self.resets and path.startswith("/reset-mid/"):
                conn.sendall(head + body[: len(body) // 2])
                threading.Event().wait(0.05)  # let the client read the partial body
                self._reset(conn)
                return
            conn.sendall(head + body)
            conn.shutdown(socket.SHUT_WR)
            conn.close()


# --- fuzzing -------------------------------------------------------------------------------


def fuzz(max_examples: int) -> Any:
    """Hypothesis settings for CI: bounded, derandomized, no example database, no deadline.

    ``GBIF_DL_FUZZ_SCALE=10`` multiplies the example count for a longer local hunt.
    """
    from hypothesis import HealthCheck, settings

    scale = float(os.environ.get("GBIF_DL_FUZZ_SCALE", "1"))
    return settings(
        max_examples=max(1, int(max_examples * scale)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )

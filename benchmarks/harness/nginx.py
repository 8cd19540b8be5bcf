"""nginx in the foreground with a generated config: loopback only, its own prefix, one pool."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CONF = """\
daemon off;
{user}master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ image/jpeg jpg; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {pool};
        # any /img/.../<digits>NNN.jpg is served from the pool file NNN.jpg ({digits} digits)
        location ~ "^/img/.*([0-9]{{{digits}}})\\.jpg$" {{
            try_files /$1.jpg =404;
        }}
        location / {{ return 404; }}
    }}
}}
"""


def find_nginx() -> str | None:
    """Path of the nginx binary, or None."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def _user_line() -> str:
    """Run workers as the calling user (root by default would switch them to ``nobody``)."""
    if os.geteuid() != 0:
        return ""
    return "user root;\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    """``with Nginx(pool) as base_url:`` serves ``pool`` on a free loopback port; a URL's last
    ``digits`` digits name the pool file."""

    def __init__(self, pool: Path, workers: int = 1, digits: int = 3) -> None:
        self.pool = pool.resolve()
        self.digits = digits
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.prefix: Path | None = None
        self.base_url = ""

    def __enter__(self) -> str:
        exe = find_nginx()
        if exe is None:
            raise RuntimeError("nginx is not installed: apt-get update && apt-get install -y nginx")
        self.prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        port = free_port()
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            CONF.format(
                user=_user_line(),
                workers=self.workers,
                prefix=self.prefix,
                port=port,
                pool=self.pool,
                digits=self.digits,
            )
        )
        self.proc = subprocess.Popen(
            [exe, "-p", str(self.prefix), "-c", str(conf), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.prefix / "stderr.log", "wb"),
        )
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/img/00000000.jpg", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.prefix / "stderr.log").read_text(errors="replace")
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"nginx did not start: {log[-500:]}") from None
                time.sleep(0.05)
        return self.base_url

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful stop of master and workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None


def _selftest() -> None:  # python -m harness.nginx (from benchmarks/)
    pool = Path(tempfile.mkdtemp())
    for i in range(1000):
        (pool / f"{i:03d}.jpg").write_bytes(b"\xff\xd8" + str(i).encode())
    with Nginx(pool) as base:
        body = urllib.request.urlopen(f"{base}/img/x/00012345.jpg").read()
        assert body == b"\xff\xd8345", body
        print("nginx ok", base, os.getpid())
    shutil.rmtree(pool)


if __name__ == "__main__":
    _selftest()

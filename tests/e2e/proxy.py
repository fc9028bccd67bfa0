"""A real nginx in front of the API that cuts every request at a hard limit, like Cloudflare's 100 s.

Routes the way a production ingress would: chat submits and cancels to ingress, reads to status.
Its access log records each request's duration (``$request_time``), which the tests read back.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from services.devstack.ports import free_port, wait_for_port

_CONF = """
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    log_format timed '$request_time $status "$request"';
    upstream ingress {{ server 127.0.0.1:{ingress_port}; keepalive 16; }}
    upstream status {{ server 127.0.0.1:{status_port}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        access_log {root}/access.log timed;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_connect_timeout {limit}s;
        proxy_send_timeout {limit}s;
        proxy_read_timeout {limit}s;
        send_timeout {limit}s;
        location = /api/chat {{ proxy_pass http://ingress; }}
        location ~ ^/api/response/[^/]+/cancel$ {{ proxy_pass http://ingress; }}
        location /api/ {{ proxy_pass http://status; }}
    }}
}}
"""


@dataclass
class ProxyRequest:
    seconds: float
    status: int
    request: str


class StrictProxy:
    def __init__(self, root: Path, *, ingress_port: int, status_port: int, limit_s: int = 10) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.ingress_port, self.status_port, self.limit_s = ingress_port, status_port, limit_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StrictProxy:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx.conf"
        conf.write_text(
            _CONF.format(
                root=self.root, port=self.port, limit=self.limit_s,
                ingress_port=self.ingress_port, status_port=self.status_port,
            )
        )  # fmt: skip
        self.proc = subprocess.Popen([nginx, "-p", str(self.root), "-c", str(conf), "-g", "daemon off;"])
        wait_for_port(self.port, timeout=10, alive=lambda: self.proc is not None and self.proc.poll() is None)
        return self

    def requests(self) -> list[ProxyRequest]:
        log = self.root / "access.log"
        out = []
        for line in log.read_text().splitlines() if log.exists() else []:
            seconds, status, request = line.split(" ", 2)
            out.append(ProxyRequest(float(seconds), int(status), request.strip('"')))
        return out

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> StrictProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

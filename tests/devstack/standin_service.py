"""A stand-in for a service in the stack's own tests: /health, /ready, /env on ``<NAME>_PORT``.

``python standin_service.py NAME [--never-ready]``: answers /ready 200 (or 503 forever), shows the
environment it was given at /env, and exits cleanly on SIGTERM. Not a service of the product.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
NEVER_READY = "--never-ready" in sys.argv


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/ready" and NEVER_READY:
            code, body = 503, {"status": "unavailable", "detail": "the stand-in is never ready"}
        elif self.path in ("/health", "/ready"):
            code, body = 200, {"status": "ok"}
        elif self.path == "/env":
            code, body = 200, dict(os.environ)
        else:
            code, body = 404, {}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer((os.environ[f"{NAME.upper()}_HOST"], int(os.environ[f"{NAME.upper()}_PORT"])), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
sys.stdout.write(f"{NAME} stand-in listening; never ready: {NEVER_READY}\n")
sys.stdout.flush()
server.serve_forever()
sys.stdout.write(f"{NAME} stand-in drained\n")

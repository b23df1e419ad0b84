"""A loopback HTTP file server for download tests, with the faults real servers have.

`server.routes[path] = (kind, payload)`: `file` (bytes, with Range support), `drop_once` (half the body, then the
connection closes; whole afterwards), `status` (that HTTP error, always), `status_once` ((status, bytes): the
error on the first request, the file afterwards). Every request is recorded as (path, Range header).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileHandler(BaseHTTPRequestHandler):
    """Serves `server.routes` (see the module docstring); unknown paths are 404."""

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        kind, payload = server.routes.get(self.path, ("status", 404))
        if kind == "status_once":
            status, payload = payload
            if self.path not in server.failed:
                server.failed.add(self.path)
                self.send_error(status)
                return
        if kind == "status":
            self.send_error(payload)
            return
        start = 0
        if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
            start = int(match[1])
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "drop_once" and self.path not in server.dropped:
            server.dropped.add(self.path)
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def file_server() -> Iterator[ThreadingHTTPServer]:
    """A running FileHandler server on a free loopback port; `.base` is its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
    httpd.routes, httpd.requests, httpd.dropped, httpd.failed = {}, [], set(), set()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()

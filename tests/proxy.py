"""A counting, throttling HTTP proxy for tests: put it in front of a real registry to count requests
and bytes independently of airlift's own reports, and to slow a transfer down enough to kill it mid-layer."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler

from airlift.testing.serving import BackgroundServer

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class CountingProxy(BackgroundServer):
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream  # host:port
        self.requests: Counter[str] = Counter()  # "METHOD kind" e.g. "POST upload", "GET blob"
        self.bytes_in = 0  # request bodies received (pushes)
        self.bytes_out = 0  # response bodies sent (pulls)
        self.bytes_per_second: float | None = None
        self._lock = threading.Lock()

    @staticmethod
    def kind(path: str) -> str:
        if "/blobs/uploads" in path:
            return "upload"
        if "/blobs/" in path:
            return "blob"
        if "/manifests/" in path:
            return "manifest"
        return "other"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_in = self.bytes_out = 0

    def start(self) -> CountingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _throttle(self, count: int) -> None:
                if proxy.bytes_per_second:
                    time.sleep(count / proxy.bytes_per_second)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = b""
                while len(body) < length:
                    piece = self.rfile.read(min(256 * 1024, length - len(body)))
                    if not piece:
                        return
                    body += piece
                    with proxy._lock:
                        proxy.bytes_in += len(piece)
                    self._throttle(len(piece))
                with proxy._lock:
                    proxy.requests[f"{self.command} {proxy.kind(self.path)}"] += 1
                conn = http.client.HTTPConnection(proxy.upstream, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                conn.request(self.command, self.path, body=body if length else None, headers=headers)
                response = conn.getresponse()
                data_length = response.getheader("Content-Length")
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                if data_length is None and self.command != "HEAD":
                    payload = response.read()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.end_headers()
                if self.command == "HEAD":
                    return
                while chunk := response.read(64 * 1024):
                    try:
                        self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    with proxy._lock:
                        proxy.bytes_out += len(chunk)
                    self._throttle(len(chunk))
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._serve(Handler)
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.bound[1]}"

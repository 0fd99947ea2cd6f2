"""A hostile upstream against the one resumable GET: bodies past the announced size, bodies that never
end, and redirects to file://. Each must fail within seconds, permanently (no retries), keeping none
of the extra bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from airlift.bundle.store import BlobStore
from airlift.fetch import http as fetch_http
from airlift.fetch.base import FetchContext
from airlift.fetch.cache import Cache
from airlift.util import http as util_http
from airlift.util.errors import TransientError, WorkError
from airlift.util.http import resumable_get


class _Hostile(BaseHTTPRequestHandler):
    mode = "forever"
    gets: list[str]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "10")  # what the listing or HEAD announces
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.gets.append(self.mode)
        if self.mode == "redirect-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if self.mode == "long":
            self.send_header("Content-Length", str(16 << 20))  # honest about its 16 MiB, not about the file
        else:
            self.send_header("Connection", "close")  # no length: the body ends when the server says so: never
        self.end_headers()
        block = b"x" * 65536
        blocks = 256 if self.mode == "long" else 1 << 30  # 16 MiB, or on and on
        deadline = time.monotonic() + 30
        try:
            for _ in range(blocks):
                if time.monotonic() > deadline:
                    break
                self.wfile.write(block)
        except OSError:
            pass  # the client stopped reading: what it should do
        self.close_connection = True


@pytest.fixture
def hostile() -> Iterator[tuple[type[_Hostile], str]]:
    handler = type("H", (_Hostile,), {"gets": [], "mode": "forever"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}/model.safetensors"
    finally:
        server.shutdown()
        server.server_close()


def _ctx(tmp_path) -> FetchContext:
    return FetchContext(cache=Cache(tmp_path / "cache"), attempts=6)


def _part_bytes(tmp_path) -> int:
    return sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*.part"))


@pytest.mark.parametrize("mode", ["forever", "long"])
def test_a_body_past_the_announced_size_stops_at_once_and_is_not_retried(tmp_path, hostile, mode):
    handler, url = hostile
    handler.mode = mode
    size = fetch_http.head(url, "models/m")
    assert size.headers["content-length"] == "10"
    started = time.monotonic()
    with pytest.raises(WorkError, match="models/m: model.safetensors: the (body runs past|server announces)") as caught:
        fetch_http.download(url, _ctx(tmp_path), label="models/m: model.safetensors", etag=None, size=10, expected_sha256=None)
    assert not isinstance(caught.value, TransientError)  # permanent: a retry would read the same lie
    assert handler.gets == [mode]  # one GET, not six
    assert time.monotonic() - started < 10
    assert _part_bytes(tmp_path) == 0  # none of the extra bytes kept to resume from


def test_a_registry_blob_longer_than_its_descriptor_fails_permanently(tmp_path, hostile):
    handler, url = hostile
    store = BlobStore(tmp_path / "store")
    with store.partial("oci-x") as partial, httpx.Client() as http, pytest.raises(WorkError, match="100 bytes expected") as caught:
        resumable_get(lambda headers: http.stream("GET", url, headers=headers), partial.writer, label="repo blob sha256:ab", expected_size=100)
    assert not isinstance(caught.value, TransientError)
    assert partial.offset == 0


def test_a_body_of_unknown_size_stops_at_the_stated_cap(tmp_path, hostile, monkeypatch):
    handler, url = hostile
    monkeypatch.setattr(util_http, "UNSIZED_CAP", 1 << 20)
    with pytest.raises(WorkError, match="1048576 bytes allowed for a file of unknown size") as caught:
        fetch_http.download(url, _ctx(tmp_path), label="datasets/d: d.bin", etag=None, size=None, expected_sha256=None)
    assert not isinstance(caught.value, TransientError) and handler.gets == ["forever"]


def test_a_redirect_to_file_is_refused_without_retries(tmp_path, hostile):
    handler, url = hostile
    handler.mode = "redirect-file"
    with pytest.raises(WorkError, match="redirect to a file: URL refused") as caught:
        fetch_http.download(url, _ctx(tmp_path), label="datasets/d: d.bin", etag=None, size=10, expected_sha256=None)
    assert not isinstance(caught.value, TransientError) and handler.gets == ["redirect-file"]
    # A client of its own (the registry's) gets the same answer from the one GET.
    store = BlobStore(tmp_path / "store")
    with store.partial("k") as partial, httpx.Client(follow_redirects=True) as http, pytest.raises(WorkError, match="not http") as caught:
        resumable_get(lambda headers: http.stream("GET", url, headers=headers), partial.writer, label="repo blob", expected_size=10)
    assert not isinstance(caught.value, TransientError)

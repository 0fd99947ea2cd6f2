"""The network layer in-process: the transient classifier, the one retry helper, the subprocess runner,
the resumable GET (against a tiny local HTTP server in a thread) and the git blob-id hasher."""

from __future__ import annotations

import errno
import hashlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from airlift.bundle.store import BlobStore, HashingWriter
from airlift.fetch import http as fetch_http
from airlift.fetch.base import FetchContext
from airlift.fetch.cache import Cache
from airlift.fetch.wheels import _pip_failed_on_network
from airlift.oci.client import RegistryClient
from airlift.util.errors import IntegrityError, ResourceError, TransientError, WorkError, is_transient
from airlift.util.hashing import git_blob_hasher, git_blob_id
from airlift.util.http import client, raise_for_status, resumable_get, tls_context
from airlift.util.net import with_transient_retries
from airlift.util.proc import run

BODY = bytes(range(256)) * 1200  # 300 KiB: several reads, not one
STALE = b"stale bytes from another version of the file"


# -- the classifier ---------------------------------------------------------------------------------
def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://example.invalid/file")
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed"),
     _status_error(429), _status_error(500), _status_error(503), _status_error(408), TransientError("short body")],
    ids=["connect", "read-timeout", "remote-protocol", "429", "500", "503", "408", "TransientError"],
)
def test_transient_failures_are_retried(exc):
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [_status_error(401), _status_error(403), _status_error(404), IntegrityError("sha256 mismatch"),
     OSError(errno.ENOSPC, "No space left on device"), ValueError("bad input")],
    ids=["401", "403", "404", "IntegrityError", "ENOSPC", "ValueError"],
)
def test_permanent_failures_are_not(exc):
    assert not is_transient(exc)


def test_raise_for_status_names_the_thing_and_never_the_query():
    request = httpx.Request("GET", "https://user:pw@cdn.example.invalid/blob?X-Amz-Signature=SECRET")
    raise_for_status(httpx.Response(206, request=request), "models/x: a.bin")  # success: nothing
    with pytest.raises(TransientError) as transient:
        raise_for_status(httpx.Response(503, request=request), "models/x: a.bin")
    assert str(transient.value) == "models/x: a.bin: HTTP 503 from https://cdn.example.invalid/blob"
    with pytest.raises(WorkError) as permanent:
        raise_for_status(httpx.Response(404, request=request), "models/x: a.bin", origin="the hub")
    assert not isinstance(permanent.value, TransientError)
    assert str(permanent.value) == "models/x: a.bin: HTTP 404 from the hub"


def test_registry_client_classifies_through_the_same_helper():
    client = RegistryClient("127.0.0.1:9")
    try:
        request = httpx.Request("GET", "http://127.0.0.1:9/v2/x/manifests/latest")
        with pytest.raises(TransientError, match=r"^x:latest: HTTP 502 from 127\.0\.0\.1:9$"):
            client.check(httpx.Response(502, request=request), "x:latest")
        with pytest.raises(WorkError, match="HTTP 401") as refused:
            client.check(httpx.Response(401, request=request), "x:latest")
        assert not isinstance(refused.value, TransientError)
    finally:
        client.close()


# -- the retry helper -------------------------------------------------------------------------------
@dataclass
class Flaky:
    """Fails with `errors` in turn, then returns "ok"; counts the calls."""

    errors: list[BaseException]
    calls: int = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retries_transient_failures_until_one_succeeds():
    action = Flaky([httpx.ConnectError("refused"), TransientError("x: HTTP 503")])
    assert with_transient_retries("x", attempts=3, action=action) == "ok"
    assert action.calls == 3


def test_stops_at_the_first_permanent_failure():
    action = Flaky([WorkError("x: HTTP 404 from the hub"), httpx.ConnectError("never reached")])
    with pytest.raises(WorkError, match="HTTP 404"):
        with_transient_retries("x", attempts=6, action=action)
    assert action.calls == 1


def test_a_full_disk_fails_at_once_as_a_resource_error():
    action = Flaky([OSError(errno.ENOSPC, "No space left on device")])
    with pytest.raises(ResourceError, match="free space"):
        with_transient_retries("models/x: a.bin", attempts=6, action=action)
    assert action.calls == 1


def test_gives_up_after_the_stated_attempts_with_a_clear_message():
    action = Flaky([TransientError("x: HTTP 503 from the hub")] * 2)
    with pytest.raises(TransientError) as gave_up:
        with_transient_retries("x", attempts=2, action=action)
    assert action.calls == 2
    assert str(gave_up.value) == "x: HTTP 503 from the hub (gave up after 2 attempts)"

    foreign = Flaky([httpx.ReadTimeout("read timed out")] * 2)
    with pytest.raises(TransientError, match=r"^x: ReadTimeout: read timed out \(gave up after 2 attempts\)$"):
        with_transient_retries("x", attempts=2, action=foreign)
    assert foreign.calls == 2


# -- the subprocess runner --------------------------------------------------------------------------
def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_run_returns_stdout_and_passes_arguments_unparsed():
    assert run(_python("import sys; print(sys.argv[1])") + ["a b; rm -rf /"], what="echo") == "a b; rm -rf /\n"


def test_run_classifies_failures_through_the_transient_callback():
    fails = _python("import sys; sys.stderr.write('warning: noise\\nUnable to contact slurm controller (connect failure)\\n'); sys.exit(1)")
    seen: list[tuple[int, str]] = []

    def transient(code: int, stderr: str) -> bool:
        seen.append((code, stderr))
        return "Unable to contact slurm controller" in stderr

    with pytest.raises(TransientError, match=r"^sbatch job\.sbatch: Unable to contact slurm controller \(connect failure\)$"):
        run(fails, what="sbatch job.sbatch", transient=transient)
    assert seen and seen[0][0] == 1
    with pytest.raises(WorkError) as permanent:
        run(_python("import sys; sys.exit(3)"), what="scancel 7", transient=lambda code, _stderr: code == 255)
    assert not isinstance(permanent.value, TransientError)
    assert str(permanent.value) == "scancel 7: exit 3"


def test_run_cuts_credentials_from_what_a_tool_echoes():
    echo = _python("import sys; sys.stderr.write('fatal: unable to access https://user:tok3n@git.example.invalid/r.git/\\n'); sys.exit(128)")
    with pytest.raises(WorkError) as failed:
        run(echo, what="repos/r")
    assert "tok3n" not in str(failed.value) and "https://git.example.invalid/r.git/" in str(failed.value)


def test_run_names_a_missing_program():
    with pytest.raises(WorkError, match=r"^ssh host: airlift-no-such-program is not installed \(not on PATH\)$"):
        run(["airlift-no-such-program", "-V"], what="ssh host")


def test_pip_index_failures_are_told_from_missing_packages(tmp_path):
    log = tmp_path / "pip.log"
    log.write_text("Could not fetch URL http://127.0.0.1:9/simple/six/: connection error: HTTPConnectionPool(...) - skipping\n")
    assert _pip_failed_on_network("ERROR: No matching distribution found for six", log)
    log.write_text("Could not fetch URL https://x.invalid/simple/six/: 404 Client Error: Not Found - skipping\n")
    assert not _pip_failed_on_network("ERROR: No matching distribution found for six", log)
    assert _pip_failed_on_network("ERROR: HTTP error 503 while getting https://x.invalid/six.whl", tmp_path / "absent.log")


# -- the resumable GET ------------------------------------------------------------------------------
@dataclass
class Upstream:
    """What the test server does with the next GETs, and what it saw."""

    body: bytes = BODY
    mode: str = "range"  # range | ignore-range | short | short-no-length | cut-once
    ranges: list[str | None] = field(default_factory=list)
    if_ranges: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    local_http: Upstream

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        up = self.local_http
        header = self.headers.get("Range")
        up.ranges.append(header)
        up.if_ranges.append(self.headers.get("If-Range"))
        start = int(header.removeprefix("bytes=").rstrip("-")) if header and up.mode == "range" else 0
        if start >= len(up.body) and header:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(up.body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rest = up.body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(up.body) - 1}/{len(up.body)}")
        if up.mode == "short-no-length":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(rest[: len(rest) // 2])
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if up.mode in ("short", "cut-once"):
            self.wfile.write(rest[: len(rest) // 3])
            self.wfile.flush()
            self.close_connection = True
            if up.mode == "cut-once":
                up.mode = "range"
            return
        self.wfile.write(rest)


@pytest.fixture
def local_http() -> Iterator[tuple[Upstream, str]]:
    state = Upstream()
    handler = type("Handler", (_Handler,), {"local_http": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/file.bin"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str, writer, *, etag: str | None = None, expected_size: int | None = len(BODY), progress: list[int] | None = None) -> None:
    with httpx.Client() as http:
        resumable_get(
            lambda headers: http.stream("GET", url, headers=headers), writer, label="datasets/x: file.bin",
            etag=etag, expected_size=expected_size, on_bytes=None if progress is None else progress.append,
        )


def test_a_cut_body_is_transient_and_the_next_get_resumes_with_range(tmp_path, local_http):
    state, url = local_http
    store = BlobStore(tmp_path / "store")
    state.mode = "short"
    with store.partial("k") as partial, pytest.raises(TransientError, match="datasets/x: file.bin"):
        _get(url, partial.writer)
    state.mode = "range"
    with store.partial("k") as partial:
        offset = partial.offset
        assert 0 < offset < len(BODY)
        progress: list[int] = []
        _get(url, partial.writer, etag='"v1"', progress=progress)
        blob = partial.commit(expected_sha256=hashlib.sha256(BODY).hexdigest(), label="x")
    assert state.ranges[-1] == f"bytes={offset}-" and state.if_ranges[-1] == '"v1"'
    assert sum(progress) == len(BODY) - offset  # only the remainder crossed the wire
    assert blob.size == len(BODY) and store.blob_path(blob.sha256).read_bytes() == BODY


def test_a_body_short_of_the_expected_size_is_transient(tmp_path, local_http):
    state, url = local_http
    state.mode = "short-no-length"
    with BlobStore(tmp_path / "store").partial("k") as partial:
        with pytest.raises(TransientError, match=f"body ended at {len(BODY) // 2} of {len(BODY)} bytes"):
            _get(url, partial.writer)
        assert partial.offset == len(BODY) // 2  # kept for the next attempt


def test_a_200_answer_to_a_range_request_restarts_from_zero(tmp_path, local_http):
    state, url = local_http
    store = BlobStore(tmp_path / "store")
    with store.partial("k") as partial:
        partial.writer.write(STALE)
    state.mode = "ignore-range"
    with store.partial("k") as partial:
        _get(url, partial.writer, etag='W/"weak"')
        blob = partial.commit(expected_sha256=hashlib.sha256(BODY).hexdigest(), label="x")
    assert state.ranges == [f"bytes={len(STALE)}-"] and state.if_ranges == [None]  # a weak ETag never guards a range
    assert store.blob_path(blob.sha256).read_bytes() == BODY


def test_a_416_answer_restarts_from_zero(tmp_path, local_http):
    state, url = local_http
    store = BlobStore(tmp_path / "store")
    with store.partial("k") as partial:
        partial.writer.write(b"\0" * (len(BODY) + 5))  # longer than the file is now
    with store.partial("k") as partial:
        _get(url, partial.writer, expected_size=None)
        blob = partial.commit(label="x")
    assert state.ranges == [f"bytes={len(BODY) + 5}-", None]
    assert store.blob_path(blob.sha256).read_bytes() == BODY


def test_url_download_retries_and_resumes_in_one_call(tmp_path, local_http):
    state, url = local_http
    state.mode = "cut-once"
    ctx = FetchContext(cache=Cache(tmp_path / "cache"), attempts=3)
    blob = fetch_http.download(url, ctx, label="datasets/x: file.bin", etag=None, size=len(BODY), expected_sha256=hashlib.sha256(BODY).hexdigest())
    assert state.ranges == [None, f"bytes={len(BODY) // 3}-"]
    assert ctx.cache.store.blob_path(blob.sha256).read_bytes() == BODY


# -- the git blob id --------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [b"", b"hello\n", bytes(range(256)) * 40], ids=["empty", "text", "binary"])
def test_git_blob_id_matches_git_hash_object(tmp_path, data):
    path = tmp_path / "f"
    path.write_bytes(data)
    expected = subprocess.run(["git", "hash-object", "--no-filters", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert git_blob_id(data) == expected
    incremental = git_blob_hasher(len(data))
    for start in range(0, len(data), 1000):
        incremental.update(data[start : start + 1000])
    assert incremental.hexdigest() == expected
    with open(tmp_path / "w", "wb") as handle:  # the store's writer computes the same id while writing
        writer = HashingWriter(handle, git_blob_size=len(data))
        writer.write(data)
    assert writer.git_sha1 is not None and writer.git_sha1.hexdigest() == expected


def test_every_client_verifies_tls_with_the_one_shared_context():
    """One CA bundle load for all clients (a ranged download opens one per worker), and sharing it does not
    loosen verification: certificates and host names are still checked, for hub and registry clients alike."""
    import ssl

    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs() or context.cert_store_stats()["x509_ca"] > 0, "no trust roots loaded"
    hub, registry = client(), RegistryClient("registry.example.invalid")
    try:
        assert hub._transport._pool._ssl_context is context
        assert registry._http._transport._pool._ssl_context is context
    finally:
        hub.close()
        registry.close()

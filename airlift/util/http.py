"""The one resumable GET: URLs, wheels, hub files and registry blobs all download through it.

It continues a partial file with `Range` (and `If-Range` when the server gave a strong ETag), starts
over when the server answers a ranged request with the whole body (200) or cannot satisfy the range
(416), writes each piece as it arrives, and turns a dropped connection or a short body into a
TransientError, so the caller's one retry layer (`airlift.util.net.with_transient_retries`) resumes it.
Status codes are classified in one place, `raise_for_status`.

Every body is bounded: never more than the announced (or pinned) size is kept, and a body that runs
past it fails at once, permanently (a retry would only read the same lie again); with no size known,
UNSIZED_CAP applies. A redirect to anything but http(s) (`file://`) is refused at once, not retried.
Large files go over parallel byte ranges instead (`airlift.util.ranged`), through the same `check`.
"""

from __future__ import annotations

import contextlib
import functools
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

import httpx

from airlift.util.errors import TransientError, WorkError, is_transient_status
from airlift.util.phase import progress, under_way
from airlift.util.redact import redact_url

TIMEOUT = httpx.Timeout(30.0, read=120.0)
# The stated cap on a body whose size nobody announced (no pin, no listing, no Content-Length): it stops
# a hostile upstream from filling the disk; the mission's largest single file (a 20 GB shard) fits.
UNSIZED_CAP = 64 << 30
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-\d+/(?:\d+|\*)$")


class ResumableWriter(Protocol):
    """What a partial download writes to (the blob store's HashingWriter); `size` is the resume offset."""

    size: int

    def write(self, data: bytes) -> int: ...
    def seek(self, offset: int, whence: int = 0) -> int: ...
    def truncate(self, size: int | None = None) -> int: ...
    def flush(self) -> None: ...


OpenStream = Callable[[dict[str, str]], contextlib.AbstractContextManager[httpx.Response]]
StatusCheck = Callable[[httpx.Response, str], None]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context airlift's httpx clients verify with (certifi's roots, or SSL_CERT_FILE/SSL_CERT_DIR,
    read by httpx when it is first made: once per process; huggingface_hub and boto3 keep their own).

    Why shared: each `httpx.Client()` otherwise loads the CA bundle again (~30-60 ms of CPU under the
    GIL), and a ranged download starts a client per worker thread, all before its first byte.
    An SSLContext is safe to share between threads, and nothing here changes it after it is made.
    """
    return httpx.create_ssl_context()


def client() -> httpx.Client:
    """An HTTP client with airlift's timeouts; redirects are followed (hubs redirect to CDNs).

    httpx drops the Authorization header when a redirect leaves the origin, so a hub token never
    reaches the CDN.
    """
    return httpx.Client(
        verify=tls_context(), timeout=TIMEOUT, follow_redirects=True, headers={"User-Agent": "airlift"}, event_hooks={"response": [refuse_odd_redirect]},
    )


class PerThreadClients:
    """One `client()` per worker thread, all closed when the block ends.

    Why not one shared client for a pool of file workers: httpx's connection pool takes one lock per
    request and per response close, and with eight threads fetching small files that lock was where
    they waited (py-spy: ~14 % of the fetch threads' samples in httpcore's ThreadLock). A client is
    thread-safe, so the ranges of one large file still share their worker's client.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        """This thread's client (made on first use)."""
        made = getattr(self._local, "client", None)
        if made is None:
            made = self._local.client = client()
            with self._lock:
                self._clients.append(made)
        return made

    def __enter__(self) -> PerThreadClients:
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            made, self._clients = self._clients, []
        for one in made:
            one.close()


def refuse_odd_redirect(response: httpx.Response) -> None:
    """Refuse (permanently) a redirect to anything but http(s), before httpx tries to follow it.

    httpx would raise UnsupportedProtocol, which reads as a transport failure and was retried 6 times.
    """
    if not response.has_redirect_location:
        return
    target = response.headers.get("location", "").strip()
    scheme = target.split(":", 1)[0].lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) else ""
    if scheme and scheme not in ("http", "https"):
        response.close()
        raise WorkError(f"{redact_url(str(response.request.url))}: redirect to a {scheme}: URL refused (only http and https are followed)")


def raise_for_status(response: httpx.Response, label: str, *, origin: str | None = None) -> None:
    """Nothing for a success; TransientError for 408, 429 and 5xx; WorkError for every other failure.

    Args:
        response: The answer (closed here when it is a failure, so a stream is not left open).
        label: Names the thing asked for (an artifact id and path, a repository and digest).
        origin: Names who answered ("the hub", a registry host); by default the redacted URL, which
            never carries userinfo or a query string (a CDN redirect's signature).

    Raises:
        TransientError: 408, 429 or 5xx: a retry may cure it.
        WorkError: Any other status of 400 or more.
    """
    if response.status_code < 400:
        return
    response.close()
    message = f"HTTP {response.status_code} from {origin or redact_url(str(response.request.url))}"
    if is_transient_status(response.status_code):
        raise TransientError(message, artifact_id=label)
    raise WorkError(message, artifact_id=label)


def _range_headers(offset: int, etag: str | None) -> dict[str, str]:
    if not offset:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    if etag and not etag.startswith("W/"):  # If-Range takes strong validators only
        headers["If-Range"] = etag
    return headers


def _restart(writer: ResumableWriter) -> None:
    writer.seek(0)
    writer.truncate(0)


def resumable_get(
    open_stream: OpenStream,
    writer: ResumableWriter,
    *,
    label: str,
    etag: str | None = None,
    expected_size: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
    check: StatusCheck = raise_for_status,
) -> None:
    """Continue (or start) a download into `writer`, from `writer.size` bytes on.

    Args:
        open_stream: Given the request headers, opens the streaming GET (the caller adds auth, and
            may refresh it); the response is closed when the context ends.
        writer: The partial file; `writer.size` is where to resume.
        label: Names the download in errors (an artifact id and path; never a URL with credentials).
        etag: The resource's ETag; a strong one guards the resume with `If-Range`.
        expected_size: When known, a body that ends short of it is a TransientError.
        on_bytes: Progress callback, given each chunk's length.
        check: Classifies the response status (default `raise_for_status`).

    Raises:
        TransientError: The connection dropped or the body was short (a retry resumes), or a 408/429/5xx.
        WorkError: Any other HTTP failure.
    """
    with under_way("download", label):
        _get(open_stream, writer, label=label, etag=etag, expected_size=expected_size, on_bytes=on_bytes, check=check)


def _get(
    open_stream: OpenStream, writer: ResumableWriter, *, label: str, etag: str | None, expected_size: int | None,
    on_bytes: Callable[[int], None] | None, check: StatusCheck,
) -> None:
    with opened(open_stream, _range_headers(writer.size, etag), label) as response:
        if response.status_code == 416 and writer.size:
            # The partial is no prefix of what the server has now (it changed, or the partial is
            # already whole but unverified): start over rather than fail forever.
            _restart(writer)
            response.close()
            return _get(open_stream, writer, label=label, etag=etag, expected_size=expected_size, on_bytes=on_bytes, check=check)
        check(response, label)
        if writer.size and response.status_code == 200:
            _restart(writer)  # the server ignored Range, or If-Range found the file changed: the whole body follows
        elif response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if not match or int(match[1]) != writer.size:
                _restart(writer)
                raise TransientError("server answered a range we did not ask for; starting over", artifact_id=label)
        limit = UNSIZED_CAP if expected_size is None else expected_size
        announced = response.headers.get("content-length", "")
        if announced.isdigit() and writer.size + int(announced) > limit:
            _restart(writer)
            raise WorkError(f"{label}: the server announces {writer.size + int(announced)} bytes, more than the {_limit_text(expected_size)}")
        _stream(response, writer, label=label, on_bytes=on_bytes, expected_size=expected_size, limit=limit)
    if expected_size is not None and writer.size != expected_size:
        raise TransientError(f"body ended at {writer.size} of {expected_size} bytes", artifact_id=label)


def _limit_text(expected_size: int | None) -> str:
    return f"{UNSIZED_CAP} bytes allowed for a file of unknown size" if expected_size is None else f"{expected_size} bytes expected"


@contextlib.contextmanager
def opened(open_stream: OpenStream, headers: dict[str, str], label: str) -> Iterator[httpx.Response]:
    """Open the stream; a redirect to a scheme httpx cannot speak (file://) is a permanent refusal."""
    with contextlib.ExitStack() as stack:
        try:
            response = stack.enter_context(open_stream(headers))
        except httpx.UnsupportedProtocol as exc:
            raise WorkError(f"{label}: refused a redirect to a URL that is not http(s) ({exc})") from None
        yield response


def _stream(
    response: httpx.Response, writer: ResumableWriter, *, label: str, on_bytes: Callable[[int], None] | None,
    expected_size: int | None, limit: int,
) -> None:
    # Each piece is written as it arrives (one network read, 64 KiB or less): with a chunk size,
    # httpx holds bytes back until a whole chunk is in, and a dropped connection would lose them.
    try:
        for chunk in response.iter_bytes():
            if writer.size + len(chunk) > limit:
                # Past the announced size: stop reading (the rest may never end) and keep none of it,
                # since these bytes are not the file; a retry would read the same lie again.
                _restart(writer)
                raise WorkError(f"{label}: the body runs past the {_limit_text(expected_size)}; stopped reading")
            writer.write(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
            progress(done=writer.size, total=expected_size)
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise TransientError(f"connection dropped after {writer.size} bytes ({type(exc).__name__})", artifact_id=label) from exc
    finally:
        writer.flush()


@contextlib.contextmanager
def closing_response(response: httpx.Response) -> Iterator[httpx.Response]:
    """A context manager that closes an already-sent streaming response."""
    try:
        yield response
    finally:
        response.close()


SMALL_BODY = 256 << 10  # at most this, a file is read into memory and stored in one write (no partial, no lock)


def get_small(open_stream: OpenStream, *, label: str, size: int, check: StatusCheck = raise_for_status) -> bytes:
    """The whole body of a small file whose size is known, read into memory: never more than `size` bytes.

    A resumable partial costs a lock file, a partial file and their syscalls; for a file of a few KB
    (a repository of 10,000 of them) that is most of its cost, and there is nothing worth resuming.

    Raises:
        TransientError: The connection dropped or the body was short (the caller retries).
        WorkError: The body runs past `size` (permanent), or any other HTTP failure.
    """
    with under_way("download", label), opened(open_stream, {}, label) as response:
        check(response, label)
        announced = response.headers.get("content-length", "")
        if announced.isdigit() and int(announced) > size:
            raise WorkError(f"{label}: the server announces {announced} bytes, more than the {size} bytes expected")
        data = bytearray()
        try:
            for chunk in response.iter_bytes():
                if len(data) + len(chunk) > size:
                    raise WorkError(f"{label}: the body runs past the {size} bytes expected; stopped reading")
                data += chunk
                progress(done=len(data), total=size)
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise TransientError(f"{label}: connection dropped after {len(data)} bytes ({type(exc).__name__})") from exc
    if len(data) != size:
        raise TransientError(f"{label}: body ended at {len(data)} of {size} bytes")
    return bytes(data)

"""The one resumable GET: URLs, wheels, hub files and registry blobs all download through it.

It continues a partial file with `Range` (and `If-Range` when the server gave a strong ETag), starts
over when the server answers a ranged request with the whole body (200) or cannot satisfy the range
(416), writes each piece as it arrives, and turns a dropped connection or a short body into a
TransientError, so the caller's one retry layer (`airlift.util.net.with_transient_retries`) resumes it.
Status codes are classified in one place, `raise_for_status`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Protocol

import httpx

from airlift.util.errors import TransientError, WorkError, is_transient_status
from airlift.util.phase import progress, under_way
from airlift.util.redact import redact_url

TIMEOUT = httpx.Timeout(30.0, read=120.0)
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


def client() -> httpx.Client:
    """An HTTP client with airlift's timeouts; redirects are followed (hubs redirect to CDNs).

    httpx drops the Authorization header when a redirect leaves the origin, so a hub token never
    reaches the CDN.
    """
    return httpx.Client(timeout=TIMEOUT, follow_redirects=True, headers={"User-Agent": "airlift"})


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
    with open_stream(_range_headers(writer.size, etag)) as response:
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
        _stream(response, writer, label=label, on_bytes=on_bytes, expected_size=expected_size)
    if expected_size is not None and writer.size != expected_size:
        if writer.size > expected_size:
            _restart(writer)  # longer than promised: these bytes are not the file; never resume from them
        raise TransientError(f"body ended at {writer.size} of {expected_size} bytes", artifact_id=label)


def _stream(
    response: httpx.Response, writer: ResumableWriter, *, label: str, on_bytes: Callable[[int], None] | None, expected_size: int | None,
) -> None:
    # Each piece is written as it arrives (one network read, 64 KiB or less): with a chunk size,
    # httpx holds bytes back until a whole chunk is in, and a dropped connection would lose them.
    try:
        for chunk in response.iter_bytes():
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

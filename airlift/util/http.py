"""The one resumable GET: URLs, wheels, hub files and registry blobs all download through it.

It continues a partial file with `Range` (and `If-Range` when the server gave a strong ETag), starts
over when the server answers a ranged request with the whole body (200), streams in CHUNK pieces,
and turns a dropped connection or a short body into a TransientError, so the caller's one retry layer
(`airlift.util.net.with_transient_retries`) resumes it. Status codes are classified in one place,
`raise_for_status`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

import httpx

from airlift.util.errors import TransientError, WorkError, is_transient_status
from airlift.util.fs import CHUNK
from airlift.util.redact import redact_url

TIMEOUT = httpx.Timeout(30.0, read=120.0)


class ResumableWriter(Protocol):
    """What a partial download writes to (the blob store's HashingWriter)."""

    size: int

    def write(self, data: bytes) -> int: ...
    def seek(self, offset: int, whence: int = 0) -> int: ...
    def truncate(self, size: int | None = None) -> int: ...
    def flush(self) -> None: ...


def client() -> httpx.Client:
    """An HTTP client with airlift's timeouts; redirects are followed (hubs redirect to CDNs)."""
    return httpx.Client(timeout=TIMEOUT, follow_redirects=True, headers={"User-Agent": "airlift"})


def raise_for_status(response: httpx.Response, label: str) -> None:
    """Nothing for a success; TransientError for 408, 429 and 5xx; WorkError for every other failure.

    The message names `label` and the redacted URL (never a query token or userinfo).
    """
    if response.status_code < 400:
        return
    message = f"{label}: HTTP {response.status_code} from {redact_url(str(response.request.url))}"
    if is_transient_status(response.status_code):
        raise TransientError(message)
    raise WorkError(message)


def resumable_get(
    open_stream: Callable[[dict[str, str]], contextlib.AbstractContextManager[httpx.Response]],
    writer: ResumableWriter,
    *,
    label: str,
    etag: str | None = None,
    expected_size: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
    check: Callable[[httpx.Response, str], None] = raise_for_status,
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
    headers: dict[str, str] = {}
    if writer.size:
        headers["Range"] = f"bytes={writer.size}-"
        if etag and not etag.startswith("W/"):
            headers["If-Range"] = etag
    with open_stream(headers) as response:
        check(response, label)
        if response.status_code == 200 and writer.size:
            writer.seek(0)  # the server ignored Range (or the file changed): start over
            writer.truncate(0)
        try:
            for chunk in response.iter_bytes(CHUNK):
                writer.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise TransientError(f"{label}: connection dropped after {writer.size} bytes: {type(exc).__name__}") from exc
        finally:
            writer.flush()
    if expected_size is not None and writer.size != expected_size:
        raise TransientError(f"{label}: body cut short at {writer.size} of {expected_size} bytes")


@contextlib.contextmanager
def closing_response(response: httpx.Response) -> Iterator[httpx.Response]:
    """A context manager that closes an already-sent streaming response."""
    try:
        yield response
    finally:
        response.close()

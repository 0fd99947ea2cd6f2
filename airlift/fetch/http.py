"""Resumable HTTP downloads into the blob store (plain URLs): Range + If-Range, hashed while written."""

from __future__ import annotations

import hashlib

import httpx

from airlift.bundle.store import StoredBlob
from airlift.fetch.base import FetchContext
from airlift.util.errors import TransientError, WorkError
from airlift.util.net import host_slot, with_transient_retries
from airlift.util.redact import redact_url

TIMEOUT = httpx.Timeout(30.0, read=120.0)
CHUNK = 1 << 20


def client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=True, headers={"User-Agent": "airlift"})


def raise_for_status(response: httpx.Response, label: str) -> None:
    if response.status_code < 400:
        return
    message = f"{label}: HTTP {response.status_code} from {redact_url(str(response.request.url))}"
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise TransientError(message)
    raise WorkError(message)


def head(url: str, label: str) -> httpx.Response:
    def attempt() -> httpx.Response:
        with client() as http:
            response = http.head(url)
            raise_for_status(response, label)
            return response

    return with_transient_retries(label, 6, attempt)


def download(url: str, ctx: FetchContext, *, label: str, etag: str | None, size: int | None, expected_sha256: str | None) -> StoredBlob:
    """Download `url` into the cache store, resuming a partial left by an earlier (killed) run."""
    partial_key = hashlib.sha256(f"url\0{url}\0{etag}\0{size}".encode()).hexdigest()

    def attempt() -> StoredBlob:
        with ctx.cache.store.partial(partial_key) as partial:
            headers = {}
            if partial.offset:
                if size is not None and partial.offset >= size:
                    return partial.commit(expected_sha256=expected_sha256, label=label)
                headers["Range"] = f"bytes={partial.offset}-"
                if etag and not etag.startswith("W/"):
                    headers["If-Range"] = etag
            with host_slot(url), client() as http, http.stream("GET", url, headers=headers) as response:
                raise_for_status(response, label)
                if response.status_code == 200 and partial.offset:
                    partial.writer.seek(0)  # the server ignored Range (or the file changed): start over
                    partial.writer.truncate(0)
                expected_total = size
                try:
                    for chunk in response.iter_bytes(CHUNK):
                        partial.writer.write(chunk)
                        ctx.progress(len(chunk))
                except (httpx.TransportError, httpx.StreamError) as exc:
                    partial.writer.flush()
                    raise TransientError(f"{label}: connection dropped after {partial.offset} bytes: {exc}") from exc
                partial.writer.flush()
                if expected_total is not None and partial.offset != expected_total:
                    raise TransientError(f"{label}: body cut short at {partial.offset} of {expected_total} bytes")
            return partial.commit(expected_sha256=expected_sha256, label=label)

    return with_transient_retries(label, ctx.attempts, attempt)

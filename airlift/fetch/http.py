"""Plain URL downloads into the blob store (urls and wheels), through the one resumable GET."""

from __future__ import annotations

import hashlib

import httpx

from airlift.bundle.store import StoredBlob
from airlift.fetch.base import FetchContext
from airlift.util import ranged
from airlift.util.http import client, raise_for_status, resumable_get
from airlift.util.net import host_slot, with_transient_retries


def head(url: str, label: str) -> httpx.Response:
    """HEAD `url` (following redirects), retrying transient failures; the response's headers describe it."""

    def attempt() -> httpx.Response:
        with client() as http:
            response = http.head(url)
            raise_for_status(response, label)
            return response

    return with_transient_retries(label, action=attempt)


def download(url: str, ctx: FetchContext, *, label: str, etag: str | None, size: int | None, expected_sha256: str | None) -> StoredBlob:
    """Download `url` into the cache store, resuming a partial left by an earlier (killed) run.

    Args:
        url: The URL, credentials and all (used for the request only).
        ctx: The fetch context (cache, progress, attempts).
        label: Names the download in errors and logs.
        etag: The ETag seen at resolution; guards a resume.
        size: The expected size, when known.
        expected_sha256: The pin, when known: a mismatch fails the download.

    Returns:
        The stored blob.
    """
    partial_key = hashlib.sha256(f"url\0{url}\0{etag}\0{size}".encode()).hexdigest()

    def attempt() -> StoredBlob:
        with ctx.cache.store.partial(partial_key) as partial:
            if size is not None and partial.offset >= size:
                return partial.commit(expected_sha256=expected_sha256, label=label)
            with host_slot(url), client() as http:
                resumable_get(
                    lambda headers: http.stream("GET", url, headers=headers), partial.writer,
                    label=label, etag=etag, expected_size=size, on_bytes=ctx.progress,
                )
            return partial.commit(expected_sha256=expected_sha256, label=label)

    got = None
    if ranged.worth_ranges(size):  # a large file: parallel ranges, each retried alone; None: one stream instead
        with client() as http:
            got = ranged.download(
                ctx.cache.store, partial_key, lambda headers: http.stream("GET", url, headers=headers), url=url, size=size,
                label=label, etag=etag, expected_sha256=expected_sha256, on_bytes=ctx.progress, attempts=ctx.attempts,
            )
    if got is not None:
        return StoredBlob(*got)
    return with_transient_retries(label, attempts=ctx.attempts, action=attempt)

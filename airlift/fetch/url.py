"""`url:` datasets: one file over HTTP(S), resumable, optionally pinned by sha256."""

from __future__ import annotations

from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry
from airlift.config.spec import UrlFile
from airlift.fetch import http
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.util.redact import redact_url


def resolve(entry: UrlFile, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """HEAD the URL (ETag, size); a pinned URL whose blob is cached needs no request at all."""
    name = entry.file_name
    if entry.sha256:
        # A pinned URL is identified by its pin alone, so the resolution (and the cache key) is the
        # same whether or not the bytes are cached; cached, it needs no request at all.
        # Only the redacted URL is recorded; the one with credentials travels in `fetch_url` (never persisted).
        source = {"url": redact_url(entry.url), "sha256": entry.sha256}
        if ctx.cache.store.has(entry.sha256):
            size = ctx.cache.store.blob_path(entry.sha256).stat().st_size
            return Resolved(artifact_id, "url", source, (RemoteFile(name, size, entry.sha256),), layout="file", fetch_url=entry.url)
        response = http.head(entry.url, artifact_id)
        files = (RemoteFile(name, _length(response), entry.sha256, etag=response.headers.get("etag")),)
        return Resolved(artifact_id, "url", source, files, layout="file", fetch_url=entry.url)
    response = http.head(entry.url, artifact_id)
    etag = response.headers.get("etag")
    final = redact_url(str(response.url))
    source = {
        "url": redact_url(entry.url),
        "final_url": final if final != redact_url(entry.url) else None,
        "etag": etag,
        "last_modified": response.headers.get("last-modified"),
        "size": _length(response),
    }
    source = {k: v for k, v in source.items() if v is not None}
    return Resolved(artifact_id, "url", source, (RemoteFile(name, _length(response), None, etag=etag),), layout="file", fetch_url=entry.url)


def _length(response) -> int | None:
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Download the file (resumable) unless the pinned blob is already cached."""
    remote = resolved.files[0]
    label = f"{resolved.artifact_id}: {remote.path}"
    if remote.sha256 and ctx.cache.store.has(remote.sha256, remote.size):
        sha256, size = remote.sha256, remote.size or 0
    else:
        blob = http.download(
            resolved.fetch_url or resolved.source.url, ctx, label=label, etag=remote.etag, size=remote.size, expected_sha256=remote.sha256
        )
        sha256, size = blob.sha256, blob.size
    return FileArtifact(
        id=resolved.artifact_id,
        kind="url",
        layout="file",
        source=resolved.source.model_copy(update={"sha256": sha256}),
        files=[FileEntry(path=remote.path, size=size, sha256=sha256)],
    )

"""`url:` datasets: one file over HTTP(S), resumable, optionally pinned by sha256."""

from __future__ import annotations

from airlift.bundle.manifest import Artifact, FileEntry
from airlift.config.spec import UrlFile
from airlift.fetch import http
from airlift.fetch.base import FetchContext, RemoteFile, Resolved


def resolve(entry: UrlFile, artifact_id: str, ctx: FetchContext) -> Resolved:
    name = entry.file_name
    if entry.sha256:
        # A pinned URL is identified by its pin alone, so the resolution (and the cache key) is the
        # same whether or not the bytes are cached; cached, it needs no request at all.
        source = {"url": entry.url, "sha256": entry.sha256}
        if ctx.cache.store.has(entry.sha256):
            size = ctx.cache.store.blob_path(entry.sha256).stat().st_size
            return Resolved(artifact_id, "url", source, (RemoteFile(name, size, entry.sha256),), layout="file")
        response = http.head(entry.url, artifact_id)
        return Resolved(artifact_id, "url", source, (RemoteFile(name, _length(response), entry.sha256, etag=response.headers.get("etag")),), layout="file")
    response = http.head(entry.url, artifact_id)
    etag = response.headers.get("etag")
    source = {
        "url": entry.url,
        "final_url": str(response.url) if str(response.url) != entry.url else None,
        "etag": etag,
        "last_modified": response.headers.get("last-modified"),
        "size": _length(response),
    }
    source = {k: v for k, v in source.items() if v is not None}
    return Resolved(artifact_id, "url", source, (RemoteFile(name, _length(response), None, etag=etag),), layout="file")


def _length(response) -> int | None:
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    remote = resolved.files[0]
    label = f"{resolved.artifact_id}: {remote.path}"
    if remote.sha256 and ctx.cache.store.has(remote.sha256, remote.size):
        sha256, size = remote.sha256, remote.size or 0
    else:
        blob = http.download(
            resolved.source["url"], ctx, label=label, etag=remote.etag, size=remote.size, expected_sha256=remote.sha256
        )
        sha256, size = blob.sha256, blob.size
    return Artifact(
        id=resolved.artifact_id,
        kind="url",
        layout="file",
        source={**resolved.source, "sha256": sha256},
        files=[FileEntry(path=remote.path, size=size, sha256=sha256)],
    )

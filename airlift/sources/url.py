"""`url:` datasets: one file over HTTP(S), resumable, optionally pinned by sha256."""

from __future__ import annotations

from airlift.manifest import Artifact, FileEntry
from airlift.sources import http
from airlift.sources.base import FetchContext, RemoteFile, Resolved
from airlift.spec import UrlFile


def resolve(entry: UrlFile, artifact_id: str, ctx: FetchContext) -> Resolved:
    name = entry.file_name
    if entry.sha256 and ctx.cache.store.has(entry.sha256):
        # Pinned and already cached: the pin *is* the resolution, no need to ask the server.
        size = ctx.cache.store.blob_path(entry.sha256).stat().st_size
        source = {"url": entry.url, "sha256": entry.sha256}
        return Resolved(artifact_id, "url", source, (RemoteFile(name, size, entry.sha256),), layout="file")
    response = http.head(entry.url, artifact_id)
    length = response.headers.get("content-length")
    size = int(length) if length and length.isdigit() else None
    etag = response.headers.get("etag")
    source = {
        "url": entry.url,
        "final_url": str(response.url) if str(response.url) != entry.url else None,
        "etag": etag,
        "last_modified": response.headers.get("last-modified"),
        "size": size,
        "sha256": entry.sha256,
    }
    source = {k: v for k, v in source.items() if v is not None}
    return Resolved(artifact_id, "url", source, (RemoteFile(name, size, entry.sha256, etag=etag),), layout="file")


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

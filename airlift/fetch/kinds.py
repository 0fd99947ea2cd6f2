"""Route a spec entry to its source module."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from airlift.bundle.manifest import Artifact
from airlift.config.spec import (
    GitRepo,
    HfRepo,
    ImageRef,
    LocalPath,
    NgcModel,
    S3Prefix,
    UrlFile,
    Wheels,
    image_ref,
)
from airlift.fetch import git, hf, image, ngc, path, s3prefix, url, wheels
from airlift.fetch.base import FetchContext, Resolved
from airlift.util.errors import AirliftError, WorkError

_BY_TYPE: dict[type, Any] = {HfRepo: hf, UrlFile: url, LocalPath: path, NgcModel: ngc, GitRepo: git, S3Prefix: s3prefix}
_BY_KIND: dict[str, Any] = {
    "hf-model": hf, "hf-dataset": hf, "url": url, "path": path, "image": image,
    "ngc-model": ngc, "git": git, "wheels": wheels, "s3": s3prefix,
}


def resolve_entry(entry: Any, artifact_id: str, ctx: FetchContext, *, platform: str = "linux/amd64") -> Resolved:
    if isinstance(entry, (str, ImageRef)):
        return image.resolve(image_ref(entry), artifact_id, ctx, default_platform=platform)
    if isinstance(entry, tuple) and all(isinstance(e, Wheels) for e in entry):
        return wheels.resolve(entry, artifact_id, ctx)
    module = _BY_TYPE.get(type(entry))
    if module is None:
        raise WorkError(f"{artifact_id}: this source kind is not supported yet")
    return module.resolve(entry, artifact_id, ctx)


def fetch_resolved(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Fetch an artifact's content, or take it whole from the cache when every blob is still there."""
    cached = ctx.cache.load(resolved.cache_key)
    if cached is not None:
        return cached
    resolved = _with_recorded_digests(resolved, ctx)
    try:
        artifact = _BY_KIND[resolved.kind].fetch(resolved, ctx)
    except AirliftError as exc:
        if str(exc).startswith(resolved.artifact_id):
            raise
        raise type(exc)(f"{resolved.artifact_id}: {exc}") from exc.__cause__
    ctx.cache.save(resolved.cache_key, artifact)
    return artifact


def _with_recorded_digests(resolved: Resolved, ctx: FetchContext) -> Resolved:
    """Fill in sha256s an earlier (now incomplete) record learned, so only missing blobs are refetched."""
    stale = ctx.cache.load_record(resolved.cache_key)
    if stale is None:
        return resolved
    known = {entry.path: entry for entry in stale.files}
    files = []
    for remote in resolved.files:
        entry = known.get(remote.path)
        if remote.sha256 is None and entry is not None and (remote.size is None or remote.size == entry.size):
            remote = replace(remote, sha256=entry.sha256, size=entry.size)
        files.append(remote)
    return replace(resolved, files=tuple(files))

"""Route a spec entry to its source module."""

from __future__ import annotations

from typing import Any

from airlift.errors import AirliftError, WorkError
from airlift.manifest import Artifact
from airlift.sources import hf, path, url
from airlift.sources.base import FetchContext, Resolved
from airlift.spec import HfRepo, LocalPath, UrlFile

_BY_TYPE: dict[type, Any] = {HfRepo: hf, UrlFile: url, LocalPath: path}
_BY_KIND: dict[str, Any] = {"hf-model": hf, "hf-dataset": hf, "url": url, "path": path}


def resolve_entry(entry: Any, artifact_id: str, ctx: FetchContext) -> Resolved:
    module = _BY_TYPE.get(type(entry))
    if module is None:
        raise WorkError(f"{artifact_id}: this source kind is not supported yet")
    return module.resolve(entry, artifact_id, ctx)


def fetch_resolved(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Fetch an artifact's content, or take it whole from the cache when every blob is still there."""
    cached = ctx.cache.load(resolved.cache_key)
    if cached is not None:
        return cached
    try:
        artifact = _BY_KIND[resolved.kind].fetch(resolved, ctx)
    except AirliftError as exc:
        if str(exc).startswith(resolved.artifact_id):
            raise
        raise type(exc)(f"{resolved.artifact_id}: {exc}") from exc.__cause__
    ctx.cache.save(resolved.cache_key, artifact)
    return artifact

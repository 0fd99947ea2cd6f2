"""The registry of source kinds, and routing: a spec entry to its module, a resolved artifact to its fetch."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from airlift.bundle.manifest import Artifact
from airlift.config.installer import Installer
from airlift.config.spec import (
    GitRepo,
    HfRepo,
    ImageRef,
    LocalPath,
    NgcModel,
    S3Prefix,
    UrlFile,
)
from airlift.fetch.base import FetchContext, Resolved
from airlift.util.errors import AirliftError, WorkError
from airlift.util.phase import under_way


@dataclass(frozen=True)
class SourceKind:
    """One kind of source: the spec entries it takes, the artifact kinds it makes, and its module.

    The module has `resolve(entry, artifact_id, ctx) -> Resolved` (metadata only: no content) and
    `fetch(resolved, ctx) -> Artifact` (content into the cache), and may have
    `still_sound(cached, ctx) -> bool` to hold records an older version wrote to a newer standard
    (without it, a record whose blobs are all stored is reused). Adding a kind is a module here plus
    one entry in KINDS (and its source record in airlift/bundle/source_records.py). Modules are named, and
    imported on first use: a build of local paths does not pay for boto3, huggingface_hub or docker.
    """

    spec_types: tuple[type, ...]
    artifact_kinds: tuple[str, ...]
    module_name: str

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"airlift.fetch.{self.module_name}")

    def still_sound(self, cached: Artifact, ctx: FetchContext) -> bool:
        check = getattr(self.module, "still_sound", None)
        return check is None or check(cached, ctx)


KINDS: tuple[SourceKind, ...] = (
    SourceKind((HfRepo,), ("hf-model", "hf-dataset"), "hf"),
    SourceKind((UrlFile,), ("url",), "url"),
    SourceKind((LocalPath,), ("path",), "path"),
    SourceKind((S3Prefix,), ("s3",), "s3prefix"),
    SourceKind((NgcModel,), ("ngc-model", "ngc-catalog"), "ngc"),
    SourceKind((GitRepo,), ("git",), "git"),
    SourceKind((tuple,), ("wheels",), "wheels"),  # every `wheels:` entry of a spec makes one artifact
    SourceKind((str, ImageRef), ("image",), "image"),
    SourceKind((Installer,), ("installer",), "installer"),  # airlift itself, tools/airlift
)
_BY_KIND = {kind: source for source in KINDS for kind in source.artifact_kinds}


def resolve_entry(entry: Any, *, artifact_id: str, ctx: FetchContext, platform: str = "linux/amd64") -> Resolved:
    """Pin one spec entry to exact upstream content (a commit, a digest, an ETag); fetches no content.

    Raises:
        WorkError: No source kind takes this entry, or resolution failed.
    """
    module = next((kind.module for kind in KINDS if isinstance(entry, kind.spec_types)), None)
    if module is None:
        raise WorkError("this source kind is not supported yet", artifact_id=artifact_id)
    with under_way("resolve", artifact_id):
        return module.resolve(entry, artifact_id=artifact_id, ctx=replace(ctx, platform=platform))


def reusable(resolved: Resolved, ctx: FetchContext) -> Artifact | None:
    """The cached record for exactly this resolution, when every blob is still there and the kind finds it sound; else None.

    The one reuse rule: nothing else (no task cache) may hand back a record this refuses.
    """
    cached = ctx.cache.load(resolved.cache_key)
    if cached is not None and _BY_KIND[resolved.kind].still_sound(cached, ctx):
        return cached
    return None


def fetch_resolved(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Fetch an artifact's content, or take it whole from the cache when `reusable` says so."""
    kind = _BY_KIND[resolved.kind]
    if (cached := reusable(resolved, ctx)) is not None:
        return cached
    resolved = _with_recorded_digests(resolved, ctx)
    try:
        artifact = kind.module.fetch(resolved, ctx)
    except AirliftError as exc:
        raise exc.about(resolved.artifact_id) from exc.__cause__
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

"""`images:` entries: from a registry (default) or saved from the local Docker engine.

Registry images keep their exact manifest bytes, so the digest a job pins upstream is the digest
it pulls inside the gap. Layers and configs land in the same blob store as every other file, so a
base layer shared by several images (or already in an earlier bundle) is stored once. Each pulled
image also teaches the cache's diff_id map (airlift/oci/dedup.py), so an engine image built FROM it
(airlift/fetch/engine_image.py) shares its compressed base layers instead of storing them again.
"""

from __future__ import annotations

import json
from typing import Any

from airlift.bundle.manifest import Artifact, ImageArtifact, ImageInfo, Referrer
from airlift.bundle.oci_layout import config_platform, oci_form
from airlift.bundle.source_records import ImageSource
from airlift.config.spec import ImageRef, image_ref
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.fetch.engine_image import engine_record_is_sound, fetch_engine, resolve_engine
from airlift.oci import referrers
from airlift.oci.client import INDEX_TYPES, RegistryClient, choose_platform
from airlift.oci.dedup import LayerIndex
from airlift.oci.reference import parse_image
from airlift.util import ranged
from airlift.util.names import Digest
from airlift.util.net import bounded_map, host_slot, with_transient_retries


def resolve(entry: str | ImageRef, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """Pin an image to its manifest digest for the spec's platform (registry), or its image id (engine)."""
    entry = image_ref(entry)
    platform = entry.platform or ctx.platform
    if entry.from_ == "docker":
        return resolve_engine(entry, artifact_id=artifact_id, platform=platform, ctx=ctx)
    name = parse_image(entry.ref)
    client = RegistryClient(name.api_host, registry=name.registry, insecure=ctx.plain_http(name.api_host))
    try:
        raw, media_type, digest = with_transient_retries(artifact_id, attempts=ctx.attempts, action=lambda: client.get_manifest(name.repository, name.reference))
        index_digest = None
        if media_type in INDEX_TYPES:
            index_digest = digest
            chosen = choose_platform(json.loads(raw), platform=platform, ref=entry.ref)
            digest = chosen["digest"]
            raw, _, _ = with_transient_retries(artifact_id, attempts=ctx.attempts, action=lambda: client.get_manifest(name.repository, digest))
    finally:
        client.close()
    # Layer sizes come from the manifest (metadata), so `plan` can size an image without pulling it.
    manifest = json.loads(raw)
    files = tuple(
        RemoteFile(path=d["digest"], size=d.get("size"), sha256=Digest(d["digest"]).hex)
        for d in [manifest.get("config", {}), *manifest.get("layers", [])] if d.get("digest")
    )
    source = {
        "ref": entry.ref, "from": "registry", "registry": name.registry, "repository": name.repository,
        "tag": name.tag, "digest": digest, "index_digest": index_digest, "platform": platform,
        "referrers": None if entry.referrers else False,
    }
    return Resolved(artifact_id, "image", {k: v for k, v in source.items() if v is not None}, files)


def _referrers(client: RegistryClient, repository: str, source: ImageSource, digest: str, ctx: FetchContext) -> tuple[list[Referrer], list[str]]:
    """The image's referrers (of its platform manifest and of its index), pulled into the cache."""
    records: list[Referrer] = []
    blobs: list[str] = []
    for subject in dict.fromkeys(d for d in (digest, source.index_digest) if d):
        found_all = with_transient_retries(f"images/{source.ref}: referrers", attempts=ctx.attempts, action=lambda s=subject: referrers.discover(client, repository, s))
        for found in found_all:
            pulled = with_transient_retries(f"images/{source.ref}: referrer {found.digest[:19]}", attempts=ctx.attempts, action=lambda f=found: referrers.pull(client, repository, f, store=ctx.cache.store))
            records.append(Referrer(
                digest=found.digest, media_type=found.media_type, size=len(found.raw), subject=found.subject, tag=found.tag,
                artifact_type=found.artifact_type, blobs=pulled[1:],
            ))
            blobs += [b for b in pulled if b not in blobs]
    return records, blobs


def still_sound(cached: Artifact, ctx: FetchContext) -> bool:
    """Whether a cached image record may be reused: an engine image's must name only checked layers."""
    return cached.source.from_ != "docker" or engine_record_is_sound(cached, ctx)


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Pull the image's manifest, config and layers into the cache (or stream it out of the engine)."""
    if resolved.source.from_ == "docker":
        return fetch_engine(resolved, ctx)
    source = resolved.source
    name = parse_image(source.ref)
    client = RegistryClient(name.api_host, registry=name.registry, insecure=ctx.plain_http(name.api_host))
    store = ctx.cache.store
    try:
        raw, media_type, digest = with_transient_retries(resolved.artifact_id, attempts=ctx.attempts, action=lambda: client.get_manifest(name.repository, source.digest))
        manifest_blob = store.put_bytes(raw)
        manifest = json.loads(raw)
        descriptors = [manifest["config"], *manifest.get("layers", [])]

        def pull(descriptor: dict[str, Any]) -> None:
            size = descriptor.get("size")  # checked at resolve (check_listing): this manifest is the same, by digest
            if ranged.worth_ranges(size):
                # A large layer: parallel ranges, each taking its own host slot (so this holds none:
                # holding one while its ranges wait for slots would deadlock at a small per-host cap).
                got = client.pull_blob_ranged(name.repository, descriptor["digest"], store=store, size=size, on_bytes=ctx.on_bytes, attempts=ctx.attempts)
                if got is not None:
                    return
            with host_slot(name.api_host):
                with_transient_retries(
                    f"{resolved.artifact_id}: blob {descriptor['digest'][:19]}", attempts=ctx.attempts,
                    action=lambda: client.pull_blob(name.repository, descriptor["digest"], store=store, on_bytes=ctx.on_bytes, size=size),
                )

        bounded_map(pull, descriptors, workers=min(4, ctx.max_parallel_files))
        carried, referrer_blobs = _referrers(client, name.repository, source, digest, ctx) if source.referrers is not False else ([], [])
    finally:
        client.close()
    config = json.loads(store.blob_path(Digest(manifest["config"]["digest"]).hex).read_bytes())
    # diff_id -> compressed blob, so an engine image built FROM this one references these blobs.
    LayerIndex(ctx.cache.root, store).learn(manifest, config)
    platform = config_platform(config)
    info = ImageInfo(
        ref=source.ref, digest=digest, platform=platform, media_type=media_type or manifest.get("mediaType", ""),
        size=len(raw) + sum(d["size"] for d in descriptors), config=manifest["config"]["digest"],
        layers=[d["digest"] for d in manifest.get("layers", [])], index_digest=source.index_digest,
        repository=name.repository, tag=name.tag, referrers=carried or None,
    )
    blobs = [f"sha256:{manifest_blob.sha256}", *(d["digest"] for d in descriptors)]
    blobs += [b for b in referrer_blobs if b not in blobs]
    # A Docker v2 manifest also travels in its OCI form, which the bundle's index.json names (OCI tools).
    converted = oci_form(raw)
    if converted is not None:
        blobs.append(f"sha256:{store.put_bytes(converted).sha256}")
    return ImageArtifact(id=resolved.artifact_id, kind="image", source=source, image=info, blobs=blobs)

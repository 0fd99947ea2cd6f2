"""`images:` entries: from a registry (default) or saved from the local Docker engine.

Registry images keep their exact manifest bytes, so the digest a job pins upstream is the digest
it pulls inside the gap. Layers and configs land in the same blob store as every other file, so a
base layer shared by several images (or already in an earlier bundle) is stored once.
"""

from __future__ import annotations

import json
import os
import tarfile
from typing import Any

from airlift.bundle.manifest import Artifact, ImageInfo
from airlift.config.spec import ImageRef, image_ref
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.oci.client import INDEX_TYPES, RegistryClient, choose_platform
from airlift.oci.reference import parse_image
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import CHUNK, IterReader
from airlift.util.net import bounded_map, host_slot, with_transient_retries

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def resolve(entry: str | ImageRef, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """Pin an image to its manifest digest for the spec's platform (registry), or its image id (engine)."""
    entry = image_ref(entry)
    platform = entry.platform or ctx.platform
    if entry.from_ == "docker":
        return _resolve_engine(entry, artifact_id, platform)
    name = parse_image(entry.ref)
    client = RegistryClient(name.api_host, registry=name.registry)
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
        RemoteFile(path=d["digest"], size=d.get("size"), sha256=d["digest"].removeprefix("sha256:"))
        for d in [manifest.get("config", {}), *manifest.get("layers", [])] if d.get("digest")
    )
    source = {
        "ref": entry.ref, "from": "registry", "registry": name.registry, "repository": name.repository,
        "tag": name.tag, "digest": digest, "index_digest": index_digest, "platform": platform,
    }
    return Resolved(artifact_id, "image", {k: v for k, v in source.items() if v is not None}, files)


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Pull the image's manifest, config and layers into the cache (or stream it out of the engine)."""
    if resolved.source.from_ == "docker":
        return _fetch_engine(resolved, ctx)
    source = resolved.source
    name = parse_image(source.ref)
    client = RegistryClient(name.api_host, registry=name.registry)
    store = ctx.cache.store
    try:
        raw, media_type, digest = with_transient_retries(resolved.artifact_id, attempts=ctx.attempts, action=lambda: client.get_manifest(name.repository, source.digest))
        manifest_blob = store.put_bytes(raw)
        manifest = json.loads(raw)
        descriptors = [manifest["config"], *manifest.get("layers", [])]

        def pull(descriptor: dict[str, Any]) -> None:
            with host_slot(name.api_host):
                _pull(descriptor)

        def _pull(descriptor: dict[str, Any]) -> None:
            with_transient_retries(
                f"{resolved.artifact_id}: blob {descriptor['digest'][:19]}", attempts=ctx.attempts,
                action=lambda: client.pull_blob(name.repository, descriptor["digest"], store=store, on_bytes=ctx.on_bytes),
            )

        bounded_map(pull, descriptors, workers=min(4, ctx.max_parallel_files))
    finally:
        client.close()
    config = json.loads(store.blob_path(manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
    platform = "/".join(p for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p)
    info = ImageInfo(
        ref=source.ref, digest=digest, platform=platform, media_type=media_type or manifest.get("mediaType", ""),
        size=len(raw) + sum(d["size"] for d in descriptors), config=manifest["config"]["digest"],
        layers=[d["digest"] for d in manifest.get("layers", [])], index_digest=source.index_digest,
        repository=name.repository, tag=name.tag,
    )
    blobs = [f"sha256:{manifest_blob.sha256}", *(d["digest"] for d in descriptors)]
    return Artifact(id=resolved.artifact_id, kind="image", source=source, image=info, blobs=blobs)


# -- the local Docker engine ----------------------------------------------------------------------
def _engine():
    import docker

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise WorkError(f"cannot reach the Docker engine (DOCKER_HOST={os.environ.get('DOCKER_HOST', 'default')}): {exc}") from None


def _resolve_engine(entry: ImageRef, artifact_id: str, platform: str) -> Resolved:
    import docker

    client = _engine()
    try:
        image = client.images.get(entry.ref)
    except docker.errors.ImageNotFound:
        raise WorkError(f"{artifact_id}: image {entry.ref} is not in the local Docker engine") from None
    finally:
        client.close()
    name = parse_image(entry.ref)
    source = {"ref": entry.ref, "from": "docker", "image_id": image.id, "repository": name.repository, "tag": name.tag, "platform": platform}
    size = image.attrs.get("Size")  # uncompressed size, as `docker save` would write it
    return Resolved(artifact_id, "image", {k: v for k, v in source.items() if v is not None}, (RemoteFile(image.id, size),))


def _fetch_engine(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Stream `docker save` through the store (one pass, no tar on disk) and describe it as an OCI image."""
    store = ctx.cache.store
    client = _engine()
    try:
        stream = client.api.get_image(resolved.source.image_id, chunk_size=CHUNK)
        by_name: dict[str, tuple[str, int]] = {}
        small: dict[str, bytes] = {}
        with tarfile.open(fileobj=IterReader(stream), mode="r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                handle = archive.extractfile(member)
                assert handle is not None
                if member.name.endswith(".json") or member.name == "repositories" or member.name == "index.json" or member.name == "oci-layout":
                    small[member.name] = handle.read()
                    blob = store.put_bytes(small[member.name])
                else:
                    blob = store.put_stream(iter(lambda h=handle: h.read(CHUNK), b""))
                by_name[member.name] = (blob.sha256, blob.size)
                if ctx.on_bytes:
                    ctx.on_bytes(blob.size)
    finally:
        client.close()
    try:
        saved = json.loads(small["manifest.json"])[0]
        config_sha, config_size = by_name[saved["Config"]]
        layers = [by_name[layer] for layer in saved["Layers"]]
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"{resolved.artifact_id}: unexpected docker save layout ({exc})") from None
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{config_sha}", "size": config_size},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": f"sha256:{sha}", "size": size} for sha, size in layers],
    }
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_blob = store.put_bytes(raw)
    config = json.loads(store.blob_path(config_sha).read_bytes())
    platform = "/".join(p for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p)
    source = resolved.source
    info = ImageInfo(
        ref=source.ref, digest=f"sha256:{manifest_blob.sha256}", platform=platform, media_type=OCI_MANIFEST,
        size=len(raw) + config_size + sum(size for _, size in layers), config=f"sha256:{config_sha}",
        layers=[f"sha256:{sha}" for sha, _ in layers], repository=source.repository, tag=source.tag,
    )
    blobs = [f"sha256:{manifest_blob.sha256}", f"sha256:{config_sha}", *(f"sha256:{sha}" for sha, _ in layers)]
    return Artifact(id=resolved.artifact_id, kind="image", source=source, image=info, blobs=blobs)

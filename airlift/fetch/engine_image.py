"""`images:` entries with `from: docker`: saved from the local Docker engine, stored like a registry image.

`docker save` hands out layers uncompressed. Each layer whose diff_id the cache already holds as a
compressed blob (a registry image's base, see airlift/oci/dedup.py) is skipped and referenced by that
blob; each new one is gzip-compressed into the store as it streams. The synthesized OCI manifest then
names the same base blobs as the registry image, so the base is stored and shipped once.

A second record, keyed by the image id alone (`<cache>/engine/<id>.json`, naming the synthesized
manifest), lets a rebuild of an unchanged image (same id, under any tag or artifact id) read nothing
from the engine: the manifest blob is rehashed (it is small) and every blob it names must be in the
store with its size; else the image is saved again.
"""

from __future__ import annotations

import hashlib
import json
import tarfile

from airlift.bundle.manifest import Artifact, ImageArtifact, ImageInfo, parse_artifact
from airlift.bundle.oci_layout import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, config_platform
from airlift.config.spec import ImageRef
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.oci.dedup import LayerBlob, LayerIndex, gzip_layer
from airlift.oci.reference import parse_image
from airlift.util.errors import IntegrityError, WorkError
from airlift.util.fs import CHUNK, IterReader, write_bytes_atomic
from airlift.util.names import Digest
from airlift.util.settings import settings

MAX_CONFIG_BYTES = 64 << 20  # an image config is metadata: anything this large is not one


def _engine():
    import docker

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise WorkError(f"cannot reach the Docker engine (DOCKER_HOST={settings().docker_host or 'default'}): {exc}") from None


def resolve_engine(entry: ImageRef, *, artifact_id: str, platform: str, ctx: FetchContext) -> Resolved:
    """Pin an engine image to its image id; its files are what the cache can already name (for `plan`)."""
    import docker

    client = _engine()
    try:
        image = client.images.get(entry.ref)
    except docker.errors.ImageNotFound:
        raise WorkError(f"image {entry.ref} is not in the local Docker engine", artifact_id=artifact_id) from None
    finally:
        client.close()
    name = parse_image(entry.ref)
    source = {"ref": entry.ref, "from": "docker", "image_id": image.id, "repository": name.repository, "tag": name.tag, "platform": platform}
    recorded = _recorded(ctx, image.id)
    if recorded is not None:
        _, manifest = recorded
        files = tuple(RemoteFile(d["digest"], d["size"], Digest(d["digest"]).hex) for d in [manifest["config"], *manifest["layers"]])
    else:
        index = LayerIndex(ctx.cache.root, ctx.cache.store)
        known = [blob for blob in (index.lookup(d) for d in image.attrs.get("RootFS", {}).get("Layers", [])) if blob is not None]
        files = tuple(RemoteFile(b.digest, b.size, b.digest.hex) for b in known)
        # What is not known yet is sized only once compressed; with nothing known, the uncompressed size bounds it.
        files += (RemoteFile(image.id, None if known else image.attrs.get("Size")),)
    return Resolved(artifact_id, "image", {k: v for k, v in source.items() if v is not None}, files)


def _record_path(ctx: FetchContext, image_id: str):  # noqa: ANN202 - a Path
    return ctx.cache.layout.engine_record(Digest(image_id).hex)  # Digest(): ValueError unless a sha256 digest


def _recorded(ctx: FetchContext, image_id: str) -> tuple[bytes, dict] | None:
    """(manifest bytes, manifest) synthesized earlier for `image_id`, if every blob it names is still stored."""
    store = ctx.cache.store
    try:
        digest = json.loads(_record_path(ctx, image_id).read_bytes())["manifest"]
        raw = store.blob_path(Digest(digest).hex).read_bytes()
        if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
            return None
        manifest = json.loads(raw)
        if manifest["config"]["digest"] != image_id:
            return None
        for descriptor in [manifest["config"], *manifest["layers"]]:
            if not store.has(Digest(descriptor["digest"]).hex, descriptor["size"]):
                return None
        # Each layer must still be one the index has checked for its diff_id (records of older
        # versions may name a registry's unchecked claim): else the image is saved again.
        diff_ids = json.loads(store.blob_path(Digest(image_id).hex).read_bytes())["rootfs"]["diff_ids"]
        index = LayerIndex(ctx.cache.root, store)
        checked = [index.lookup(d, checked_only=True) for d in diff_ids]
        if [blob.digest if blob else None for blob in checked] != [layer["digest"] for layer in manifest["layers"]]:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return raw, manifest


def engine_record_is_sound(cached: Artifact, ctx: FetchContext) -> bool:
    """A cached engine-image artifact names the manifest `_recorded` still vouches for (checked layers only).

    Records written before layer claims were checked may name a registry's unchecked blob; the image
    is then saved again, and layers whose claims now check out are referenced, not stored again.
    """
    if not isinstance(cached, ImageArtifact):
        return False
    recorded = _recorded(ctx, cached.source.image_id)
    return recorded is not None and "sha256:" + hashlib.sha256(recorded[0]).hexdigest() == cached.image.digest


def fetch_engine(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Save the image from the engine, storing only layers the cache cannot already name, gzip-compressed."""
    source = resolved.source
    image_id = source.image_id
    recorded = _recorded(ctx, image_id)
    if recorded is None:
        recorded = _save(resolved, ctx)
        write_bytes_atomic(_record_path(ctx, image_id), json.dumps({"manifest": "sha256:" + hashlib.sha256(recorded[0]).hexdigest()}).encode())
    raw, manifest = recorded
    store = ctx.cache.store
    config = json.loads(store.blob_path(Digest(image_id).hex).read_bytes())
    platform = config_platform(config)
    descriptors = [manifest["config"], *manifest["layers"]]
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    info = ImageInfo(
        ref=source.ref, digest=digest, platform=platform, media_type=OCI_MANIFEST,
        size=len(raw) + sum(d["size"] for d in descriptors), config=image_id,
        layers=[d["digest"] for d in manifest["layers"]], repository=source.repository, tag=source.tag,
    )
    return ImageArtifact(id=resolved.artifact_id, kind="image", source=source, image=info, blobs=[digest, *(d["digest"] for d in descriptors)])


def _save(resolved: Resolved, ctx: FetchContext) -> tuple[bytes, dict]:
    """Stream `docker save` once (no tar on disk): keep the config, compress the layers nobody holds yet."""
    store = ctx.cache.store
    index = LayerIndex(ctx.cache.root, store)
    image_id = resolved.source.image_id
    image_hex = Digest(image_id).hex
    client = _engine()
    try:
        diff_ids = client.api.inspect_image(image_id).get("RootFS", {}).get("Layers", [])
        if any(index.lookup(d) is None for d in diff_ids):
            _learn_cached_images(ctx, index)
        # A registry's claim is decompressed and checked here, once, before the engine image relies on it.
        wanted = {Digest(d).hex for d in diff_ids if index.confirm(d) is None}
        produced: dict[str, LayerBlob] = {}
        config_raw: bytes | None = None
        stream = client.api.get_image(image_id, chunk_size=CHUNK)
        with tarfile.open(fileobj=IterReader(stream), mode="r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = member.name
                # Docker >= 25 saves an OCI layout (blobs/sha256/<diff_id> for layers); older ones <id>/layer.tar.
                blob_name = name.removeprefix("blobs/sha256/") if name.startswith("blobs/sha256/") else None
                if blob_name == image_hex or name == f"{image_hex}.json":
                    if member.size > MAX_CONFIG_BYTES:
                        raise IntegrityError(f"image config is {member.size} bytes", artifact_id=resolved.artifact_id)
                    handle = archive.extractfile(member)
                    assert handle is not None
                    config_raw = handle.read()
                    continue
                if (blob_name is not None and blob_name not in wanted) or (blob_name is None and not name.endswith("/layer.tar")):
                    continue  # a layer the cache holds, or save's own metadata: skipped unread by us
                handle = archive.extractfile(member)
                assert handle is not None
                diff_id, blob = gzip_layer(handle, store=store, on_bytes=ctx.on_bytes)
                made = LayerBlob(media_type=OCI_LAYER_GZIP, digest=f"sha256:{blob.sha256}", size=blob.size, checked=True)
                index.remember(diff_id, made)
                produced[diff_id] = index.lookup(diff_id, checked_only=True) or made
                wanted.discard(Digest(diff_id).hex)
    finally:
        client.close()
    if config_raw is None or hashlib.sha256(config_raw).hexdigest() != image_hex:
        raise IntegrityError(f"docker save did not yield the config of {image_id}", artifact_id=resolved.artifact_id)
    config_blob = store.put_bytes(config_raw)
    layers = []
    for diff_id in json.loads(config_raw).get("rootfs", {}).get("diff_ids", []):
        blob = produced.get(diff_id) or index.lookup(diff_id, checked_only=True)
        if blob is None:
            raise WorkError(f"docker save did not yield layer {diff_id}", artifact_id=resolved.artifact_id)
        layers.append(blob.descriptor())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": image_id, "size": config_blob.size},
        "layers": layers,
    }
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    store.put_bytes(raw)
    return raw, manifest


def _learn_cached_images(ctx: FetchContext, index: LayerIndex) -> None:
    """Learn diff_ids from every registry image the cache holds (records written before the map existed)."""
    records = ctx.cache.records_dir
    for path in sorted(records.glob("*.json")) if records.is_dir() else []:
        try:
            artifact = parse_artifact(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(artifact, ImageArtifact) and artifact.source.from_ == "registry":
            index.learn_image(artifact)

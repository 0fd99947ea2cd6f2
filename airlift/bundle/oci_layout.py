"""The bundle as an OCI image layout: `oci-layout` and `index.json` beside `blobs/sha256/`.

Both files are derived, never read back as truth: they are a pure function of the (signed) manifest
and of which blobs the bundle holds, so every writer of SHA256SUMS writes them first, SHA256SUMS pins
them, and verify regenerates them and compares bytes. Ingest never reads them: it reads the manifest.

Each image's manifest descriptor carries `org.opencontainers.image.ref.name` = the image reference as
written in the spec (the artifact id without `images/`), so `skopeo inspect oci:BUNDLE:<ref>` works.
An image is listed only when the bundle itself holds every blob of it (its manifest, config and
layers): a delta bundle lists the images it carries whole and leaves the rest to its lineage.

A registry image whose manifest is Docker v2 (schema 2) also carries its OCI form (`oci_form`), one
small extra blob in the artifact's `blobs`: OCI tools older than containers/image 5.26 (skopeo 1.9)
ignore index entries that are not OCI manifests. The index names that OCI form; its digest differs
from the upstream one, which `airlift ingest` keeps (it pushes the original bytes).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable

from airlift.bundle.manifest import ImageArtifact, Manifest
from airlift.util.names import Digest

OCI_LAYOUT = "oci-layout"
INDEX = "index.json"
LAYOUT_FILES = (OCI_LAYOUT, INDEX)
LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}\n'
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# Docker layer types and their OCI names (same bytes), as `skopeo copy --format oci` converts them.
OCI_LAYER_TYPES = {
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    OCI_LAYER_GZIP: OCI_LAYER_GZIP,
    OCI_LAYER_TAR: OCI_LAYER_TAR,
    OCI_LAYER_ZSTD: OCI_LAYER_ZSTD,
}
MAX_IMAGE_MANIFEST = 4 << 20
MAX_INDEX_BYTES = 64 << 20
REF_NAME = "org.opencontainers.image.ref.name"
ARTIFACT_ID = "io.airlift.artifact.id"

# containers/image (skopeo) accepts this grammar for the REF of `oci:PATH:REF` (its refRegexp, from
# the OCI annotation spec). Docker references fit it, except repositories with `__`, which are listed
# without a ref name (skopeo can then still address them by `@<index>` or as the only image).
_SEP = r"(?:[-._:@+]|--)"
_ALNUM = r"(?:[A-Za-z0-9]+)"
_COMPONENT = rf"(?:{_ALNUM}(?:{_SEP}{_ALNUM})*)"
REF_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


def config_platform(config: dict) -> str:
    """`os/architecture[/variant]` as an image config states it (the form `--platform` takes)."""
    return "/".join(str(p) for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p)


def ref_name(artifact: ImageArtifact) -> str | None:
    """The `org.opencontainers.image.ref.name` of an image artifact: its reference as written, if skopeo accepts it."""
    ref = artifact.image.ref
    return ref if REF_NAME_RE.match(ref) else None


def oci_form(raw: bytes) -> bytes | None:
    """The OCI image manifest equivalent to a Docker v2 schema 2 manifest (same config and layer blobs).

    Deterministic: the same Docker manifest bytes always give the same OCI bytes. None when `raw` is
    not a Docker v2 manifest, or names a layer type OCI has no name for.
    """
    try:
        body = json.loads(raw)
        if body.get("mediaType") != DOCKER_MANIFEST or body.get("schemaVersion") != 2:
            return None
        config = body["config"]
        if config.get("mediaType") != DOCKER_CONFIG:
            return None
        layers = []
        for layer in body.get("layers", []):
            converted = {"mediaType": OCI_LAYER_TYPES[layer["mediaType"]], "digest": str(layer["digest"]), "size": int(layer["size"])}
            if layer.get("urls"):
                converted["urls"] = [str(u) for u in layer["urls"]]
            layers.append(converted)
        out = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": str(config["digest"]), "size": int(config["size"])},
            "layers": layers,
        }
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return json.dumps(out, separators=(",", ":")).encode()


def _listed_manifest(artifact: ImageArtifact, read_blob: Callable[[str], bytes | None]) -> tuple[str, str] | None:
    """(media type, digest) the index names for an image: its own manifest, or the OCI form of a Docker one."""
    image = artifact.image
    if image.media_type != DOCKER_MANIFEST:
        return image.media_type, image.digest
    raw = read_blob(image.digest.hex)
    converted = oci_form(raw) if raw is not None else None
    if converted is not None:
        digest = "sha256:" + hashlib.sha256(converted).hexdigest()
        if digest in artifact.blobs:  # carried (and pinned by the signed manifest): name it
            return OCI_MANIFEST, digest
    return image.media_type, image.digest  # a bundle built before the OCI form existed


def _platform(value: str) -> dict[str, str]:
    os_, arch, *rest = value.split("/")
    return {"os": os_, "architecture": arch, **({"variant": rest[0]} if rest else {})}


def index_bytes(
    manifest: Manifest, *, blob_size: Callable[[str], int | None], read_blob: Callable[[str], bytes | None], only: set[str] | None = None,
) -> bytes:
    """The bundle's `index.json`: one manifest descriptor per image whose blobs are all in the bundle.

    Args:
        manifest: The bundle manifest (the only source of truth).
        blob_size: The size of a blob the bundle holds (hex digest), or None when it does not hold it.
        read_blob: The bytes of a small blob the bundle holds, verified against its name, or None.
        only: List only these artifact ids (verify's check of an index written where fewer blobs were).

    Returns:
        Deterministic JSON bytes (the same manifest and blobs give the same bytes on every host).
    """
    entries = []
    for artifact in manifest.artifacts:
        if not isinstance(artifact, ImageArtifact) or (only is not None and artifact.id not in only):
            continue
        image = artifact.image
        if any(blob_size(d) is None for d in artifact.all_blobs() | {image.digest.hex}):
            continue
        listed = _listed_manifest(artifact, read_blob)
        if listed is None:
            continue
        media_type, digest = listed
        annotations = {ARTIFACT_ID: artifact.id}
        name = ref_name(artifact)
        if name is not None:
            annotations[REF_NAME] = name
        entries.append({
            "mediaType": media_type,
            "digest": digest,
            "size": blob_size(Digest(digest).hex),
            "platform": _platform(image.platform),
            "annotations": annotations,
        })
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()


def layout_files(manifest: Manifest, *, blob_size: Callable[[str], int | None], read_blob: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """`{name: bytes}` of the two layout files, in the order they are written (before SHA256SUMS)."""
    return {OCI_LAYOUT: LAYOUT_BYTES, INDEX: index_bytes(manifest, blob_size=blob_size, read_blob=read_blob)}


def listed_ids(data: bytes) -> set[str] | None:
    """The artifact ids an `index.json` claims to list, or None when it is not an index this code writes."""
    if len(data) > MAX_INDEX_BYTES:
        return None
    try:
        entries = json.loads(data)["manifests"]
        ids = {entry["annotations"][ARTIFACT_ID] for entry in entries}
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    return ids if all(isinstance(i, str) for i in ids) and len(ids) == len(entries) else None

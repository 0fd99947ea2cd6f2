"""What images of one bundle share: the bytes of each image's blobs that other images also name.

Sizes come from the image manifests the bundle holds (their descriptors), else from the blob files,
so a delta bundle that lends a shared base to its lineage still reports it. Image manifests here are
read only as size hints for a report: nothing is loaded, pushed or trusted from them.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import ImageArtifact, Manifest
from airlift.util.names import Digest


class ImageSharing(BaseModel):
    """One image's blobs: total bytes, and the bytes (and images) it shares with other images."""

    total_bytes: int
    shared_bytes: int
    shared_with: list[str] = Field(default_factory=list)
    unknown_sizes: int = 0  # blobs neither in the bundle nor described by an image manifest it holds


def _descriptor_sizes(bundle: Bundle, manifest: Manifest) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for artifact in manifest.artifacts:
        if not isinstance(artifact, ImageArtifact):
            continue
        digest = artifact.image.digest.hex
        raw = bundle.read_small_blob(digest)
        if raw is None:
            continue  # absent or damaged (verify says so): a report just skips it
        try:
            body = json.loads(raw)
            for descriptor in [body["config"], *body.get("layers", [])]:
                if isinstance(descriptor.get("size"), int) and str(descriptor.get("digest", "")).startswith("sha256:"):
                    sizes[Digest(descriptor["digest"]).hex] = descriptor["size"]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue
        sizes[digest] = len(raw)
    return sizes


def image_sharing(bundle: Bundle, manifest: Manifest) -> dict[str, ImageSharing]:
    """`{artifact id: ImageSharing}` for every image artifact of `manifest`."""
    images = [a for a in manifest.artifacts if isinstance(a, ImageArtifact)]
    if not images:
        return {}
    hints = _descriptor_sizes(bundle, manifest)

    def size(digest: str) -> int | None:
        return hints.get(digest, bundle.blob_size(digest))

    owners: dict[str, set[str]] = {}
    for artifact in images:
        for digest in artifact.all_blobs():
            owners.setdefault(digest, set()).add(artifact.id)
    out = {}
    for artifact in images:
        total = shared = unknown = 0
        partners: set[str] = set()
        for digest in sorted(artifact.all_blobs()):
            bytes_ = size(digest)
            if bytes_ is None:
                unknown += 1
                continue
            total += bytes_
            others = owners[digest] - {artifact.id}
            if others:
                shared += bytes_
                partners |= others
        out[artifact.id] = ImageSharing(total_bytes=total, shared_bytes=shared, shared_with=sorted(partners), unknown_sizes=unknown)
    return out

"""What an ingest does, decided before anything runs: which sink gets which artifact, and how.

- every artifact with files goes to S3 when the site has `s3:`;
- every non-image artifact is materialized under `shared_root` when the site has one;
- images are pushed to the site registry one after another (so a base layer shared by several images is
  uploaded once and mounted, or found by HEAD, for the rest), each told which sibling repositories share
  its layers (`mount_from`);
- with `docker:`, each image is also loaded into the engine, tagged with its original reference and its
  air-gapped one.

The summary of what the sinks reported is typed too (`IngestSummary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from airlift.bundle.manifest import Artifact, FileArtifact, ImageArtifact, Manifest
from airlift.bundle.store import BlobStore
from airlift.config.site import Site
from airlift.ingest.docker import LoadReport
from airlift.ingest.registry import PushReport, airgap_ref, target_repository
from airlift.ingest.s3 import UploadReport
from airlift.ingest.sharedfs import MaterializeReport
from airlift.oci.reference import parse_image


@dataclass(frozen=True)
class ImagePush:
    artifact: ImageArtifact
    mount_from: list[str]


@dataclass(frozen=True)
class DockerLoad:
    artifact: ImageArtifact
    tags: list[str]


@dataclass
class IngestPlan:
    to_s3: list[Artifact] = field(default_factory=list)
    to_shared_root: list[FileArtifact] = field(default_factory=list)
    pushes: list[ImagePush] = field(default_factory=list)  # in push order
    loads: list[DockerLoad] = field(default_factory=list)


def docker_tags(artifact: ImageArtifact, site: Site) -> list[str]:
    """The tags an image is loaded under: its original reference (with its tag) and its air-gapped one."""
    tags = []
    name = parse_image(artifact.image.ref)
    if name.tag:
        ref = artifact.image.ref
        tags.append(ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:{name.tag}")
    if site.registry is not None:
        tags.append(airgap_ref(site.registry, artifact))
    return tags


def plan_ingest(manifest: Manifest, site: Site) -> IngestPlan:
    """Decide every sink action for `manifest` at `site` (see the module docstring)."""
    plan = IngestPlan()
    for artifact in manifest.artifacts:
        if site.s3 is not None and artifact.files:
            plan.to_s3.append(artifact)
        if site.shared_root is not None and isinstance(artifact, FileArtifact):
            plan.to_shared_root.append(artifact)
    images = [a for a in manifest.artifacts if isinstance(a, ImageArtifact)]
    for artifact in images:
        if site.registry is not None:
            mount_from = [
                target_repository(site.registry, other)[1] for other in images
                if other is not artifact and set(other.image.layers) & set(artifact.image.layers)
            ]
            plan.pushes.append(ImagePush(artifact, mount_from))
        if site.docker is not None and (tags := docker_tags(artifact, site)):
            plan.loads.append(DockerLoad(artifact, tags))
    return plan


class IngestSummary(BaseModel):
    """What `airlift ingest` did, summed over the sinks' reports."""

    artifacts: int
    s3_uploaded: int = 0
    s3_skipped: int = 0
    s3_bytes: int = 0
    materialized: int = 0
    materialized_skipped: int = 0
    images_pushed: int = 0
    images_present: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    images_loaded: int = 0
    image_refs: dict[str, str] = {}
    # v1.1 (`ingest --json`): one row per artifact and sink, with that sink's report.
    results: list[dict[str, Any]] = []

    @classmethod
    def of(cls, *, artifacts: int, reports: Sequence[object], labels: Sequence[str] | None = None) -> IngestSummary:
        pushes = [r for r in reports if isinstance(r, PushReport)]
        loads = [r for r in reports if isinstance(r, LoadReport)]
        uploads = [r for r in reports if isinstance(r, UploadReport)]
        placed = [r for r in reports if isinstance(r, MaterializeReport)]
        return cls(
            artifacts=artifacts,
            s3_uploaded=sum(r.uploaded for r in uploads), s3_skipped=sum(r.skipped for r in uploads), s3_bytes=sum(r.bytes for r in uploads),
            materialized=sum(1 for r in placed if not r.skipped), materialized_skipped=sum(1 for r in placed if r.skipped),
            images_pushed=sum(1 for r in pushes if not r.already_present), images_present=sum(1 for r in pushes if r.already_present),
            blobs_uploaded=sum(r.uploaded for r in pushes), blobs_mounted=sum(r.mounted for r in pushes),
            blobs_skipped=sum(r.skipped for r in pushes), images_loaded=sum(1 for r in loads if r.loaded),
            image_refs={r.image: r.target for r in pushes},
            results=[] if labels is None else [{"artifact": a, "sink": _SINKS[type(r)]} | asdict(r) for a, r in zip(labels, reports, strict=True)],  # type: ignore[call-overload]
        )


_SINKS: dict[type, str] = {UploadReport: "s3", MaterializeReport: "shared_root", PushReport: "registry", LoadReport: "docker"}


def keep_in_store(manifest: Manifest, bundle_root: Path, store_root: Path) -> int:
    """(v1.1) Give the site's `store:` every blob of a verified bundle (hard links where possible), so the
    site's inventory can offer them and a later delta computed from that inventory finds them there.

    Returns:
        How many blobs the store gained.
    """
    own, store = BlobStore(bundle_root), BlobStore(store_root)
    gained = 0
    for digest in sorted(manifest.all_blobs()):
        if own.has(digest) and not store.has(digest):
            own.link_blob_to(store, digest)
            gained += 1
    return gained

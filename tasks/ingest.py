"""Ingest tasks: one per artifact and sink (S3 upload, shared-filesystem materialization)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from airlift_tasks.common import ProgressLog
from prefect import task
from prefect.cache_policies import NONE

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Artifact, ImageArtifact, Manifest
from airlift.bundle.store import BlobStore
from airlift.config.site import RegistryTarget, S3Target
from airlift.ingest import s3 as s3_sink
from airlift.ingest.docker import LoadReport, load_image
from airlift.ingest.registry import PushReport, push_image
from airlift.ingest.sharedfs import MaterializeReport, materialize
from airlift.layouts.state import IngestStateLayout


def _blob_locator(bundle: str, store: str | None) -> Callable[[str], Path]:
    """Blob paths as Bundle.locate_blob lends them (the bundle's own, else `store`'s for what a delta lacks)."""
    opened, lender = Bundle(bundle), (BlobStore(Path(store)) if store else None)
    return lambda digest: opened.locate_blob(digest, lender)[0]


@task(
    name="upload-s3",
    task_run_name="s3 {artifact.id}",
    cache_policy=NONE,  # `client` is live (one per run, made by the flow), not a cacheable input
)
def upload_to_s3(*, bundle: str, store: str | None, artifact: Artifact, target: S3Target, client: Any) -> s3_sink.UploadReport:
    """Upload one artifact's files with the run's client; objects whose size and sha256 metadata match are skipped."""
    return s3_sink.upload_artifact(
        client, bucket=target.bucket, prefix=target.prefix, artifact=artifact,
        blob_path=_blob_locator(bundle, store), state_dir=IngestStateLayout.default().s3_uploads,
        on_bytes=ProgressLog(f"s3 {artifact.id}", artifact.total_bytes),
    )


@task(name="materialize", task_run_name="shared_root {artifact.id}")
def materialize_artifact(*, bundle: str, store: str | None, artifact: Artifact, shared_root: str) -> MaterializeReport:
    """Place one artifact under shared_root in the layout its tools read."""
    return materialize(Path(shared_root), artifact, blob_path=_blob_locator(bundle, store))


@task(
    name="push-image",
    task_run_name="push {artifact.id}",
)
def push_to_registry(*, bundle: str, store: str | None, artifact: ImageArtifact, target: RegistryTarget, mount_from: list[str]) -> PushReport:
    """Push one image to the site registry with its upstream digest unchanged."""
    return push_image(
        artifact, target=target, blob_path=_blob_locator(bundle, store), state_dir=IngestStateLayout.default().registry_uploads,
        mount_from=mount_from, on_bytes=ProgressLog(f"push {artifact.id}", artifact.image.size),
    )


@task(name="docker-load", task_run_name="docker load {artifact.id}")
def load_into_docker(*, bundle: str, store: str | None, artifact: ImageArtifact, docker_host: str, tags: list[str]) -> LoadReport:
    """Stream one image into a Docker engine, tagged with its original and air-gapped references."""
    return load_image(artifact, docker_host=docker_host, blob_path=_blob_locator(bundle, store), tags=tags)


@task(name="keep-in-store")
def keep_in_store_task(*, bundle: str, store: str, manifest: Manifest) -> int:
    """(v1.1) The site's store keeps a verified bundle's blobs: what its inventory offers the next delta."""
    from airlift.ingest.plan import keep_in_store

    return keep_in_store(manifest, Path(bundle), Path(store))

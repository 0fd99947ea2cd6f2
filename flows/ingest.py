"""ingest-bundle: verify, then upload to S3 and materialize under shared_root, per the site profile."""

from __future__ import annotations

from prefect import flow, get_run_logger

from airlift.config.site import load_site
from airlift.ingest.docker import LoadReport
from airlift.ingest.registry import PushReport, airgap_ref, target_repository
from airlift.ingest.s3 import UploadReport
from airlift.ingest.sharedfs import MaterializeReport
from airlift.oci.reference import parse_image
from airlift.util.errors import WorkError
from flows._util import gather
from tasks.bundle import open_trusted, verify
from tasks.ingest import load_into_docker, materialize_artifact, push_to_registry, upload_to_s3


@flow(name="ingest-bundle", log_prints=True)
def ingest_bundle(bundle: str, site: str, pubkeys: list[str] | None = None) -> dict:
    """Verify `bundle`, then load it into the sinks that `site` names (S3, shared_root).

    Args:
        bundle: Bundle directory (inside the air gap).
        site: Path to the site profile (site.yaml).
        pubkeys: Trusted Ed25519 public keys, in addition to the site's `trust.keys`.
    """
    profile = load_site(site)
    store = str(profile.store) if profile.store else None
    keys = [*(pubkeys or []), *(str(k) for k in (profile.trust.keys if profile.trust else []))]
    opened = open_trusted(bundle=bundle, pubkeys=keys)  # read once: what is verified is what is ingested
    report = verify(bundle=bundle, store=store, opened=opened)
    if not report.ok:
        raise WorkError("bundle failed verification: " + "; ".join(p.describe() for p in report.problems))
    manifest = opened.manifest
    logger = get_run_logger()
    summary: dict = {"artifacts": len(manifest.artifacts)}
    futures, labels = [], []
    for artifact in manifest.artifacts:
        if profile.s3 is not None and artifact.files:
            futures.append(upload_to_s3.submit(bundle=bundle, store=store, artifact=artifact, target=profile.s3))
            labels.append(artifact.id)
        if profile.shared_root is not None and artifact.image is None:  # images go to the registry
            futures.append(materialize_artifact.submit(bundle=bundle, store=store, artifact=artifact, shared_root=str(profile.shared_root)))
            labels.append(artifact.id)
    images = [a for a in manifest.artifacts if a.image is not None]
    previous = None
    for artifact in images:
        if profile.registry is not None:
            # Pushed one after another, so a base layer shared by several images is uploaded once and
            # mounted (or found by HEAD) for the rest.
            others = [target_repository(profile.registry, other)[1] for other in images if other is not artifact and set(other.image.layers) & set(artifact.image.layers)]
            previous = push_to_registry.submit(
                bundle=bundle, store=store, artifact=artifact, target=profile.registry, mount_from=others,
                wait_for=[previous] if previous is not None else None,
            )
            futures.append(previous)
            labels.append(artifact.id)
        if profile.docker is not None:
            tags = []
            name = parse_image(artifact.image.ref)
            if name.tag:
                tags.append(artifact.image.ref if ":" in artifact.image.ref.rsplit("/", 1)[-1] else f"{artifact.image.ref}:{name.tag}")
            if profile.registry is not None:
                tags.append(airgap_ref(profile.registry, artifact))
            if tags:
                futures.append(load_into_docker.submit(bundle=bundle, store=store, artifact=artifact, docker_host=profile.docker.host, tags=tags))
                labels.append(artifact.id)
    results = gather(futures, labels)
    pushes = [r for r in results if isinstance(r, PushReport)]
    loads = [r for r in results if isinstance(r, LoadReport)]
    summary["images_pushed"] = sum(1 for r in pushes if not r.already_present)
    summary["images_present"] = sum(1 for r in pushes if r.already_present)
    summary["blobs_uploaded"] = sum(r.uploaded for r in pushes)
    summary["blobs_mounted"] = sum(r.mounted for r in pushes)
    summary["blobs_skipped"] = sum(r.skipped for r in pushes)
    summary["images_loaded"] = sum(1 for r in loads if r.loaded)
    summary["image_refs"] = {r.image: r.target for r in pushes}
    uploads = [r for r in results if isinstance(r, UploadReport)]
    placed = [r for r in results if isinstance(r, MaterializeReport)]
    summary["s3_uploaded"] = sum(r.uploaded for r in uploads)
    summary["s3_skipped"] = sum(r.skipped for r in uploads)
    summary["s3_bytes"] = sum(r.bytes for r in uploads)
    summary["materialized"] = sum(1 for r in placed if not r.skipped)
    summary["materialized_skipped"] = sum(1 for r in placed if r.skipped)
    logger.info("ingest: %s", summary)
    return summary

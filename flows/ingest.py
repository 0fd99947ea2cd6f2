"""ingest-bundle: verify, then upload to S3 and materialize under shared_root, per the site profile."""

from __future__ import annotations

from airlift_flows._util import gather
from airlift_tasks.bundle import open_trusted, verify
from airlift_tasks.ingest import (
    keep_in_store_task,
    load_into_docker,
    materialize_artifact,
    push_to_registry,
    upload_to_s3,
)
from prefect import flow, get_run_logger

from airlift.config.site import load_site
from airlift.ingest.plan import IngestSummary, plan_ingest
from airlift.util.errors import WorkError


@flow(name="ingest-bundle", log_prints=True)
def ingest_bundle(bundle: str, site: str, pubkeys: list[str] | None = None) -> IngestSummary:
    """Verify `bundle`, then load it into the sinks that `site` names (S3, shared_root).

    Args:
        bundle: Bundle directory (inside the air gap).
        site: Path to the site profile (site.yaml).
        pubkeys: Trusted Ed25519 public keys, in addition to the site's `trust.keys`.
    """
    profile = load_site(site)
    store = str(profile.store) if profile.store else None
    keys = profile.trusted_keys(extra=pubkeys)
    opened = open_trusted(bundle=bundle, pubkeys=keys)  # read once: what is verified is what is ingested
    report = verify(bundle=bundle, store=store, opened=opened)
    if not report.ok:
        raise WorkError("bundle failed verification: " + "; ".join(p.describe() for p in report.problems))
    if store:  # v1.1: the store keeps what was verified, so the site's inventory can offer it to the next delta
        keep_in_store_task(bundle=bundle, store=store, manifest=opened.manifest)
    plan = plan_ingest(opened.manifest, profile)
    futures, labels = [], []
    for artifact in plan.to_s3:
        futures.append(upload_to_s3.submit(bundle=bundle, store=store, artifact=artifact, target=profile.s3))
        labels.append(artifact.id)
    for artifact in plan.to_shared_root:
        futures.append(materialize_artifact.submit(bundle=bundle, store=store, artifact=artifact, shared_root=str(profile.shared_root)))
        labels.append(artifact.id)
    previous = None
    for push in plan.pushes:  # one after another: shared layers are uploaded once, then mounted
        previous = push_to_registry.submit(
            bundle=bundle, store=store, artifact=push.artifact, target=profile.registry, mount_from=push.mount_from,
            wait_for=[previous] if previous is not None else None,
        )
        futures.append(previous)
        labels.append(push.artifact.id)
    for load in plan.loads:
        futures.append(load_into_docker.submit(bundle=bundle, store=store, artifact=load.artifact, docker_host=profile.docker.host, tags=load.tags))
        labels.append(load.artifact.id)
    summary = IngestSummary.of(artifacts=len(opened.manifest.artifacts), reports=gather(futures, labels))
    get_run_logger().info("ingest: %s", summary.model_dump())
    return summary

"""ingest-bundle: verify, then upload to S3 and materialize under shared_root, per the site profile."""

from __future__ import annotations

from airlift_flows._util import gather
from airlift_tasks.bundle import verify
from airlift_tasks.ingest import (
    keep_in_store_task,
    load_into_docker,
    materialize_artifact,
    push_to_registry,
    upload_to_s3,
)
from prefect import flow, get_run_logger

from airlift.ingest import rollback
from airlift.ingest.plan import IngestSummary, plan_ingest
from airlift.ingest.prepare import prepare_ingest
from airlift.util import s3 as s3_util
from airlift.util.errors import WorkError


@flow(name="ingest-bundle", log_prints=True)
def ingest_bundle(bundle: str, site: str, pubkeys: list[str] | None = None, allow_older: bool = False) -> IngestSummary:
    """Verify `bundle`, then load it into the sinks that `site` names (S3, shared_root).

    Args:
        bundle: Bundle directory (inside the air gap).
        site: Path to the site profile (site.yaml).
        pubkeys: Trusted Ed25519 public keys, in addition to the site's trust.keys.
        allow_older: Ingest a bundle older than the site's high-water mark for its name (recorded).
    """
    # The same core call the CLI made: site, keys and the manifest (signature checked), read once here;
    # what is verified is what is ingested.
    prepared = prepare_ingest(bundle, site, pubkeys)
    profile, opened, store = prepared.site, prepared.opened, prepared.store
    if profile.shared_root:  # a rollback is refused before anything is written (airlift/ingest/rollback.py)
        rollback.check(profile.shared_root, opened.manifest, opened.sha256, origin=bundle, allow_older=allow_older)
    report = verify(bundle=bundle, store=store, opened=opened)
    if not report.ok:
        raise WorkError("bundle failed verification: " + "; ".join(p.describe() for p in report.problems))
    if store:  # v1.1: the store keeps what was verified, so the site's inventory can offer it to the next delta
        keep_in_store_task(bundle=bundle, store=store, manifest=opened.manifest)
    plan = plan_ingest(opened.manifest, profile)
    futures, labels = [], []
    if plan.to_s3:
        # One client and one bucket check for the run, not one per artifact.
        client = s3_util.client(profile.s3.endpoint_url, profile.s3.region)
        s3_util.ensure_bucket(client, profile.s3.bucket)
        for artifact in plan.to_s3:
            futures.append(upload_to_s3.submit(bundle=bundle, store=store, artifact=artifact, target=profile.s3, client=client))
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
    summary = IngestSummary.of(artifacts=len(opened.manifest.artifacts), reports=gather(futures, labels), labels=labels)
    if profile.shared_root:
        rollback.record(profile.shared_root, opened.manifest, opened.sha256)
    get_run_logger().info("ingest: %s", summary.model_dump(exclude={"results"}))
    return summary

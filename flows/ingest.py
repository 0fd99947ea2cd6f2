"""ingest-bundle: verify, then upload to S3 and materialize under shared_root, per the site profile."""

from __future__ import annotations

from prefect import flow, get_run_logger

from airlift.bundle import Bundle
from airlift.errors import WorkError
from airlift.site import load_site
from flows._util import gather
from tasks.bundle import verify
from tasks.ingest import materialize_artifact, upload_to_s3


@flow(name="ingest-bundle", log_prints=True)
def ingest_bundle(bundle: str, site: str) -> dict:
    """Verify `bundle`, then load it into the sinks that `site` names (S3, shared_root).

    Args:
        bundle: Bundle directory (inside the air gap).
        site: Path to the site profile (site.yaml).
    """
    profile = load_site(site)
    store = str(profile.store) if profile.store else None
    report = verify(bundle=bundle, store=store)
    if not report.ok:
        raise WorkError("bundle failed verification: " + "; ".join(p.describe() for p in report.problems))
    manifest = Bundle(bundle).read_manifest()
    logger = get_run_logger()
    summary: dict = {"artifacts": len(manifest.artifacts)}
    futures, labels = [], []
    for artifact in manifest.artifacts:
        if profile.s3 is not None and artifact.files:
            futures.append(upload_to_s3.submit(bundle=bundle, store=store, artifact=artifact, target=profile.s3))
            labels.append(artifact.id)
        if profile.shared_root is not None:
            futures.append(materialize_artifact.submit(bundle=bundle, store=store, artifact=artifact, shared_root=str(profile.shared_root)))
            labels.append(artifact.id)
    results = gather(futures, labels)
    uploads = [r for r in results if hasattr(r, "uploaded")]
    placed = [r for r in results if hasattr(r, "location")]
    summary["s3_uploaded"] = sum(r.uploaded for r in uploads)
    summary["s3_skipped"] = sum(r.skipped for r in uploads)
    summary["s3_bytes"] = sum(r.bytes for r in uploads)
    summary["materialized"] = sum(1 for r in placed if not r.skipped)
    summary["materialized_skipped"] = sum(1 for r in placed if r.skipped)
    logger.info("ingest: %s", summary)
    return summary

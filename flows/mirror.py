"""mirror-refresh: on a schedule, re-resolve floating references and write a delta bundle only when
something upstream changed, saying so either way."""

from __future__ import annotations

from pathlib import Path

from airlift_flows.build import fetch_all, resolve_all
from airlift_flows.transfer import transfer_bundle
from airlift_tasks.build import assemble
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from airlift.config.spec import load_spec
from airlift.fetch.bundle_writer import resolution_digest
from airlift.fetch.cache import Cache
from airlift.fetch.mirror import MirrorResult, complete, plan_refresh


@flow(name="mirror-refresh", log_prints=True)
def mirror_refresh(spec: str, bundles_dir: str, transfer_to: str | None = None, max_parallel_files: int = 8) -> MirrorResult:
    """Re-resolve `spec`; when anything changed since the newest bundle in `bundles_dir`, write a delta.

    Args:
        spec: Path to the spec (airgap.yaml; relative: in the worker's directory), with floating references (branches, tags, latest).
        bundles_dir: Directory of this mirror's bundles, named after the spec and the UTC time.
        transfer_to: Optional destination for a new bundle (path, ssh:// or s3://).
        max_parallel_files: Parallel file downloads inside one artifact.
    """
    parsed = load_spec(spec)
    cache_dir = str(Cache().root)
    resolved = resolve_all(parsed, cache_dir)
    resolution = resolution_digest([(r.artifact_id, r.cache_key) for r in resolved])
    plan = plan_refresh(Path(bundles_dir), parsed.name, resolution=resolution)
    since = str(plan.since) if plan.since else None
    if plan.target is None:
        result = MirrorResult(changed=False, since=since)
        summary = result.summary()
    else:
        # A refresh that failed half way left a `.partial` bundle: the plan resumes that one (its blobs are kept).
        artifacts = fetch_all(resolved, cache_dir, max_parallel_files)
        built = assemble(spec=parsed, artifacts=artifacts, out=str(plan.target), cache_dir=cache_dir, since=since, resolution=resolution)
        final = complete(plan.target)
        result = MirrorResult(changed=True, bundle=str(final), since=since, blobs_written=built.blobs_written)
        summary = result.summary()
        if transfer_to:
            transfer_bundle(src=str(final), dest=transfer_to)
            summary += f" Transferred to `{transfer_to}`."
    get_run_logger().info(summary)
    create_markdown_artifact(markdown=f"# Mirror refresh: {parsed.name}\n\n{summary}\n", key="mirror-refresh", description="mirror-refresh outcome")
    return result

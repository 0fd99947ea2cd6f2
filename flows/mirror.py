"""mirror-refresh: on a schedule, re-resolve floating references and write a delta bundle only when
something upstream changed, saying so either way."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from airlift.bundle.layout import Bundle
from airlift.config.spec import load_spec
from airlift.fetch.assemble import resolution_digest
from airlift.fetch.cache import Cache
from airlift.fetch.mirror import MirrorResult, final_name, mirror_state, next_bundle_dir
from flows.build import fetch_all, resolve_all
from flows.transfer import transfer_bundle
from tasks.build import assemble


@flow(name="mirror-refresh", log_prints=True)
def mirror_refresh(spec: str, bundles_dir: str, transfer_to: str | None = None, max_parallel_files: int = 8) -> MirrorResult:
    """Re-resolve `spec`; when anything changed since the newest bundle in `bundles_dir`, write a delta.

    Args:
        spec: Path to the spec (airgap.yaml), with floating references (branches, tags, `latest`).
        bundles_dir: Directory of this mirror's bundles, named `<spec name>-<UTC time>`.
        transfer_to: Optional destination for a new bundle (path, ssh:// or s3://).
        max_parallel_files: Parallel file downloads inside one artifact.
    """
    logger = get_run_logger()
    parsed = load_spec(spec)
    cache_dir = str(Cache().root)
    directory = Path(bundles_dir)
    resolved = resolve_all(parsed, cache_dir)
    resolution = resolution_digest([(r.artifact_id, r.cache_key) for r in resolved])
    newest = mirror_state(directory, parsed.name).newest
    if newest is not None and Bundle(newest).read_manifest().resolution == resolution:
        message = f"Nothing changed upstream since `{newest.name}`: no bundle written."
        logger.info(message)
        create_markdown_artifact(markdown=f"# Mirror refresh: {parsed.name}\n\n{message}\n", key="mirror-refresh", description="mirror-refresh outcome")
        return MirrorResult(changed=False, since=str(newest))

    # A refresh that failed half way left a `.partial` bundle: finish that one (its blobs are kept).
    target = next_bundle_dir(directory, parsed.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    artifacts = fetch_all(resolved, cache_dir, max_parallel_files)
    result = assemble(spec=parsed, artifacts=artifacts, out=str(target), cache_dir=cache_dir, since=str(newest) if newest else None, resolution=resolution)
    final = final_name(target)
    os.replace(target, final)
    summary = f"New bundle `{final.name}`: {result.blobs_written} blobs written" + (f", a delta since `{newest.name}`" if newest else "") + "."
    if transfer_to:
        transfer_bundle(src=str(final), dest=transfer_to)
        summary += f" Transferred to `{transfer_to}`."
    logger.info(summary)
    create_markdown_artifact(markdown=f"# Mirror refresh: {parsed.name}\n\n{summary}\n", key="mirror-refresh", description="mirror-refresh outcome")
    return MirrorResult(changed=True, bundle=str(final), since=str(newest) if newest else None, blobs_written=result.blobs_written)

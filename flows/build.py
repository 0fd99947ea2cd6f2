"""build-bundle: resolve → fetch (one task per artifact) → assemble."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from airlift.cache import Cache
from airlift.spec import load_spec
from flows._util import gather
from tasks.build import assemble, fetch_artifact, resolve_artifact


@flow(name="build-bundle", task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True)
def build_bundle(spec: str, out: str, since: str | None = None, max_parallel_files: int = 8) -> dict:
    """Build (or complete) the bundle for `spec` at `out`; with `since`, write only blobs OLD lacks.

    Args:
        spec: Path to the spec (airgap.yaml).
        out: Bundle directory to write or complete.
        since: An older bundle; the new one is a delta that carries only blobs the old one lacks.
        max_parallel_files: Parallel file downloads inside one artifact.
    """
    parsed = load_spec(spec)
    cache_dir = str(Cache().root)
    ids = parsed.artifact_ids()
    entries = [entry for _, entry in parsed.entries()]
    resolving = [resolve_artifact.submit(artifact_id=i, entry=e, cache_dir=cache_dir, platform=parsed.platform) for i, e in zip(ids, entries, strict=True)]
    resolved = gather(resolving, ids)
    fetching = [fetch_artifact.submit(resolved=r, cache_dir=cache_dir, max_parallel_files=max_parallel_files) for r in resolved]
    artifacts = gather(fetching, ids)
    result = assemble(spec=parsed, artifacts=artifacts, out=str(Path(out)), cache_dir=cache_dir, since=since)
    get_run_logger().info("bundle %s: %d artifacts, %d files, %d bytes", out, result.artifacts, result.files, result.bytes)
    return result.__dict__

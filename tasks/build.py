"""Build tasks: one task per artifact to resolve it and one to fetch it, then one to assemble the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airlift_tasks.common import ProgressLog
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE

from airlift.bundle.manifest import Artifact
from airlift.config.spec import Spec
from airlift.fetch.base import FetchContext, Resolved
from airlift.fetch.bundle_writer import BuildResult, assemble_bundle
from airlift.fetch.cache import Cache
from airlift.fetch.kinds import fetch_resolved, resolve_entry


@task(
    name="resolve-artifact",
    task_run_name="resolve {artifact_id}",
)
def resolve_artifact(*, artifact_id: str, entry: Any, cache_dir: str, platform: str = "linux/amd64") -> Resolved:
    """Pin one spec entry to exact upstream content (commit, digest, ETag). Fetches no content."""
    return resolve_entry(entry, artifact_id=artifact_id, ctx=FetchContext(cache=Cache(Path(cache_dir))), platform=platform)


@task(
    name="fetch-artifact",
    task_run_name="fetch {resolved.artifact_id}",
    # No Prefect cache and no persisted result: the core decides reuse (airlift.fetch.kinds.reusable,
    # which checks every blob and the kind's still_sound) and its cache record is the one copy kept.
    cache_policy=NONE,
)
def fetch_artifact(*, resolved: Resolved, cache_dir: str, max_parallel_files: int = 8) -> Artifact:
    """Download every file of one artifact into the cache (threads inside; one task per artifact), or reuse its record."""
    progress = ProgressLog(f"fetch {resolved.artifact_id}", resolved.total_bytes or None)
    ctx = FetchContext(cache=Cache(Path(cache_dir)), max_parallel_files=max_parallel_files, on_bytes=progress)
    return fetch_resolved(resolved, ctx)


@task(name="assemble-bundle", task_run_name="assemble {out}")
def assemble(
    *, spec: Spec, artifacts: list[Artifact], out: str, cache_dir: str, since: str | None, resolution: str | None = None, pubkeys: list[str] | None = None,
) -> BuildResult:
    """Link blobs from the cache into the bundle, write manifest.json and SHA256SUMS, and publish a contents table."""
    result = assemble_bundle(
        spec=spec, artifacts=artifacts, out=Path(out), cache=Cache(Path(cache_dir)), since=Path(since) if since else None,
        resolution=resolution, since_pubkeys=[Path(k) for k in pubkeys or []],
    )
    rows = [
        {
            "artifact": a.id,
            "kind": a.kind,
            "resolved": a.source.pinned,
            "files": len(a.files) or len(a.blobs),
            "bytes": a.content_bytes,
        }
        for a in sorted(artifacts, key=lambda a: a.id)
    ]
    create_table_artifact(table=rows, key="bundle-contents", description=f"Contents of {out} (manifest sha256 {result.manifest_sha256})")
    return result

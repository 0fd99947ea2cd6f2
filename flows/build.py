"""build-bundle: resolve → fetch (one task per artifact) → assemble."""

from __future__ import annotations

from pathlib import Path

from airlift_flows._util import gather
from airlift_tasks.build import assemble, fetch_artifact, resolve_artifact
from prefect import allow_failure, flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from airlift.bundle.manifest import Artifact
from airlift.config.installer import Installer
from airlift.config.spec import Spec
from airlift.fetch.base import Resolved
from airlift.fetch.bundle_writer import BuildResult, resolution_digest
from airlift.fetch.cache import Cache
from airlift.fetch.plan import plan_artifact
from airlift.fetch.prepare import prepare_build


def resolve_all(parsed: Spec, cache_dir: str) -> list[Resolved]:
    """One resolve task per artifact; fails naming every artifact that could not be resolved."""
    artifacts = parsed.artifacts()
    futures = [resolve_artifact.submit(artifact_id=i, entry=e, cache_dir=cache_dir, platform=parsed.platform) for i, e in artifacts]
    return gather(futures, [i for i, _ in artifacts])


def fetch_all(resolved: list[Resolved], cache_dir: str, max_parallel_files: int = 8) -> list[Artifact]:
    """One fetch task per artifact (threads inside it for its files).

    Engine images (`from: docker`) start once the registry images are pulled: their base layers then
    reference the blobs those pulls stored, instead of being stored again (airlift/oci/dedup.py).
    """
    from_engine = [r.kind == "image" and r.source.from_ == "docker" for r in resolved]
    futures: list = [None] * len(resolved)
    for i, r in enumerate(resolved):
        if not from_engine[i]:
            futures[i] = fetch_artifact.submit(resolved=r, cache_dir=cache_dir, max_parallel_files=max_parallel_files)
    # allow_failure: a failed pull must not fail the engine image too; gather names each failure once.
    pulls = [allow_failure(futures[i]) for i, r in enumerate(resolved) if r.kind == "image" and not from_engine[i]]
    for i, r in enumerate(resolved):
        if from_engine[i]:
            futures[i] = fetch_artifact.submit(resolved=r, cache_dir=cache_dir, max_parallel_files=max_parallel_files, wait_for=pulls)
    return gather(futures, [r.artifact_id for r in resolved])


def task_runner_for(dask: str | None):
    """The task runner for a build: threads by default; with `dask`, a DaskTaskRunner on the scheduler at
    that address, or on a LocalCluster of processes when `dask` is "local" (per-artifact tasks then run
    in other processes, so the cache must sit on storage they all see)."""
    if not dask:
        return ThreadPoolTaskRunner(max_workers=4)
    from prefect_dask import DaskTaskRunner

    if dask == "local":
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={"n_workers": 2, "processes": True, "threads_per_worker": 2})
    return DaskTaskRunner(address=dask)


@flow(name="build-bundle", task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True)
def build_bundle(
    spec: str, out: str, since: str | None = None, max_parallel_files: int = 8, installer: bool = False, pubkeys: list[str] | None = None,
) -> BuildResult:
    """Build (or complete) the bundle for `spec` at `out`; with `since`, write only blobs OLD lacks.

    Args:
        spec: Path to the spec (airgap.yaml); a relative path resolves in the worker's directory (give an absolute one).
        out: Bundle directory to write or complete.
        since: An older bundle or a site inventory file; the new one is a delta that carries only blobs the old one lacks.
        max_parallel_files: Parallel file downloads inside one artifact.
        installer: Carry airlift itself (tools/airlift) for this host's Python and platform when the spec has no installer entry.
        pubkeys: Trusted Ed25519 public keys: refuse an inventory (since) none of them signed.
    """
    parsed = prepare_build(spec, since)  # the same core call the CLI made
    if installer and parsed.installer is None:
        parsed = parsed.model_copy(update={"installer": Installer()})
    cache_dir = str(Cache().root)
    resolved = resolve_all(parsed, cache_dir)
    reused = sum(plan_artifact(r, Cache(Path(cache_dir))).cached_bytes for r in resolved)  # before any fetch
    artifacts = fetch_all(resolved, cache_dir, max_parallel_files)
    result = assemble(
        spec=parsed, artifacts=artifacts, out=str(Path(out)), cache_dir=cache_dir, since=since, pubkeys=pubkeys or [],
        resolution=resolution_digest([(r.artifact_id, r.cache_key) for r in resolved]),
    )
    content = sum(a.content_bytes for a in artifacts)
    result = result.model_copy(update={"bytes_reused": min(reused, content), "bytes_fetched": max(0, content - reused)})
    get_run_logger().info("bundle %s: %d artifacts, %d files, %d bytes", out, result.artifacts, result.files, result.bytes)
    return result

"""plan-bundle: resolve every reference and size each artifact, downloading no content."""

from __future__ import annotations

from airlift_flows._util import gather
from airlift_tasks.build import resolve_artifact
from prefect import flow

from airlift.config.spec import load_spec
from airlift.fetch.cache import Cache
from airlift.fetch.plan import Plan, plan_artifact


@flow(name="plan-bundle")
def plan_bundle(spec: str) -> Plan:
    """Resolve `spec` (revision -> commit, tag -> digest, ref -> commit, requirements -> exact wheels) and size it."""
    parsed = load_spec(spec)
    cache = Cache()
    artifacts = parsed.artifacts()
    futures = [
        resolve_artifact.submit(artifact_id=i, entry=e, cache_dir=str(cache.root), platform=parsed.platform)
        for i, e in artifacts
    ]
    return Plan([plan_artifact(resolved, cache) for resolved in gather(futures, [i for i, _ in artifacts])])

"""plan-bundle: resolve every reference and size each artifact, downloading no content."""

from __future__ import annotations

from airlift_flows.build import resolve_all
from prefect import flow

from airlift.fetch.cache import Cache
from airlift.fetch.plan import Plan, plan_artifact
from airlift.fetch.prepare import prepare_build


@flow(name="plan-bundle")
def plan_bundle(spec: str) -> Plan:
    """Resolve `spec` (revision -> commit, tag -> digest, ref -> commit, requirements -> exact wheels) and size it."""
    cache = Cache()
    # The build's own resolve step (one task per artifact), so plan and build can never resolve differently.
    resolved = resolve_all(prepare_build(spec), str(cache.root))
    return Plan([plan_artifact(r, cache) for r in resolved])

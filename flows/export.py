"""export-outputs and site-inventory: what goes back out of the gap (finished runs' outputs, and what the site holds)."""

from __future__ import annotations

from pathlib import Path

from airlift_tasks.jobs import export_task, inventory_task
from prefect import flow

from airlift.bundle.layout import Bundle
from airlift.bundle.signing import sign
from airlift.config.site import load_site
from airlift.export.outputs import ExportResult


@flow(name="export-outputs", log_prints=True)
def export_outputs_flow(site: str, out: str, jobs: list[str] | None = None, key: str | None = None, max_size: int = 1 << 40) -> ExportResult:
    """The declared outputs of the site's finished job runs, as a bundle signed with the site's key.

    Args:
        site: Site profile (its shared_root holds the runs).
        out: The bundle to write or complete.
        jobs: Only these jobs' runs; all when empty.
        key: The site's Ed25519 private key; the manifest is signed with it.
        max_size: A run whose outputs are larger is refused, and named.
    """
    profile = load_site(site)
    result = export_task(root=str(profile.required_shared_root(source=site)), out=out, jobs=jobs or [], max_bytes=max_size, name=Path(site).stem)
    bundle = Bundle(out)
    if key and (result.manifest_changed or not (bundle.root / "manifest.json.sig").exists()):
        sign(bundle, Path(key))
    return result


@flow(name="site-inventory", log_prints=True)
def inventory_flow(site: str, out: str, key: str | None = None) -> int:
    """Every artifact the site has ingested, with its blobs, written to `out` (signed with `key` when given)."""
    profile = load_site(site)
    store = str(profile.store) if profile.store else None
    return inventory_task(root=str(profile.required_shared_root(source=site)), store=store, out=out, key=key)

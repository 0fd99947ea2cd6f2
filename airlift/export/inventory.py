"""`airlift inventory`: every artifact the site has ingested (its shared_root markers), with the blobs
its `store:` holds for each, so a delta built against it leaves out only what ingest can take back
from that store."""

from __future__ import annotations

from pathlib import Path

from airlift.bundle.inventory import Inventory, InventoryArtifact
from airlift.bundle.manifest import now_iso
from airlift.bundle.store import BlobStore
from airlift.layouts.shared_root import MARKER_DIR, load_marker


def site_inventory(root: Path, store: Path | None) -> Inventory:
    """The inventory of `root`'s ingest markers; a blob counts only if `store` holds it at its size."""
    lender = BlobStore(store) if store is not None else None
    artifacts = []
    markers = root / MARKER_DIR
    for path in sorted(markers.glob("*.json")) if markers.is_dir() else []:
        marker = load_marker(path)
        if marker is None or path.is_symlink():
            continue
        sizes = {f.sha256: f.size for f in marker.artifact.files}
        held = sorted(d for d in marker.artifact.all_blobs() if lender is not None and lender.has(d, sizes.get(d)))
        artifacts.append(InventoryArtifact(id=marker.id, kind=marker.kind, content_digest=marker.content_digest, blobs=held))
    return Inventory(created=now_iso(), artifacts=artifacts)

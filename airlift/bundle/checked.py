"""`airlift verify` as one core call: rehash against the opened manifest, then stamp what passed.

Blobs of the bundle's own store that pass, and did not change while they were hashed, are stamped
(airlift/bundle/stamps.py), so a later transfer into this directory need not hash them again. The
task (airlift_tasks.bundle.verify), ingest and the test suite all call this, so the rule is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from airlift.bundle import stamps
from airlift.bundle.layout import Bundle
from airlift.bundle.signing import TrustedManifest, trusted_manifest
from airlift.bundle.store import BlobStore
from airlift.bundle.verify import VerifyReport, verify_bundle


def verify_and_stamp(
    bundle: str | Path, *, store: str | Path | None = None, extra_stores: tuple[BlobStore, ...] = (),
    opened: TrustedManifest | None = None, on_bytes: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Rehash every blob of `bundle` (and of `store` for what a delta lacks) against `opened`'s manifest, stamping those that pass.

    Args:
        bundle: The bundle directory.
        store: A blob store (or older bundle) lending what a delta lacks.
        extra_stores: Stores whose copies of a damaged blob are moved aside too (the download cache).
        opened: The manifest as already read and signature-checked; read here (unsigned) when None.
        on_bytes: Progress, in bytes hashed.
    """
    target = Bundle(bundle)
    opened = opened or trusted_manifest(target, ())
    before = stamps.snapshot(target.root, opened.manifest.all_blobs())
    report = verify_bundle(
        target, store=BlobStore(Path(store)) if store else None, extra_stores=extra_stores, on_bytes=on_bytes, opened=opened,
    )
    broken = {p.sha256 for p in report.problems}
    stamps.record(target.root, {d: stamp for d, stamp in before.items() if d not in broken})
    return report

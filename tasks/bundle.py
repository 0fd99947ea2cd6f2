"""Bundle-level tasks: verification and directory transfer."""

from __future__ import annotations

from pathlib import Path

from airlift_tasks.common import ProgressLog, manifest_bytes
from prefect import task
from prefect.artifacts import create_markdown_artifact

from airlift.bundle import stamps
from airlift.bundle.layout import Bundle
from airlift.bundle.receipt import receipt_markdown, write_receipt
from airlift.bundle.signing import TrustedManifest, trusted_manifest
from airlift.bundle.store import BlobStore
from airlift.bundle.verify import VerifyReport, verify_bundle
from airlift.fetch.cache import Cache
from airlift.transport.location import TransferPlan, copy_blobs_to_dir, finalize_dir, plan_dir_transfer


@task(name="open-bundle", task_run_name="open {bundle}")
def open_trusted(*, bundle: str, pubkeys: list[str]) -> TrustedManifest:
    """Read the manifest once and, when keys are given, refuse it unless one of them signed those bytes."""
    return trusted_manifest(Bundle(bundle), [Path(k) for k in pubkeys])


@task(name="verify-bundle", task_run_name="verify {bundle}")
def verify(*, bundle: str, store: str | None = None, opened: TrustedManifest | None = None) -> VerifyReport:
    """Rehash every blob of the bundle (and of `store` for what a delta lacks) against `opened`'s manifest.

    Blobs of the bundle's own store that pass, and did not change while they were hashed, are stamped
    (airlift/bundle/stamps.py), so a later transfer into this directory need not hash them again.
    """
    cache = Cache()
    extra = (cache.store,) if cache.store.blobs_dir.is_dir() else ()
    target = Bundle(bundle)
    opened = opened or trusted_manifest(target, ())
    before = stamps.snapshot(target.root, opened.manifest.all_blobs())
    report = verify_bundle(
        target, store=BlobStore(Path(store)) if store else None, extra_stores=extra,
        on_bytes=ProgressLog(f"verify {bundle}", manifest_bytes(opened.manifest)), opened=opened,
    )
    broken = {p.sha256 for p in report.problems}
    stamps.record(target.root, {d: stamp for d, stamp in before.items() if d not in broken})
    return report


@task(name="plan-transfer")
def plan_transfer(*, src: str, dest: str, recheck: bool = False) -> TransferPlan:
    """What DEST lacks; what it holds counts only when a stamp vouches for it or it is rehashed now."""
    return plan_dir_transfer(Bundle(src), Path(dest), recheck=recheck)


@task(name="copy-blobs", task_run_name="copy {artifact_id}")
def copy_blobs(*, src: str, dest: str, artifact_id: str, digests: list[str], total: int) -> list[str]:
    """Copy one artifact's missing blobs, hashing while writing. Returns the digests it copied."""
    return copy_blobs_to_dir(Bundle(src), Path(dest), digests, on_bytes=ProgressLog(f"copy {artifact_id}", total))


@task(name="finalize-transfer")
def finalize(*, src: str, dest: str, plan: TransferPlan, copied: list[str]) -> None:
    finalize_dir(Bundle(src), Path(dest), plan, copied=set(copied))


@task(name="write-receipt")
def receipt_task(*, report: VerifyReport, directory: str | None) -> list[str]:
    """Write the verification receipt (JSON and Markdown) and publish it as a Markdown artifact."""
    paths = write_receipt(report, Path(directory) if directory else None)
    create_markdown_artifact(markdown=receipt_markdown(report), key="verification-receipt", description="What airlift verify checked")
    return [str(p) for p in paths]

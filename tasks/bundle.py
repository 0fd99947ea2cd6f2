"""Bundle-level tasks: open (signature), verify, receipt. Transfers: airlift_tasks.remote."""

from __future__ import annotations

from pathlib import Path

from airlift_tasks.common import ProgressLog, manifest_bytes
from prefect import task
from prefect.artifacts import create_markdown_artifact

from airlift.bundle.checked import verify_and_stamp
from airlift.bundle.layout import Bundle
from airlift.bundle.receipt import receipt_markdown, write_receipt
from airlift.bundle.signing import TrustedManifest, trusted_manifest
from airlift.bundle.verify import VerifyReport
from airlift.fetch.cache import Cache


@task(name="open-bundle", task_run_name="open {bundle}")
def open_trusted(*, bundle: str, pubkeys: list[str]) -> TrustedManifest:
    """Read the manifest once and, when keys are given, refuse it unless one of them signed those bytes."""
    return trusted_manifest(Bundle(bundle), [Path(k) for k in pubkeys])


@task(name="verify-bundle", task_run_name="verify {bundle}")
def verify(*, bundle: str, store: str | None = None, opened: TrustedManifest | None = None) -> VerifyReport:
    """Rehash every blob of the bundle (and of `store` for what a delta lacks) against `opened`'s manifest; stamp what passed."""
    cache = Cache()
    extra = (cache.store,) if cache.store.blobs_dir.is_dir() else ()
    total = manifest_bytes(opened.manifest) if opened is not None else None
    return verify_and_stamp(bundle, store=store, extra_stores=extra, opened=opened, on_bytes=ProgressLog(f"verify {bundle}", total))


@task(name="write-receipt")
def receipt_task(*, report: VerifyReport, directory: str | None) -> list[str]:
    """Write the verification receipt (JSON and Markdown) and publish it as a Markdown artifact."""
    paths = write_receipt(report, Path(directory) if directory else None)
    create_markdown_artifact(markdown=receipt_markdown(report), key="verification-receipt", description="What airlift verify checked")
    return [str(p) for p in paths]

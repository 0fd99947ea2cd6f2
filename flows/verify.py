"""verify-bundle: check the signature (if asked), rehash a bundle, and leave a receipt."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from airlift.bundle.layout import Bundle
from airlift.bundle.receipt import receipt_markdown, write_receipt
from airlift.bundle.signing import check_signature
from airlift.bundle.verify import VerifyReport
from tasks.bundle import verify


@task(name="check-signature")
def signature_task(*, bundle: str, pubkey: str) -> str:
    """Refuse a bundle whose manifest does not match its Ed25519 signature."""
    return check_signature(Bundle(bundle), [Path(pubkey)])


@task(name="write-receipt")
def receipt_task(*, report: VerifyReport, directory: str | None) -> list[str]:
    paths = write_receipt(report, Path(directory) if directory else None)
    create_markdown_artifact(markdown=receipt_markdown(report), key="verification-receipt", description="What airlift verify checked")
    return [str(p) for p in paths]


@flow(name="verify-bundle", log_prints=True)
def verify_bundle_flow(bundle: str, store: str | None = None, pubkey: str | None = None, receipt_dir: str | None = None) -> VerifyReport:
    """Rehash every blob of `bundle` against its manifest and write a verification receipt.

    Args:
        bundle: Bundle directory.
        store: Blob store (or older bundle) that lends the blobs a delta bundle lacks.
        pubkey: Ed25519 public key; when given, a manifest that does not match its signature is refused.
        receipt_dir: Where to write the receipt (default: the bundle's receipts/ directory).
    """
    signature = signature_task(bundle=bundle, pubkey=pubkey) if pubkey else (
        "present, not checked (no --pubkey)" if (Path(bundle) / "manifest.json.sig").exists() else "unsigned"
    )
    report = verify(bundle=bundle, store=store)
    report.signature = signature
    report.receipt = receipt_task(report=report, directory=receipt_dir)
    return report

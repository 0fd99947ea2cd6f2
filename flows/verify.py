"""verify-bundle: check the signature (if asked), rehash a bundle, and leave a receipt."""

from __future__ import annotations

from airlift_tasks.bundle import open_trusted, receipt_task, verify
from prefect import flow

from airlift.bundle.verify import VerifyReport


@flow(name="verify-bundle", log_prints=True)
def verify_bundle_flow(
    bundle: str, store: str | None = None, pubkey: str | None = None, receipt_dir: str | None = None, pubkeys: list[str] | None = None,
    model_signatures: bool = False,
) -> VerifyReport:
    """Check the signature (when keys are given), rehash every blob of `bundle`, and write a receipt.

    Args:
        bundle: Bundle directory.
        store: Blob store (or older bundle) that lends the blobs a delta bundle lacks.
        pubkey: An Ed25519 public key; a manifest not signed by it (or by one of pubkeys) is refused.
        receipt_dir: Where to write the receipt (default: the bundle's receipts/ directory).
        pubkeys: More trusted public keys (any one of them may have signed the bundle).
        model_signatures: Also check each model-signing signature the build checked, with its bundled trust.
    """
    keys = [*([pubkey] if pubkey else []), *(pubkeys or [])]
    opened = open_trusted(bundle=bundle, pubkeys=keys)
    report = verify(bundle=bundle, store=store, opened=opened)
    if model_signatures and report.ok:  # on rehashed blobs only: a broken file is named above, not here
        from airlift.bundle.verify import model_signature_problems

        report.problems += model_signature_problems(bundle, opened.manifest, store=store)
    report.receipt = receipt_task(report=report, directory=receipt_dir)
    return report

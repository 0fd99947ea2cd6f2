"""verify-bundle: rehash a bundle and report exactly what is broken."""

from __future__ import annotations

from prefect import flow

from airlift.verify import VerifyReport
from tasks.bundle import verify


@flow(name="verify-bundle", log_prints=True)
def verify_bundle_flow(bundle: str, store: str | None = None) -> VerifyReport:
    """Rehash every blob of `bundle` against its manifest; `store` lends blobs a delta lacks."""
    return verify(bundle=bundle, store=store)

"""inspect-bundle: read a bundle's manifest (no hashing)."""

from __future__ import annotations

from prefect import flow, task

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Manifest


@task(name="read-manifest")
def read_manifest(*, bundle: str) -> Manifest:
    return Bundle(bundle).read_manifest()


@flow(name="inspect-bundle")
def inspect_bundle(bundle: str) -> Manifest:
    """Return the validated manifest of `bundle`."""
    return read_manifest(bundle=bundle)

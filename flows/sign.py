"""keygen and sign: Ed25519 keys, and a signature over a bundle's manifest."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from airlift.bundle.layout import Bundle
from airlift.bundle.signing import keygen, sign


@flow(name="keygen")
def keygen_flow(out: str) -> list[str]:
    """Create `<out>.key` (private, mode 0600) and `<out>.pub`."""
    return [str(p) for p in keygen(Path(out))]


@flow(name="sign-bundle")
def sign_flow(bundle: str, key: str, expires_in: float | None = None) -> str:
    """Sign `bundle`'s manifest.json with the Ed25519 private key `key` (expiring after `expires_in` seconds)."""
    return str(sign(Bundle(bundle), Path(key), expires_in=expires_in))

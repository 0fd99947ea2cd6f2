"""Ed25519 signatures over manifest.json, which pins every blob by sha256: signing it signs the bundle."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from airlift.bundle.layout import SIGNATURE, Bundle
from airlift.bundle.manifest import Manifest
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import write_bytes_atomic


def keygen(prefix: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair, `PREFIX.key` (mode 0600) and `PREFIX.pub`; never overwrite a key."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    if key_path.exists():
        raise InputError(f"--out {prefix}: {key_path} already exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(key_path, key_pem, mode=0o600)
    write_bytes_atomic(pub_path, pub_pem)
    return key_path, pub_path


def _load(path: Path, kind: str):
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read {kind} key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, None) if kind == "private" else serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise InputError(f"{path}: not a PEM {kind} key") from None
    wanted = Ed25519PrivateKey if kind == "private" else Ed25519PublicKey
    if not isinstance(key, wanted):
        raise InputError(f"{path}: not an Ed25519 {kind} key")
    return key


def sign(bundle: Bundle, key_path: Path) -> Path:
    """Sign manifest.json (which pins every blob) with the private key; write manifest.json.sig."""
    key = _load(key_path, "private")
    signature = key.sign(bundle.manifest_bytes())
    path = bundle.root / SIGNATURE
    write_bytes_atomic(path, base64.b64encode(signature) + b"\n")
    return path


MAX_SIGNATURE_BYTES = 4096


def check_signature(bundle: Bundle, pub_paths: Sequence[Path], *, manifest_bytes: bytes | None = None) -> str:
    """Check `manifest.json.sig` against any of the trusted public keys.

    Args:
        bundle: The bundle whose signature to check.
        pub_paths: Trusted Ed25519 public keys (PEM); one match is enough, so a site can rotate keys
            by trusting the old and the new key for a while.
        manifest_bytes: The manifest bytes the caller will go on to use; checking exactly those bytes
            means nothing can swap the manifest between the check and its use.

    Returns:
        "valid (key SHA256:...)", naming the key that matched.

    Raises:
        WorkError: The bundle is unsigned, the signature is malformed, or no trusted key matches.
        InputError: A key file is missing or is not an Ed25519 public key.
    """
    keys = [(path, _load(path, "public")) for path in pub_paths]
    if not keys:
        raise InputError("no trusted public key given")
    path = bundle.root / SIGNATURE
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SIGNATURE_BYTES + 1)
    except FileNotFoundError:
        raise WorkError(f"{bundle.root}: refused: no {SIGNATURE}; the bundle is not signed and this site trusts only signed bundles") from None
    try:
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise ValueError
        signature = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        raise WorkError(f"{path}: refused: not a base64 Ed25519 signature") from None
    data = bundle.manifest_bytes() if manifest_bytes is None else manifest_bytes
    for key_path, key in keys:
        try:
            key.verify(signature, data)
        except InvalidSignature:
            continue
        return f"valid (key {key_fingerprint(key_path)})"
    names = ", ".join(str(p) for p, _ in keys)
    raise WorkError(f"{bundle.root}: refused: manifest.json does not match its signature under any trusted key ({names}): tampered, or signed by another key")


@dataclass(frozen=True)
class TrustedManifest:
    """A manifest read once: the parsed records, the sha256 of the exact bytes, and the signature status."""

    manifest: Manifest
    sha256: str
    signature: str


def trusted_manifest(bundle: Bundle, pub_paths: Sequence[Path]) -> TrustedManifest:
    """Read manifest.json once, check its signature when keys are given, and parse those same bytes.

    Args:
        bundle: The bundle to open.
        pub_paths: Trusted public keys; empty means the site trusts any bundle (no signature check).

    Returns:
        The validated manifest, the sha256 of its bytes and a one-line signature status.

    Raises:
        WorkError: The signature check failed (see `check_signature`).
        ManifestError: The manifest is malformed or hostile.
    """
    bundle.require()
    data = bundle.manifest_bytes()
    if pub_paths:
        status = check_signature(bundle, pub_paths, manifest_bytes=data)
    else:
        status = "present, not checked (no trusted keys)" if (bundle.root / SIGNATURE).exists() else "unsigned"
    manifest = Manifest.parse(data, origin=str(bundle.manifest_path))
    return TrustedManifest(manifest=manifest, sha256=hashlib.sha256(data).hexdigest(), signature=status)


def key_fingerprint(pub_path: Path) -> str:
    """The key's SHA256 fingerprint (as ssh-keygen prints them), for receipts and messages."""
    raw = _load(pub_path, "public").public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")

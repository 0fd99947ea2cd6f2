"""Ed25519 signatures over manifest.json, which pins every blob by sha256: signing it signs the bundle."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from airlift.bundle.layout import SIGNATURE, Bundle
from airlift.bundle.manifest import Manifest
from airlift.util.confine import EscapeError, read_regular
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


EXPIRES_PREFIX = "expires "
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def signed_message(manifest_bytes: bytes, expires: str | None) -> bytes:
    """What the signature covers: the manifest bytes alone, or (with an expiry) a versioned header
    naming the expiry, then the manifest bytes. The expiry is *under* the signature: changing or
    removing its line makes the signature fail, and an unexpiring signature never verifies over a
    header, so an expiring signature cannot be turned into an unexpiring one."""
    if expires is None:
        return manifest_bytes
    return b"airlift-signature-v2\n" + f"{EXPIRES_PREFIX}{expires}\n".encode() + manifest_bytes


def sign(bundle: Bundle, key_path: Path, *, expires_in: float | None = None) -> Path:
    """Sign manifest.json (which pins every blob) with the private key; write manifest.json.sig.

    Args:
        bundle: The bundle.
        key_path: The Ed25519 private key (PEM).
        expires_in: Seconds from now after which ingest, submit and serve refuse the signature
            (`airlift sign --expires 30d`); None signs without an expiry, as before.
    """
    key = _load(key_path, "private")
    expires = None
    if expires_in is not None:
        expires = (datetime.now(UTC) + timedelta(seconds=expires_in)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    signature = key.sign(signed_message(bundle.manifest_bytes(), expires))
    path = bundle.root / SIGNATURE
    body = base64.b64encode(signature) + b"\n" + (f"{EXPIRES_PREFIX}{expires}\n".encode() if expires else b"")
    write_bytes_atomic(path, body)
    return path


def _parse_signature_file(path: Path, raw: bytes) -> tuple[bytes, str | None]:
    """(signature, expiry or None) from manifest.json.sig: one base64 line, optionally `expires <time>`."""
    try:
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise ValueError
        lines = raw.decode("ascii").strip().split("\n")
        if len(lines) > 2:
            raise ValueError
        signature = base64.b64decode(lines[0].strip(), validate=True)
        expires = None
        if len(lines) == 2:
            if not lines[1].startswith(EXPIRES_PREFIX) or not _TIME_RE.match(lines[1][len(EXPIRES_PREFIX):]):
                raise ValueError
            expires = lines[1][len(EXPIRES_PREFIX):]
    except (ValueError, UnicodeDecodeError):
        raise WorkError(f"{path}: refused: not a base64 Ed25519 signature (with an optional 'expires' line)") from None
    return signature, expires


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
        raw = read_regular(bundle.root, SIGNATURE, max_bytes=MAX_SIGNATURE_BYTES)  # no FIFO, link or device
    except FileNotFoundError:
        raise WorkError(f"{bundle.root}: refused: no {SIGNATURE}; the bundle is not signed and this site trusts only signed bundles") from None
    except EscapeError:
        raise WorkError(f"{path}: refused: not a regular file of at most {MAX_SIGNATURE_BYTES} bytes") from None
    signature, expires = _parse_signature_file(path, raw)
    data = signed_message(bundle.manifest_bytes() if manifest_bytes is None else manifest_bytes, expires)
    for key_path, key in keys:
        try:
            key.verify(signature, data)
        except InvalidSignature:
            continue
        if expires is not None:
            # Checked only after the signature is valid: the expiry is signed, so it is the signer's.
            if datetime.now(UTC) >= datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC):
                raise WorkError(f"{path}: refused: the signature expired at {expires} (re-sign the bundle: airlift sign --expires)")
            return f"valid until {expires} (key {key_fingerprint(key_path)})"
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
        status = "present, not checked (no trusted keys)" if os.path.lexists(bundle.root / SIGNATURE) else "unsigned"
    manifest = Manifest.parse(data, origin=str(bundle.manifest_path))
    return TrustedManifest(manifest=manifest, sha256=hashlib.sha256(data).hexdigest(), signature=status)


def key_fingerprint(pub_path: Path) -> str:
    """The key's SHA256 fingerprint (as ssh-keygen prints them), for receipts and messages."""
    raw = _load(pub_path, "public").public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")

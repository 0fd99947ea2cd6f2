"""Ed25519 signatures over manifest.json, which pins every blob by sha256: signing it signs the bundle."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from airlift.bundle.layout import SIGNATURE, Bundle
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import write_bytes_atomic


def keygen(prefix: Path) -> tuple[Path, Path]:
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
    key = _load(key_path, "private")
    signature = key.sign(bundle.manifest_bytes())
    path = bundle.root / SIGNATURE
    write_bytes_atomic(path, base64.b64encode(signature) + b"\n")
    return path


def check_signature(bundle: Bundle, pub_path: Path) -> str:
    """'valid' or raise WorkError: a missing or mismatching signature refuses the bundle."""
    key = _load(pub_path, "public")
    path = bundle.root / SIGNATURE
    if not path.exists():
        raise WorkError(f"{bundle.root}: no {SIGNATURE}; the bundle is not signed")
    try:
        signature = base64.b64decode(path.read_bytes().strip(), validate=True)
    except ValueError:
        raise WorkError(f"{path}: not a base64 signature") from None
    try:
        key.verify(signature, bundle.manifest_bytes())
    except InvalidSignature:
        raise WorkError(f"{bundle.root}: manifest.json does not match its signature (tampered, or signed by another key)") from None
    return "valid"


def key_fingerprint(pub_path: Path) -> str:
    raw = _load(pub_path, "public").public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")

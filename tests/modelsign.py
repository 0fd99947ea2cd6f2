"""Test helper: a model signed with the OpenSSF `model-signing` package and a local elliptic-curve key."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def make_key(directory: Path, name: str = "signer") -> tuple[Path, Path]:
    """A P-256 key pair as PEM files: (private key, public key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def sign_files(files: dict[str, bytes], private_key: Path, signature: str = "model.sig") -> dict[str, bytes]:
    """`files` plus the model-signing signature over them (as `model_signing sign key` writes it)."""
    import model_signing

    with tempfile.TemporaryDirectory() as work:
        tree = Path(work) / "model"
        for path, data in files.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_bytes(data)
        hashing = model_signing.hashing.Config().set_ignored_paths(paths=[signature])
        model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).set_hashing_config(hashing).sign(tree, tree / signature)
        return {**files, signature: (tree / signature).read_bytes()}

"""Test helper: a model signed with the OpenSSF `model-signing` package and a local elliptic-curve key."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _signed(files: dict[str, bytes], signature: str, signer: Callable[[Any], Any]) -> dict[str, bytes]:
    """`files` plus the signature `signer` (a configured `model_signing.signing.Config`) writes over them."""
    import model_signing

    with tempfile.TemporaryDirectory() as work:
        tree = Path(work) / "model"
        for path, data in files.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_bytes(data)
        hashing = model_signing.hashing.Config().set_ignored_paths(paths=[signature])
        signer(model_signing.signing.Config()).set_hashing_config(hashing).sign(tree, tree / signature)
        return {**files, signature: (tree / signature).read_bytes()}


def sign_files(files: dict[str, bytes], private_key: Path, signature: str = "model.sig") -> dict[str, bytes]:
    """`files` plus the model-signing signature over them (as `model_signing sign key` writes it)."""
    return _signed(files, signature, lambda config: config.use_elliptic_key_signer(private_key=private_key))


def make_ca_and_leaf(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a code-signing leaf it issued, as PEM files: (leaf private key, leaf cert, CA cert)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airlift test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "model signer")])).issuer_name(ca_name)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "leaf.pem", directory / "leaf.crt", directory / "ca.crt"
    paths[0].write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def sign_files_with_certificate(files: dict[str, bytes], key: Path, certificate: Path, chain: list[Path], signature: str = "model.sig") -> dict[str, bytes]:
    """`files` plus a model-signing signature by a certificate (as `model_signing sign certificate` writes it)."""
    return _signed(files, signature, lambda config: config.use_certificate_signer(
        private_key=key, signing_certificate=certificate, certificate_chain=chain,
    ))

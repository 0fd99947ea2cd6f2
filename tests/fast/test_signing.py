"""Ed25519 signatures over manifest.json: a good signature passes; tampering, a wrong key or none is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from airlift.bundle.signing import check_signature, key_fingerprint, keygen, sign, trusted_manifest
from airlift.util.errors import InputError, WorkError


def refused_naming(error: Exception, bundle: Path, pub: Path) -> bool:
    """A one-line refusal that names the bundle and the key it was checked against."""
    message = str(error)
    return "refused" in message and str(bundle) in message and str(pub) in message and "\n" not in message


@pytest.fixture
def keys(tmp_path):
    return keygen(tmp_path / "keys" / "site")


def test_keygen_sign_and_check(small_bundle, keys):
    key, pub = keys
    assert key.name == "site.key" and pub.name == "site.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    signature = sign(small_bundle.bundle, key)
    assert signature == small_bundle.root / "manifest.json.sig"
    status = check_signature(small_bundle.bundle, [pub])
    assert status.startswith("valid") and key_fingerprint(pub) in status
    opened = trusted_manifest(small_bundle.bundle, [pub])
    assert opened.manifest == small_bundle.manifest and opened.signature == status


def test_a_tampered_manifest_is_refused(small_bundle, keys):
    key, pub = keys
    sign(small_bundle.bundle, key)
    path = small_bundle.bundle.manifest_path
    path.write_bytes(path.read_bytes().replace(b'"name": "fast"', b'"name": "evil"'))
    with pytest.raises(WorkError) as excinfo:
        check_signature(small_bundle.bundle, [pub])
    assert refused_naming(excinfo.value, small_bundle.root, pub)
    with pytest.raises(WorkError):
        trusted_manifest(small_bundle.bundle, [pub])


def test_a_signature_by_another_key_is_refused(small_bundle, keys, tmp_path):
    _, pub = keys
    other_key, _ = keygen(tmp_path / "keys" / "intruder")
    sign(small_bundle.bundle, other_key)
    with pytest.raises(WorkError) as excinfo:
        check_signature(small_bundle.bundle, [pub])
    assert refused_naming(excinfo.value, small_bundle.root, pub)


def test_any_trusted_key_is_enough(small_bundle, keys, tmp_path):
    key, pub = keys
    _, old_pub = keygen(tmp_path / "keys" / "old")
    sign(small_bundle.bundle, key)
    assert key_fingerprint(pub) in check_signature(small_bundle.bundle, [old_pub, pub])


def test_keygen_refuses_to_overwrite(keys):
    key, pub = keys
    before = key.read_bytes(), pub.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite"):
        keygen(key.with_suffix(""))
    assert (key.read_bytes(), pub.read_bytes()) == before


def test_an_unsigned_bundle_is_refused_when_keys_are_trusted(small_bundle, keys):
    _, pub = keys
    with pytest.raises(WorkError, match="not signed"):
        check_signature(small_bundle.bundle, [pub])
    assert trusted_manifest(small_bundle.bundle, []).signature == "unsigned"


def test_a_garbage_signature_is_refused(small_bundle, keys):
    _, pub = keys
    (small_bundle.root / "manifest.json.sig").write_bytes(b"not base64 at all!!\n")
    with pytest.raises(WorkError, match="not a base64"):
        check_signature(small_bundle.bundle, [pub])


def test_a_private_key_is_not_a_trusted_key(small_bundle, keys):
    key, _ = keys
    sign(small_bundle.bundle, key)
    with pytest.raises(InputError):
        check_signature(small_bundle.bundle, [key])

"""Model signatures (OpenSSF model-signing): checked at build against the spec's key, recorded, re-checked from the bundle."""

from __future__ import annotations

import json

import pytest

from airlift.bundle.layout import SBOM, Bundle
from airlift.bundle.verify import model_signature_problems, verify_bundle
from airlift.config.spec import Spec
from airlift.fetch.bundle_writer import assemble_bundle, check_model_signatures
from airlift.fetch.cache import Cache
from airlift.util.errors import InputError, IntegrityError
from tests.fast.conftest import hf_model, make_writable
from tests.modelsign import make_ca_and_leaf, make_key, sign_files, sign_files_with_certificate

FILES = {"config.json": b'{"hidden_size": 8}\n', "model.safetensors": b"\x00weights" * 64, "tokenizer/vocab.txt": b"hello\n"}


def _setup(tmp_path, files):
    cache = Cache(tmp_path / "cache")
    cache.store.ensure_dirs()
    for data in files.values():
        cache.store.put_bytes(data)
    return cache, hf_model(files=files).artifact()


def _spec(key) -> Spec:
    return Spec.model_validate({"name": "signed", "models": [{"hf": "acme/tiny", "verify_signature": {"key": str(key)}}]})


def test_a_good_signature_is_checked_and_recorded_with_its_key(tmp_path):
    private, public = make_key(tmp_path)
    cache, artifact = _setup(tmp_path, sign_files(FILES, private))
    [checked] = check_model_signatures(_spec(public), [artifact], cache)
    assert checked.signature is not None and checked.signature.method == "key" and checked.signature.files == 3
    [trust] = checked.signature.trust
    assert trust in checked.blobs and cache.store.blob_path(trust[7:]).read_bytes() == public.read_bytes()
    assert not list(cache.store.tmp_dir.iterdir())  # the scratch tree is gone


def test_files_that_do_not_match_the_signature_fail_naming_them(tmp_path):
    private, public = make_key(tmp_path)
    signed = sign_files(FILES, private)
    tampered = dict(signed, **{"model.safetensors": b"\x01evil" * 64, "extra.py": b"import os\n"})
    cache, artifact = _setup(tmp_path, tampered)
    with pytest.raises(IntegrityError) as caught:
        check_model_signatures(_spec(public), [artifact], cache)
    message = str(caught.value)
    assert message.startswith("models/acme/tiny: model signature model.sig does not match these files:")
    assert "model.safetensors" in message and "extra.py" in message and "config.json" not in message


def test_a_signature_by_another_key_fails(tmp_path):
    private, _ = make_key(tmp_path, "signer")
    _, other = make_key(tmp_path, "other")
    cache, artifact = _setup(tmp_path, sign_files(FILES, private))
    with pytest.raises(IntegrityError, match="models/acme/tiny: model signature model.sig does not verify"):
        check_model_signatures(_spec(other), [artifact], cache)


def test_an_unsigned_repo_or_a_missing_key_is_named(tmp_path):
    _, public = make_key(tmp_path)
    cache, artifact = _setup(tmp_path, FILES)
    with pytest.raises(Exception, match="no model.sig among its files"):
        check_model_signatures(_spec(public), [artifact], cache)
    with pytest.raises(InputError, match="verify_signature: .*nope.pub"):
        check_model_signatures(_spec(tmp_path / "nope.pub"), [artifact], cache)


def test_the_far_side_rechecks_from_the_bundle_alone(tmp_path):
    private, public = make_key(tmp_path)
    cache, artifact = _setup(tmp_path, sign_files(FILES, private))
    spec = _spec(public)
    assemble_bundle(spec=spec, artifacts=[artifact], out=tmp_path / "bundle", cache=cache)
    public.unlink()  # nothing from the build host is needed any more
    bundle = Bundle(tmp_path / "bundle")
    manifest = bundle.read_manifest()
    assert verify_bundle(bundle).ok
    assert model_signature_problems(bundle.root, manifest) == []
    sbom = json.loads((bundle.root / SBOM).read_text())
    props = {p["name"]: p["value"] for c in sbom["components"] for p in c.get("properties", [])}
    assert props["airlift:model-signature"] == "verified (key, 3 files, model.sig)"
    # A bundle whose signature file was replaced by one over other files fails the re-check.
    forged = sign_files({"config.json": b"{}"}, private)["model.sig"]
    sig_blob = bundle.store.blob_path(next(f.sha256 for f in manifest.artifacts[0].files if f.path == "model.sig"))
    make_writable(sig_blob)
    sig_blob.write_bytes(forged)
    [problem] = model_signature_problems(bundle.root, manifest)
    assert problem.artifact_id == "models/acme/tiny" and problem.reason.startswith("signature mismatch: model signature model.sig does not match these files")


def test_a_certificate_chain_is_trust_material_too(tmp_path):
    leaf_key, leaf, ca = make_ca_and_leaf(tmp_path)
    cache, artifact = _setup(tmp_path, sign_files_with_certificate(FILES, leaf_key, leaf, [ca]))
    spec = Spec.model_validate({"name": "signed", "models": [{"hf": "acme/tiny", "verify_signature": {"certificate_chain": [str(ca)]}}]})
    [checked] = check_model_signatures(spec, [artifact], cache)
    assert checked.signature.method == "certificate" and checked.signature.files == 3
    (tmp_path / "other").mkdir()
    _, _, other_ca = make_ca_and_leaf(tmp_path / "other")  # a CA that did not issue the signer's certificate
    wrong = Spec.model_validate({"name": "signed", "models": [{"hf": "acme/tiny", "verify_signature": {"certificate_chain": [str(other_ca)]}}]})
    with pytest.raises(IntegrityError, match="does not verify"):
        check_model_signatures(wrong, [artifact], cache)

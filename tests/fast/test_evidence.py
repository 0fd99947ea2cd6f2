"""The SBOM and the provenance: written with the manifest, pinned by it, checked by verify, carried by transfer."""

from __future__ import annotations

import json
import subprocess
import sys

from cyclonedx.model.bom import Bom

from airlift.bundle.layout import PROVENANCE, SBOM, Bundle, with_evidence
from airlift.bundle.manifest import ARTIFACT_KINDS, Manifest, artifacts_digest, now_iso
from airlift.bundle.verify import verify_bundle
from airlift.transport.engine import transfer
from airlift.transport.local import DirEndpoint
from tests.fast.conftest import (
    Built,
    hf_model,
    make_wheel,
    make_writable,
    path_tree,
    sha256,
    url_file,
    wheels,
)


def evidence_bundle(root, drafts=None) -> Built:
    """A bundle written as `airlift build` writes it: with its SBOM and provenance."""
    drafts = drafts or [hf_model(), url_file(), path_tree(), wheels(dict([make_wheel("Foo_Bar", "1.0"), make_wheel("six", "1.16.0")]))]
    bundle = Bundle(root)
    for draft in drafts:
        for data in draft.files.values():
            bundle.store.put_bytes(data)
    manifest, files = with_evidence(Manifest(name="evidence", created=now_iso(), artifacts=[d.artifact() for d in drafts]))
    bundle.write_manifest(manifest, files)
    return Built(bundle, manifest, list(drafts))


def test_the_sbom_parses_with_cyclonedx_and_lists_every_file_digest(tmp_path):
    built = evidence_bundle(tmp_path / "b")
    data = (built.root / SBOM).read_bytes()
    bom = Bom.from_json(json.loads(data))  # cyclonedx-python-lib reads it back
    by_ref = {c.bom_ref.value: c for c in bom.components}
    assert set(by_ref) == {a.id for a in built.manifest.artifacts}
    for artifact in built.manifest.artifacts:
        listed = {(c.bom_ref.value.split("#", 1)[1], h.content) for c in by_ref[artifact.id].components for h in c.hashes}
        assert listed == {(f.path, f.sha256) for f in artifact.files}, artifact.id
    model = by_ref["models/acme/tiny"]
    assert str(model.purl) == f"pkg:huggingface/acme/tiny@{built.manifest.artifacts[0].source.commit}"
    wheel_purls = sorted(str(c.purl) for c in by_ref["wheels"].components)
    assert wheel_purls == ["pkg:pypi/foo-bar@1.0", "pkg:pypi/six@1.16.0"]
    assert built.manifest.evidence.sbom_sha256 == sha256(data)


def test_the_provenance_names_every_artifacts_resolved_source(tmp_path):
    built = evidence_bundle(tmp_path / "b")
    doc = json.loads((built.root / PROVENANCE).read_bytes())
    assert doc["_type"] == "https://in-toto.io/Statement/v1" and doc["predicateType"] == "https://slsa.dev/provenance/v1"
    assert doc["subject"] == [{"name": "manifest.json#artifacts", "digest": {"sha256": artifacts_digest(built.manifest.artifacts)}}]
    deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    by_id = {}
    for dep in deps:
        by_id.setdefault(dep["annotations"]["artifact_id"], []).append(dep)
    assert set(by_id) == {a.id for a in built.manifest.artifacts}
    hf = by_id["models/acme/tiny"][0]
    assert hf["annotations"]["asked"] == "acme/tiny@main" and hf["digest"] == {"gitCommit": built.manifest.artifacts[0].source.commit}
    assert sorted(d["annotations"]["asked"] for d in by_id["wheels"]) == ["Foo_Bar-1.0-py3-none-any.whl", "six-1.16.0-py3-none-any.whl"]
    assert doc["predicate"]["runDetails"]["metadata"]["startedOn"] == built.manifest.created
    assert doc["predicate"]["runDetails"]["builder"]["version"]["airlift"]


def test_both_are_in_sha256sums_and_verify_passes(tmp_path):
    built = evidence_bundle(tmp_path / "b")
    proc = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=built.root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert f"{SBOM}: OK" in proc.stdout and f"{PROVENANCE}: OK" in proc.stdout
    report = verify_bundle(built.bundle)
    assert report.ok, report.problems


def test_a_tampered_sbom_or_provenance_fails_verify(tmp_path):
    for name in (SBOM, PROVENANCE):
        built = evidence_bundle(tmp_path / name)
        path = built.root / name
        doc = json.loads(path.read_bytes())
        if name == SBOM:
            doc["components"][0]["components"][0]["hashes"][0]["content"] = "0" * 64
        else:
            doc["predicate"]["buildDefinition"]["resolvedDependencies"][0]["uri"] = "https://evil.invalid/x"
        make_writable(path)
        path.write_text(json.dumps(doc))
        report = verify_bundle(built.bundle)
        assert not report.ok
        assert [(p.artifact_id, p.path, p.reason) for p in report.problems] == [("evidence", name, "corrupt")]


def test_evidence_that_disagrees_with_its_manifest_fails_verify_even_when_pinned(tmp_path):
    # A manifest re-pinned to evidence of another build (as a forger with no signing key might try).
    built = evidence_bundle(tmp_path / "b")
    other = evidence_bundle(tmp_path / "other", [hf_model(), url_file("other.txt", b"other\n")])
    forged = built.manifest.model_copy(update={"evidence": other.manifest.evidence})
    for name in (SBOM, PROVENANCE):
        data = (other.root / name).read_bytes()
        built.bundle.store.put_bytes(data)
    built.bundle.write_manifest(forged)
    report = verify_bundle(built.bundle)
    reasons = {p.path: p.reason for p in report.problems}
    assert set(reasons) == {SBOM, PROVENANCE}
    assert all(r.startswith("disagrees with the manifest") for r in reasons.values())
    assert "files/notes.txt: not listed" in reasons[SBOM]


def test_a_damaged_evidence_blob_is_named(tmp_path):
    built = evidence_bundle(tmp_path / "b")
    blob = built.bundle.store.blob_path(built.manifest.evidence.provenance_sha256)
    make_writable(blob)
    blob.write_bytes(b"{}")
    report = verify_bundle(built.bundle)
    assert ("evidence", f"{PROVENANCE} (blob)", "wrong size") in {(p.artifact_id, p.path, p.reason) for p in report.problems} or (
        ("evidence", f"{PROVENANCE} (blob)", "corrupt") in {(p.artifact_id, p.path, p.reason) for p in report.problems}
    )


def test_an_older_manifest_without_evidence_still_verifies(tmp_path):
    bundle = Bundle(tmp_path / "old")
    draft = url_file()
    bundle.store.put_bytes(draft.files["notes.txt"])
    manifest = Manifest(name="old", created=now_iso(), artifacts=[draft.artifact()])
    bundle.write_manifest(manifest)
    assert "evidence" not in json.loads(bundle.manifest_bytes())
    assert not (bundle.root / SBOM).exists()
    assert verify_bundle(bundle).ok


def test_the_same_manifest_gives_the_same_evidence_bytes(tmp_path):
    built = evidence_bundle(tmp_path / "b")
    again, files = with_evidence(built.manifest.model_copy(update={"evidence": None}))
    assert again == built.manifest
    assert files[SBOM] == (built.root / SBOM).read_bytes() and files[PROVENANCE] == (built.root / PROVENANCE).read_bytes()


def test_a_transfer_carries_both(tmp_path):
    built = evidence_bundle(tmp_path / "b")
    dest = tmp_path / "dest"
    transfer(DirEndpoint(str(built.root)), DirEndpoint(str(dest)))
    for name in (SBOM, PROVENANCE):
        assert (dest / name).read_bytes() == (built.root / name).read_bytes()
    assert verify_bundle(Bundle(dest)).ok


def test_pack_and_unpack_carry_both(tmp_path):
    from airlift.bundle.volumes import pack, unpack

    built = evidence_bundle(tmp_path / "b")
    pack(built.bundle, out=tmp_path / "vols", volume_size=4096)
    result = unpack(tmp_path / "vols", tmp_path / "back")
    assert result.ok, result
    for name in (SBOM, PROVENANCE):
        assert (tmp_path / "back" / name).read_bytes() == (built.root / name).read_bytes()
    assert verify_bundle(Bundle(tmp_path / "back")).ok


def test_every_artifact_kind_has_an_sbom_component_type():
    """A kind the SBOM cannot type would fail every build that carries it (it once did for tools/airlift)."""

    from airlift.bundle.sbom import _KIND_TYPE

    assert set(ARTIFACT_KINDS) <= set(_KIND_TYPE)



def test_an_sbom_of_wrong_json_types_is_a_problem_named_never_an_exception(tmp_path):
    """An unsigned bundle's SBOM is anyone's: pinned by its (forged) manifest, every odd type is reported
    as a problem of sbom.cdx.json, and verify runs to its end."""
    built = evidence_bundle(tmp_path / "b", [hf_model()])
    good = json.loads((built.root / SBOM).read_bytes())
    component = good["components"][0]
    odd_documents = [
        [1, 2], "CycloneDX", {"bomFormat": "CycloneDX", "components": 5},
        {"bomFormat": "CycloneDX", "components": [5, None, {"bom-ref": ["x"]}]},
        {**good, "components": [{**component, "components": 7}]},
        {**good, "components": [{**component, "components": [{"bom-ref": 3, "hashes": [{"alg": "SHA-256", "content": 9}]}]}]},
        {**good, "components": [{**component, "components": [{"bom-ref": "x", "hashes": "nope"}]}]},
        {**good, "components": [{**component, "version": {"not": "a string"}}]},
        # an extra SHA-256 claim whose bom-ref is no string: reported, not passed over
        {**good, "components": [{**component, "components": [*component["components"], {"bom-ref": 7, "hashes": [{"alg": "SHA-256", "content": "f" * 64}]}]}]},
    ]
    for doc in odd_documents:
        data = json.dumps(doc).encode()
        evidence = built.manifest.evidence.model_copy(update={"sbom_sha256": built.bundle.store.put_bytes(data).sha256})
        built.bundle.write_manifest(built.manifest.model_copy(update={"evidence": evidence}))
        reasons = {p.path: p.reason for p in verify_bundle(built.bundle).problems}
        assert set(reasons) == {SBOM} and reasons[SBOM].startswith("disagrees with the manifest"), (doc, reasons)


def test_verify_checks_the_sbom_without_importing_cyclonedx(tmp_path):
    """The far side's most frequent command reads the SBOM as JSON (airlift/bundle/sbom_check.py)."""
    built = evidence_bundle(tmp_path / "b")
    code = ("import sys; from airlift.bundle.layout import Bundle; from airlift.bundle.verify import verify_bundle; "
            f"report = verify_bundle(Bundle({str(built.root)!r})); "
            "print(len(report.problems), report.blobs_checked, any(m.startswith('cyclonedx') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0" and int(out[1]) > 0 and out[2] == "False", out

"""A bundle on disk and `verify`: SHA256SUMS checks with the real sha256sum; damage is named by artifact and path."""

from __future__ import annotations

import os
import subprocess

import pytest

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import ManifestError
from airlift.bundle.verify import verify_bundle
from tests.fast.conftest import build_bundle, hf_model, make_writable, path_tree, run, sha256, url_file


def problems(report) -> set[tuple[str, str, str]]:
    """(artifact id, file path, reason) for every problem the report names."""
    return {(p.artifact_id, p.path, p.reason) for p in report.problems}


def sha256sum_check(root) -> subprocess.CompletedProcess:
    return subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=root, capture_output=True, text=True)


def test_sha256sum_checks_the_bundle(small_bundle):
    proc = run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=small_bundle.root)
    lines = proc.stdout.splitlines()
    assert "manifest.json: OK" in lines
    assert len(lines) == len(small_bundle.manifest.all_blobs()) + 3  # + manifest.json, oci-layout, index.json
    assert all(line.endswith(": OK") for line in lines)


def test_sha256sum_fails_on_a_corrupt_blob(small_bundle):
    blob = small_bundle.blob("files/notes.txt", "notes.txt")
    make_writable(blob)
    blob.write_bytes(b"tampered notes\n")
    proc = sha256sum_check(small_bundle.root)
    assert proc.returncode != 0 and f"blobs/sha256/{blob.name}: FAILED" in proc.stdout


def test_verify_passes_on_an_intact_bundle(small_bundle):
    report = verify_bundle(small_bundle.bundle)
    assert report.ok, report.problems
    assert report.blobs_checked == len(small_bundle.manifest.all_blobs())
    assert report.bytes_checked == sum(p.stat().st_size for p in small_bundle.bundle.store.blobs_dir.iterdir())
    assert report.manifest_matches_sums is True
    assert sorted(a.id for a in report.artifacts) == sorted(d.id for d in small_bundle.drafts)


def test_verify_names_a_corrupt_blob(small_bundle):
    blob = small_bundle.blob("models/acme/tiny", "model.safetensors")
    size = blob.stat().st_size
    make_writable(blob)
    blob.write_bytes(b"\xff" * size)  # same size, other bytes
    report = verify_bundle(small_bundle.bundle)
    assert not report.ok
    assert problems(report) == {("models/acme/tiny", "model.safetensors", "corrupt")}
    assert not blob.exists()  # moved aside, so the next build or transfer puts good bytes back
    assert (small_bundle.root / ".corrupt" / blob.name).read_bytes() == b"\xff" * size


def test_verify_names_a_missing_blob(small_bundle):
    small_bundle.blob("files/corpus", "dir/b.txt").unlink()
    report = verify_bundle(small_bundle.bundle)
    assert problems(report) == {("files/corpus", "dir/b.txt", "missing")}
    ok = {a.id: a.ok for a in report.artifacts}
    assert ok["files/corpus"] is False and ok["files/notes.txt"] is True


def test_verify_names_a_wrong_size_blob(small_bundle):
    blob = small_bundle.blob("models/acme/tiny", "tokenizer/vocab.txt")
    make_writable(blob)
    with open(blob, "ab") as handle:
        handle.write(b"extra")
    report = verify_bundle(small_bundle.bundle)
    assert problems(report) == {("models/acme/tiny", "tokenizer/vocab.txt", "wrong size")}


def test_a_blob_shared_by_two_artifacts_is_stored_once_and_both_are_named(tmp_path):
    shared = b"the same bytes in two artifacts\n"
    built = build_bundle(tmp_path / "b", [url_file("one.txt", shared), path_tree("tree", {"copy.txt": shared, "own.txt": b"own\n"})])
    sums = (built.root / "SHA256SUMS").read_text()
    assert [line.split()[1] for line in sums.splitlines()].count(f"blobs/sha256/{sha256(shared)}") == 1
    built.blob("files/one.txt", "one.txt").unlink()
    report = verify_bundle(built.bundle)
    assert problems(report) == {("files/one.txt", "one.txt", "missing"), ("files/tree", "copy.txt", "missing")}


def test_manifest_edited_after_sums_is_flagged(small_bundle):
    path = small_bundle.bundle.manifest_path
    text = path.read_text().replace('"name": "fast"', '"name": "edited"')
    path.write_text(text)
    report = verify_bundle(small_bundle.bundle)
    assert report.manifest_matches_sums is False and not report.ok
    assert sha256sum_check(small_bundle.root).returncode != 0


def test_delta_bundle_borrows_blobs_from_a_store(tmp_path):
    old = build_bundle(tmp_path / "old", [hf_model(), url_file()])
    new_file = url_file("new.txt", b"only in the delta\n")
    delta = build_bundle(tmp_path / "delta", [hf_model(), url_file(), new_file], store_only={new_file.id})
    # SHA256SUMS lists only the blobs the delta carries, and still checks.
    proc = run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=delta.root)
    assert len(proc.stdout.splitlines()) == 4  # the new blob, manifest.json, oci-layout, index.json
    alone = verify_bundle(delta.bundle)
    assert not alone.ok
    assert {p.artifact_id for p in alone.problems} == {"models/acme/tiny", "files/notes.txt"}
    assert {p.reason for p in alone.problems} == {"missing"}
    lent = verify_bundle(delta.bundle, store=old.bundle.store)
    assert lent.ok, lent.problems
    assert lent.blobs_from_store == len(old.manifest.all_blobs())


def test_a_directory_without_a_manifest_is_not_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no manifest.json"):
        Bundle(tmp_path / "empty").read_manifest()


def test_write_manifest_leaves_no_temp_files(small_bundle):
    names = set(os.listdir(small_bundle.root)) - {".tmp"}
    assert names == {"SHA256SUMS", "blobs", "manifest.json", "oci-layout", "index.json"}
    tmp = small_bundle.root / ".tmp"
    assert not tmp.exists() or os.listdir(tmp) == []

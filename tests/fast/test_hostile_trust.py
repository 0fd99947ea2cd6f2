"""Rollback, expiry and `serve --pubkey`: what a validly signed but old, expired or tampered bundle gets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from airlift.bundle.layout import SIGNATURE
from airlift.bundle.manifest import Lineage, Manifest
from airlift.bundle.signing import check_signature, keygen, sign, trusted_manifest
from airlift.cli.main import main
from airlift.ingest import rollback
from airlift.serve.catalog import Catalog
from airlift.serve.server import build_app
from airlift.util.errors import WorkError
from tests.fast.conftest import build_bundle, make_writable, serving, url_file


@pytest.fixture
def keys(tmp_path):
    return keygen(tmp_path / "keys" / "site")


def dated(root: Path, created: str, data: bytes, *, since: Lineage | None = None):
    built = build_bundle(root, [url_file("notes.txt", data)], name="nightly")
    manifest = Manifest(name="nightly", created=created, since=since, artifacts=built.manifest.artifacts)
    sha = built.bundle.write_manifest(manifest)
    return built.bundle, manifest, sha


# -- 2. rollback ------------------------------------------------------------------------------------
def test_an_older_bundle_of_the_same_name_is_refused_naming_both(tmp_path):
    shared = tmp_path / "shared"
    _, june, june_sha = dated(tmp_path / "june", "2026-06-01T00:00:00Z", b"june\n")
    _, january, january_sha = dated(tmp_path / "january", "2026-01-01T00:00:00Z", b"january\n")
    assert rollback.check(shared, june, june_sha, origin="june") is None
    rollback.record(shared, june, june_sha)
    with pytest.raises(rollback.RollbackError) as info:
        rollback.check(shared, january, january_sha, origin="january")
    message = str(info.value)
    assert "2026-01-01" in message and "2026-06-01" in message and january_sha[:12] in message and june_sha[:12] in message
    assert "--allow-older" in message and "\n" not in message
    # The same bundle again (a rerun) and a newer one pass.
    rollback.check(shared, june, june_sha, origin="june")
    _, july, july_sha = dated(tmp_path / "july", "2026-07-01T00:00:00Z", b"july\n")
    rollback.check(shared, july, july_sha, origin="july")


def test_allow_older_is_recorded_and_the_mark_stays_at_the_newest(tmp_path):
    shared = tmp_path / "shared"
    _, june, june_sha = dated(tmp_path / "june", "2026-06-01T00:00:00Z", b"june\n")
    _, january, january_sha = dated(tmp_path / "january", "2026-01-01T00:00:00Z", b"january\n")
    rollback.record(shared, june, june_sha)
    rollback.check(shared, january, january_sha, origin="january", allow_older=True)
    mark = rollback.record(shared, january, january_sha)
    assert mark.manifest_sha256 == june_sha
    assert [(o.manifest_sha256, o.over_manifest_sha256) for o in mark.overrides] == [(january_sha, june_sha)]
    on_disk = json.loads((shared / rollback.mark_path("nightly")).read_text())
    assert on_disk["overrides"][0]["created"] == "2026-01-01T00:00:00Z"
    with pytest.raises(rollback.RollbackError):  # the override was for that ingest only
        rollback.check(shared, january, january_sha, origin="january")


def test_a_delta_built_on_the_mark_is_newer_by_lineage(tmp_path):
    shared = tmp_path / "shared"
    _, june, june_sha = dated(tmp_path / "june", "2026-06-01T00:00:00Z", b"june\n")
    rollback.record(shared, june, june_sha)
    # Its clock says earlier (a skewed build host), but it names the marked bundle as its base.
    lineage = Lineage(manifest_sha256=june_sha, name="nightly", created=june.created)
    _, delta, delta_sha = dated(tmp_path / "delta", "2026-05-31T00:00:00Z", b"delta\n", since=lineage)
    rollback.check(shared, delta, delta_sha, origin="delta")


def test_a_broken_mark_refuses_instead_of_forgetting(tmp_path):
    shared = tmp_path / "shared"
    _, june, june_sha = dated(tmp_path / "june", "2026-06-01T00:00:00Z", b"june\n")
    rollback.record(shared, june, june_sha)
    (shared / rollback.mark_path("nightly")).write_text("{not json")
    with pytest.raises(WorkError, match="rollback mark"):
        rollback.check(shared, june, june_sha, origin="june")


def test_ingest_cli_refuses_a_rollback_with_exit_1_before_writing(tmp_path, capsys):
    shared = tmp_path / "shared"
    _, june, june_sha = dated(tmp_path / "june", "2026-06-01T00:00:00Z", b"june\n")
    rollback.record(shared, june, june_sha)
    dated(tmp_path / "january", "2026-01-01T00:00:00Z", b"january\n")
    site = tmp_path / "site.yaml"
    site.write_text(f"shared_root: {shared}\n")
    before = sorted(p.relative_to(shared) for p in shared.rglob("*"))
    code = main(["ingest", str(tmp_path / "january"), "--site", str(site)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "older" in err and "2026-06-01" in err
    assert sorted(p.relative_to(shared) for p in shared.rglob("*")) == before


# -- expiry -----------------------------------------------------------------------------------------
def test_an_expired_signature_is_refused_and_an_unexpired_one_passes(small_bundle, keys):
    key, pub = keys
    sign(small_bundle.bundle, key, expires_in=3600)
    assert "valid until" in check_signature(small_bundle.bundle, [pub])
    sign(small_bundle.bundle, key, expires_in=-1)  # (the CLI refuses a non-positive --expires)
    with pytest.raises(WorkError, match="expired"):
        trusted_manifest(small_bundle.bundle, [pub])
    with pytest.raises(WorkError, match="expired"):
        Catalog.open(small_bundle.root, trusted_keys=[pub])  # serve refuses before it listens


def test_the_expiry_is_under_the_signature(small_bundle, keys):
    key, pub = keys
    sign(small_bundle.bundle, key, expires_in=-1)
    path = small_bundle.root / SIGNATURE
    signature_line, expires_line = path.read_text().splitlines()
    path.write_text(f"{signature_line}\nexpires 2999-01-01T00:00:00Z\n")  # pushed forward
    with pytest.raises(WorkError, match="does not match its signature"):
        check_signature(small_bundle.bundle, [pub])
    path.write_text(f"{signature_line}\n")  # removed
    with pytest.raises(WorkError, match="does not match its signature"):
        check_signature(small_bundle.bundle, [pub])
    assert base64.b64decode(signature_line) and expires_line.startswith("expires ")


def test_without_expires_a_signature_behaves_as_before(small_bundle, keys):
    key, pub = keys
    sign(small_bundle.bundle, key)
    assert (small_bundle.root / SIGNATURE).read_text().count("\n") == 1
    assert check_signature(small_bundle.bundle, [pub]).startswith("valid (key SHA256:")


def test_sign_cli_takes_expires_and_ingest_refuses_the_expired_bundle(small_bundle, keys, tmp_path, capsys):
    key, pub = keys
    assert main(["sign", str(small_bundle.root), "--key", str(key), "--expires", "nonsense"]) == 2
    sign(small_bundle.bundle, key, expires_in=-5)
    shared = tmp_path / "shared"
    site = tmp_path / "site.yaml"
    site.write_text(f"shared_root: {shared}\n")
    code = main(["ingest", str(small_bundle.root), "--site", str(site), "--pubkey", str(pub)])
    assert code == 1 and "expired" in capsys.readouterr().err
    assert not shared.exists() or not any(shared.rglob("*"))


# -- 4. serve --pubkey serves only signed bytes ----------------------------------------------------------
def test_serve_with_pubkey_never_serves_bytes_that_do_not_hash_to_the_signed_digest(tmp_path, keys):
    key, pub = keys
    built = build_bundle(tmp_path / "bundle", [url_file("notes.txt", b"signed notes\n"), url_file("other.txt", b"other\n")])
    sign(built.bundle, key)
    tampered = built.blob("files/notes.txt", "notes.txt")
    make_writable(tampered)
    tampered.write_bytes(b"evil!! notes\n")  # same size: a size check alone would serve it
    catalog = Catalog.open(built.root, trusted_keys=[pub])
    with serving(build_app(catalog)) as base:
        bad = httpx.get(f"{base}/files/files/notes.txt")
        good = httpx.get(f"{base}/files/files/other.txt")
        # Changed after the rehash at start: no longer served either.
        other = built.blob("files/other.txt", "other.txt")
        make_writable(other)
        other.write_bytes(b"OTHER\n")
        later = httpx.get(f"{base}/files/files/other.txt")
    assert bad.status_code == 404 and b"evil" not in bad.content
    assert good.status_code == 200 and good.content == b"other\n"
    assert later.status_code == 404

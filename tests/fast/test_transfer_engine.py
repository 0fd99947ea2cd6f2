"""The one transfer engine, in-process, over every kind of endpoint: a directory, S3 (moto's in-process
mock of the S3 API: no server, no socket) and ssh (a stand-in `ssh` on PATH that runs the remote command
here, so the real rsync and the real far-side shell pipelines run; no sshd).

Each scenario runs over each remote kind: what DEST proves it holds is not sent again, a damaged blob is
sent again, `--recheck` is not fooled by a stamp or by S3's metadata, a delta leaves its lineage's blobs
alone, and the pull back verifies.
"""

from __future__ import annotations

import ast
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from airlift.bundle.layout import DERIVED_FILES, MANIFEST, SIGNATURE, TOP_FILES, Bundle
from airlift.bundle.manifest import Lineage, Manifest, now_iso
from airlift.bundle.verify import verify_bundle
from airlift.transport import base as transport_base
from airlift.transport.base import Endpoint, TransferResult
from airlift.transport.engine import check_pair, parse_endpoint, plan_transfer, transfer
from airlift.transport.local import DirEndpoint
from airlift.transport.s3 import S3Endpoint
from airlift.transport.ssh import SshEndpoint
from airlift.util.errors import InputError, WorkError
from tests.fast.conftest import Built, build_bundle, hf_model, make_writable, path_tree, sha256, url_file

TRANSPORT = Path(transport_base.__file__).parent
KINDS = ("dir", "s3", "ssh")
BUCKET = "fast-engine"

FAKE_SSH = """#!/bin/sh
# A stand-in for ssh: drop the options, take the host, run the rest here (as sshd would run it there).
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-i|-l) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
shift  # the host
exec sh -c "$*"
"""


@pytest.fixture
def fake_ssh(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path_factory.mktemp("fake-ssh-bin")
    script = bin_dir / "ssh"
    script.write_text(FAKE_SSH)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


@pytest.fixture
def mock_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fast")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fast-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


def _remote(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "remote") -> Endpoint:
    """The destination of kind `kind`, with the stand-in it needs."""
    if kind == "dir":
        return DirEndpoint(str(tmp_path / name))
    if kind == "s3":
        request.getfixturevalue("mock_s3")
        return S3Endpoint(f"s3://{BUCKET}/drops/{name}", argument="--to", state_dir=tmp_path / "s3-state")
    request.getfixturevalue("fake_ssh")
    return SshEndpoint(f"ssh://nobody@far.example:2222{tmp_path / name}", argument="--to")


def _same_remote(endpoint: Endpoint, tmp_path: Path) -> Endpoint:
    """A fresh endpoint object for the same place (as a second run would build)."""
    if isinstance(endpoint, S3Endpoint):
        return S3Endpoint(endpoint.text, argument="--to", state_dir=tmp_path / "s3-state")
    if isinstance(endpoint, SshEndpoint):
        return SshEndpoint(endpoint.text, argument="--to")
    return DirEndpoint(endpoint.text)


def _damage_remote(endpoint: Endpoint, digest: str, *, keep_stamp: bool = False) -> None:
    """Replace one blob's bytes at DEST with other bytes of the same size (S3: still claiming airlift's sha256)."""
    if isinstance(endpoint, S3Endpoint):
        key = endpoint.key(f"blobs/sha256/{digest}")
        size = endpoint.s3.head_object(Bucket=endpoint.bucket, Key=key)["ContentLength"]
        endpoint.s3.put_object(Bucket=endpoint.bucket, Key=key, Body=b"\xfe" * size, Metadata={"sha256": digest})
        return
    root = Path(endpoint.place.path) if isinstance(endpoint, SshEndpoint) else Path(endpoint.text)
    path = root / "blobs" / "sha256" / digest
    info = path.stat()
    make_writable(path)
    with open(path, "r+b") as handle:
        handle.write(b"\xfe" * info.st_size)
    os.chmod(path, info.st_mode & 0o777)
    if keep_stamp:
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _src(tmp_path: Path) -> Built:
    return build_bundle(tmp_path / "src", [hf_model(), url_file(), path_tree()])


def _delta(tmp_path: Path) -> tuple[Built, Built]:
    drafts = [hf_model(), url_file(), path_tree()]
    old = build_bundle(tmp_path / "old", drafts, name="mirror")
    delta = build_bundle(tmp_path / "delta", drafts, name="mirror", store_only={"files/notes.txt"})
    lineage = Lineage(manifest_sha256=old.bundle.manifest_sha256(), name="mirror", created=old.manifest.created)
    delta.bundle.write_manifest(Manifest(name="mirror", created=now_iso(), since=lineage, artifacts=delta.manifest.artifacts))
    return old, delta


# -- parsing: one typed endpoint per form --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "cls"),
    [("bundle", DirEndpoint), ("/abs/bundle", DirEndpoint), ("s3://my-bucket/a/b", S3Endpoint), ("s3://my-bucket", S3Endpoint),
     ("ssh://host/abs/path", SshEndpoint), ("ssh://user@host:2200/abs/path", SshEndpoint)],
)
def test_each_form_parses_to_its_endpoint(text: str, cls: type) -> None:
    endpoint = parse_endpoint(text, argument="SRC")
    assert type(endpoint) is cls and endpoint.text == text
    assert isinstance(endpoint, Endpoint)  # every endpoint satisfies the one protocol


def test_ssh_and_s3_fields() -> None:
    ssh = parse_endpoint("ssh://user@host:2200/abs/path/", argument="--to")
    assert isinstance(ssh, SshEndpoint)
    assert (ssh.place.user, ssh.place.host, ssh.place.port, ssh.root) == ("user", "host", 2200, "/abs/path")
    s3 = parse_endpoint("s3://my-bucket/a/b/", argument="--to", s3_endpoint="http://127.0.0.1:9")
    assert isinstance(s3, S3Endpoint)
    assert (s3.bucket, s3.prefix, s3.key("manifest.json"), s3.endpoint_url) == ("my-bucket", "a/b", "a/b/manifest.json", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("text", "needle"),
    [("ftp://h/p", "only paths, ssh:// and s3://"), ("s3://Bad_Bucket/x", "is not s3://bucket/prefix"), ("s3://a/x", "is not s3://bucket/prefix"),
     ("ssh://host/relative:x", None), ("ssh://host", "is not ssh://"), ("ssh://host:port/abs", "is not ssh://")],
)
def test_a_bad_endpoint_is_input_error_naming_the_argument(text: str, needle: str | None) -> None:
    if needle is None:  # a colon inside an absolute path is a path, not a port
        assert isinstance(parse_endpoint(text, argument="--to"), SshEndpoint)
        return
    with pytest.raises(InputError, match="--to") as caught:
        parse_endpoint(text, argument="--to")
    assert needle in str(caught.value) and caught.value.exit_code == 2


@pytest.mark.parametrize(("src", "dest"), [("s3://bkt-a/x", "s3://bkt-b/y"), ("s3://bkt-a/x", "ssh://h/p"), ("ssh://h/p", "ssh://g/q")])
def test_two_remote_sides_are_refused_before_any_work(src: str, dest: str) -> None:
    with pytest.raises(InputError, match="one side must be a local directory"):
        check_pair(parse_endpoint(src, argument="SRC"), parse_endpoint(dest, argument="--to"))


def test_transports_spell_no_top_level_file_name() -> None:
    """The small files come from bundle/layout.TOP_FILES: a file added there travels by every transport."""
    names = {*TOP_FILES, MANIFEST}
    for module in TRANSPORT.glob("*.py"):
        literals = {n.value for n in ast.walk(ast.parse(module.read_text())) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not literals & names, f"{module.name} spells {sorted(literals & names)}"
    assert MANIFEST not in TOP_FILES and set(TOP_FILES) > set(DERIVED_FILES) and SIGNATURE not in DERIVED_FILES


# -- the same scenarios over every kind ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_push_sends_everything_once_then_nothing(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    src = _src(tmp_path)
    dest = _remote(kind, tmp_path, request)
    first = transfer(DirEndpoint(str(src.root)), dest)
    sizes = {d: src.bundle.store.blob_path(d).stat().st_size for d in src.manifest.all_blobs()}
    assert (first.blobs_sent, first.bytes_sent, first.blobs_present, first.blobs_resent) == (6, sum(sizes.values()), 0, 0)
    assert first.artifacts["models/acme/tiny"]["blobs_sent"] == 3 and sum(a["blobs_sent"] for a in first.artifacts.values()) == 6
    assert first.src == str(src.root) and first.dest == dest.text
    again = transfer(DirEndpoint(str(src.root)), _same_remote(dest, tmp_path))
    assert (again.blobs_sent, again.bytes_sent, again.blobs_present, again.artifacts) == (0, 0, 6, {})
    assert "0 blobs (0 B) sent, 6 already there; verified" in again.summary()


@pytest.mark.parametrize("kind", KINDS)
def test_the_manifest_goes_last_and_the_small_files_travel(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    src = _src(tmp_path)
    (src.root / SIGNATURE).write_bytes(b"c2lnbmF0dXJl\n")  # any bytes: a transfer carries, never judges, the signature
    dest = _remote(kind, tmp_path, request)
    transfer(DirEndpoint(str(src.root)), dest)
    for name in (*TOP_FILES, MANIFEST):
        if (src.root / name).exists():
            assert dest.read_small(name) == (src.root / name).read_bytes(), name
    assert dest.read_manifest() == src.bundle.manifest_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_back_verifies_with_identical_manifest(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    src = _src(tmp_path)
    (src.root / SIGNATURE).write_bytes(b"c2lnbmF0dXJl\n")
    remote = _remote(kind, tmp_path, request)
    transfer(DirEndpoint(str(src.root)), remote)
    back = transfer(_same_remote(remote, tmp_path), DirEndpoint(str(tmp_path / "back")))
    assert (back.blobs_sent, back.blobs_present) == (6, 0)
    pulled = Bundle(tmp_path / "back")
    assert pulled.manifest_bytes() == src.bundle.manifest_bytes()
    assert (tmp_path / "back" / SIGNATURE).read_bytes() == b"c2lnbmF0dXJl\n"
    assert (tmp_path / "back" / "SHA256SUMS").read_bytes() == (src.root / "SHA256SUMS").read_bytes()
    report = verify_bundle(pulled)
    assert report.ok and report.blobs_checked == 6
    assert transfer(_same_remote(remote, tmp_path), DirEndpoint(str(tmp_path / "back"))).blobs_sent == 0  # stamps: nothing again


@pytest.mark.parametrize("kind", ("dir", "ssh"))
def test_a_damaged_blob_at_dest_is_moved_aside_and_sent_again(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    src = _src(tmp_path)
    dest = _remote(kind, tmp_path, request)
    transfer(DirEndpoint(str(src.root)), dest)
    victim = sha256(b"\x00weights" * 64)
    _damage_remote(dest, victim)
    repaired = transfer(DirEndpoint(str(src.root)), _same_remote(dest, tmp_path))
    assert (repaired.blobs_sent, repaired.blobs_present, repaired.blobs_resent) == (1, 5, 1)
    assert repaired.artifacts == {"models/acme/tiny": {"blobs_sent": 1, "bytes_sent": len(b"\x00weights" * 64)}}
    root = tmp_path / "remote"
    assert (root / "blobs" / "sha256" / victim).read_bytes() == b"\x00weights" * 64
    assert (root / ".corrupt" / victim).read_bytes() == b"\xfe" * len(b"\x00weights" * 64)


@pytest.mark.parametrize("kind", KINDS)
def test_recheck_finds_damage_a_stamp_or_metadata_hides(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    src = _src(tmp_path)
    dest = _remote(kind, tmp_path, request)
    transfer(DirEndpoint(str(src.root)), dest)
    victim = sha256(b"\x00weights" * 64)
    _damage_remote(dest, victim, keep_stamp=True)
    trusted = transfer(DirEndpoint(str(src.root)), _same_remote(dest, tmp_path))
    assert trusted.blobs_sent == 0  # a matching stamp (S3: size and sha256 metadata) is believed
    rechecked = transfer(DirEndpoint(str(src.root)), _same_remote(dest, tmp_path), recheck=True)
    assert (rechecked.blobs_sent, rechecked.blobs_resent, rechecked.blobs_present) == (1, 1, 5)
    again = transfer(DirEndpoint(str(src.root)), _same_remote(dest, tmp_path), recheck=True)
    assert (again.blobs_sent, again.blobs_resent) == (0, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_delta_leaves_its_lineage_alone_both_ways(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    old, delta = _delta(tmp_path)
    remote = _remote(kind, tmp_path, request)
    sent = transfer(DirEndpoint(str(delta.root)), remote)
    assert (sent.blobs_sent, sent.blobs_lent) == (1, 5) and sent.lineage and sent.lineage.startswith("mirror (built ")
    assert "5 blobs left to the lineage mirror" in sent.summary()
    back = transfer(_same_remote(remote, tmp_path), DirEndpoint(str(tmp_path / "back")))
    assert (back.blobs_sent, back.blobs_lent) == (1, 5)
    assert verify_bundle(Bundle(tmp_path / "back"), store=old.bundle.store).ok
    alone = verify_bundle(Bundle(tmp_path / "back"))
    assert "models/acme/tiny: config.json: missing" in "; ".join(p.describe() for p in alone.problems)


@pytest.mark.parametrize("kind", ("s3", "ssh"))
def test_a_source_missing_blobs_it_does_not_lend_is_refused_before_sending(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    orphan = build_bundle(tmp_path / "orphan", [hf_model(), url_file()], store_only={"files/notes.txt"})
    dest = _remote(kind, tmp_path, request)
    with pytest.raises(WorkError, match=r"files missing \(and the bundle is not a delta that lends them\).*models/acme/tiny: config\.json"):
        plan_transfer(DirEndpoint(str(orphan.root)), dest)


def test_a_dir_dest_that_is_a_file_is_input_error(tmp_path: Path) -> None:
    src = _src(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        transfer(DirEndpoint(str(src.root)), DirEndpoint(str(tmp_path / "file")))


def test_a_source_that_is_not_a_bundle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        transfer(DirEndpoint(str(tmp_path / "empty")), DirEndpoint(str(tmp_path / "dest")))


def test_s3_pull_of_a_prefix_without_a_manifest_names_it(tmp_path: Path, mock_s3) -> None:  # noqa: ANN001 - the moto client
    mock_s3.create_bucket(Bucket=BUCKET)
    with pytest.raises(InputError, match="no manifest.json there"):
        transfer(S3Endpoint(f"s3://{BUCKET}/nothing", argument="SRC"), DirEndpoint(str(tmp_path / "dest")))


def test_s3_push_creates_the_bucket_once_and_objects_carry_their_sha256(tmp_path: Path, mock_s3) -> None:  # noqa: ANN001
    src = _src(tmp_path)
    dest = S3Endpoint(f"s3://{BUCKET}/b", argument="--to", state_dir=tmp_path / "state")
    transfer(DirEndpoint(str(src.root)), dest)
    for digest in src.manifest.all_blobs():
        head = mock_s3.head_object(Bucket=BUCKET, Key=f"b/blobs/sha256/{digest}")
        assert head["Metadata"]["sha256"] == digest
    assert dest._client is not None and dest.s3 is dest._client  # one client for the endpoint's whole run


def test_ssh_records_stamps_on_the_far_side_for_what_it_hashed(tmp_path: Path, fake_ssh: Path) -> None:
    from airlift.bundle.stamps import read_stamps

    src = _src(tmp_path)
    dest = SshEndpoint(f"ssh://far{tmp_path / 'remote'}", argument="--to")
    transfer(DirEndpoint(str(src.root)), dest)
    assert set(read_stamps(tmp_path / "remote")) == src.manifest.all_blobs()


def test_result_json_has_counts_bytes_and_per_artifact_rows(tmp_path: Path) -> None:
    src = _src(tmp_path)
    result = transfer(DirEndpoint(str(src.root)), DirEndpoint(str(tmp_path / "dest")))
    body = TransferResult.model_validate_json(result.model_dump_json()).model_dump(mode="json")
    assert {"dest", "src", "blobs_sent", "bytes_sent", "blobs_present", "blobs_resent", "blobs_lent", "lineage", "artifacts"} <= set(body)
    assert set(body["artifacts"]) == {"models/acme/tiny", "files/notes.txt", "files/corpus"}
    assert sum(row["bytes_sent"] for row in body["artifacts"].values()) == body["bytes_sent"]

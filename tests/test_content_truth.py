"""Content is the truth at every hop, against the real services: a `path:` source edited after the build,
a damaged blob already at DEST (directory, ssh, S3), and a delta bundle sent to a fresh destination."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import boto3

from airlift.bundle import stamps
from tests.conftest import need, sha256sum_check
from tests.fixtures import add_model, pseudo_random, sha256
from tests.test_transport import SSH_OPTS


def _damage(path: Path, *, keep_mtime: bool = False) -> None:
    """Overwrite a blob's bytes in place, same size; optionally put its mtime back (what bit rot looks like)."""
    info = path.stat()
    os.chmod(path, 0o644)
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    os.chmod(path, info.st_mode & 0o777)
    if keep_mtime:
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _delta_pair(ws, hub, name: str, *, seed: int) -> dict[str, bytes]:
    """Bundles v1 and v2 (a delta since v1 carrying only the changed config.json); returns v2's files."""
    base = {"config.json": b'{"v": 1}\n', "model.safetensors": pseudo_random(900_000, seed), "tokenizer.json": b"{}\n"}
    hub.add_repo("model", f"acme/{name}", files=base)
    spec = ws.write(f"{name}.yaml", f"name: {name}\nmodels:\n  - hf: acme/{name}\n")
    ws.run("build", str(spec), "--out", "v1")
    changed = {**base, "config.json": b'{"v": 2}\n'}
    hub.add_repo("model", f"acme/{name}", files=changed)
    ws.run("build", str(spec), "--out", "v2", "--since", "v1")
    evidence = json.loads((ws.root / "v2" / "manifest.json").read_text())["evidence"]  # v2's own SBOM and provenance
    assert len([p for p in (ws.root / "v2" / "blobs" / "sha256").iterdir() if p.name not in (evidence["sbom_sha256"], evidence["provenance_sha256"])]) == 1
    return changed


def test_editing_a_path_source_after_the_build_leaves_the_bundle_whole(ws):
    src = ws.root / "run7"
    src.mkdir()
    original = pseudo_random(700_000, 901)
    (src / "weights.bin").write_bytes(original)
    (src / "notes.txt").write_text("epoch 7\n")
    ws.run("build", str(ws.write("p.yaml", f"name: p\ndatasets:\n  - path: {src}\n")), "--out", "bundle")
    with open(src / "weights.bin", "r+b") as handle:  # the user keeps working on the live file
        handle.seek(1000)
        handle.write(b"\x00" * 64)
    assert "OK:" in ws.run("verify", "bundle").stdout
    # verify stamped what it rehashed, so a transfer into this directory need not hash it again.
    assert sha256(original) in stamps.matching(ws.root / "bundle", [sha256(original)])
    for store in (ws.root / "cache", ws.root / "bundle"):
        blob = store / "blobs" / "sha256" / sha256(original)
        assert blob.read_bytes() == original
        assert blob.stat().st_mode & 0o777 == 0o444
        assert blob.stat().st_ino != (src / "weights.bin").stat().st_ino


def test_a_same_size_corruption_at_a_dir_dest_is_repaired(ws, hub):
    add_model(hub, "acme/truth-model", weights_size=1_200_000, seed=911)
    ws.run("build", str(ws.write("t.yaml", "name: t\nmodels:\n  - hf: acme/truth-model\n")), "--out", "bundle")
    ws.run("transfer", "bundle", "--to", "dest")
    victim = max((ws.root / "dest" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    good = victim.read_bytes()

    _damage(victim)
    repaired = ws.run("transfer", "bundle", "--to", "dest").stdout
    assert "1 blobs" in repaired and "5 already there" in repaired and "re-sent 1 damaged blobs" in repaired, repaired  # 3 + SBOM, provenance
    assert victim.read_bytes() == good
    assert (ws.root / "dest" / ".corrupt" / victim.name).exists()

    # Bytes changed behind the filesystem's back (mtime put back) escape the stamp: --recheck rehashes all.
    _damage(victim, keep_mtime=True)
    rechecked = ws.run("transfer", "bundle", "--to", "dest", "--recheck").stdout
    assert "re-sent 1 damaged blobs" in rechecked, rechecked
    assert victim.read_bytes() == good
    assert sha256sum_check(ws.root / "dest").returncode == 0
    assert "OK:" in ws.run("verify", "dest").stdout


def test_a_delta_transfers_to_a_fresh_directory(ws, hub):
    _delta_pair(ws, hub, "truth-delta", seed=921)
    out = ws.run("transfer", "v2", "--to", "fresh").stdout
    assert "3 blobs" in out and "2 blobs left to the lineage truth-delta" in out, out  # config.json + its SBOM, provenance
    assert "OK:" in ws.run("verify", "fresh", "--store", "v1").stdout
    alone = ws.run("verify", "fresh", expect=1).stdout
    assert "model.safetensors: missing" in alone and "tokenizer.json: missing" in alone


def test_a_delta_and_a_damaged_blob_over_ssh(ws, hub, services):
    url, key = services.get("AIRLIFT_SSH_URL"), services.get("AIRLIFT_SSH_KEY")
    if not url:
        need("sshd", "no endpoint recorded")
    files = _delta_pair(ws, hub, "truth-ssh", seed=931)
    remote = f"{url}{ws.root}/remote"
    first = ws.run("transfer", "v2", "--to", remote, "--ssh-key", key, *SSH_OPTS).stdout
    assert "2 blobs left to the lineage truth-ssh" in first, first
    assert (ws.root / "remote" / ".airlift" / "verified.json").is_file()

    blob = ws.root / "remote" / "blobs" / "sha256" / sha256(files["config.json"])
    _damage(blob)
    repaired = ws.run("transfer", "v2", "--to", remote, "--ssh-key", key, *SSH_OPTS).stdout
    assert "re-sent 1 damaged blobs" in repaired, repaired
    assert blob.read_bytes() == files["config.json"]

    back = ws.run("transfer", remote, "--to", "back", "--ssh-key", key, *SSH_OPTS).stdout
    assert "2 blobs left to the lineage truth-ssh" in back, back
    assert "OK:" in ws.run("verify", "back", "--store", "v1").stdout
    assert "model.safetensors: missing" in ws.run("verify", "back", expect=1).stdout


def test_a_delta_and_a_damaged_object_on_s3(ws, hub, s3_endpoint):
    files = _delta_pair(ws, hub, "truth-s3", seed=941)
    bucket = f"airlift-{uuid.uuid4().hex[:10]}"
    dest = f"s3://{bucket}/drop"
    first = ws.run("transfer", "v2", "--to", dest, "--s3-endpoint", s3_endpoint).stdout
    assert "2 blobs left to the lineage truth-s3" in first, first

    # An object replaced with other bytes of the same size, still claiming airlift's sha256.
    digest = sha256(files["config.json"])
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    s3.put_object(Bucket=bucket, Key=f"drop/blobs/sha256/{digest}", Body=b'{"v": 9}\n', Metadata={"sha256": digest})
    trusted = ws.run("transfer", "v2", "--to", dest, "--s3-endpoint", s3_endpoint).stdout
    assert "0 blobs (0 B) sent" in trusted  # size and metadata are what S3 proves without --recheck
    rechecked = ws.run("transfer", "v2", "--to", dest, "--s3-endpoint", s3_endpoint, "--recheck").stdout
    assert "1 blobs" in rechecked and "re-sent 1 damaged blobs" in rechecked, rechecked
    assert s3.get_object(Bucket=bucket, Key=f"drop/blobs/sha256/{digest}")["Body"].read() == files["config.json"]

    back = ws.run("transfer", dest, "--to", "back", "--s3-endpoint", s3_endpoint).stdout
    assert "2 blobs left to the lineage truth-s3" in back, back
    assert "OK:" in ws.run("verify", "back", "--store", "v1").stdout
    assert "tokenizer.json: missing" in ws.run("verify", "back", expect=1).stdout


def test_mirror_refresh_sends_its_delta_to_a_fresh_directory(ws, hub):
    base = {"config.json": b'{"v": 1}\n', "model.safetensors": pseudo_random(600_000, 951), "tokenizer.json": b"{}\n"}
    hub.add_repo("model", "acme/truth-mirror", files=base)
    spec = ws.write("m.yaml", "name: truth-mirror\nmodels:\n  - hf: acme/truth-mirror\n    revision: main\n")
    ws.run("mirror-refresh", str(spec), "--bundles-dir", "mirrors", "--transfer-to", "drop-1")
    hub.add_repo("model", "acme/truth-mirror", files={**base, "config.json": b'{"v": 2}\n'})
    out = ws.run("mirror-refresh", str(spec), "--bundles-dir", "mirrors", "--transfer-to", "drop-2").stdout
    assert "delta since" in out, out
    first, _ = sorted((ws.root / "mirrors").iterdir())
    evidence = json.loads((ws.root / "drop-2" / "manifest.json").read_text())["evidence"]  # the delta's own SBOM and provenance
    carried = [p for p in (ws.root / "drop-2" / "blobs" / "sha256").iterdir() if p.name not in (evidence["sbom_sha256"], evidence["provenance_sha256"])]
    assert [p.read_bytes() for p in carried] == [b'{"v": 2}\n']
    assert "OK:" in ws.run("verify", "drop-2", "--store", str(first)).stdout
    assert "model.safetensors: missing" in ws.run("verify", "drop-2", expect=1).stdout

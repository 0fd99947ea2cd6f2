"""Content is the truth at every hop, against the real services: a damaged blob already at an ssh or S3
DEST, a delta bundle sent there and back, and mirror-refresh's delta. (The directory-only cases, which
need no service, are in tests/fast/test_content_truth.py.)"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import boto3

from tests.conftest import need, problems, verified
from tests.fixtures import pseudo_random, sha256
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


def test_a_delta_and_a_damaged_blob_over_ssh(ws, hub, services):
    url, key = services.get("AIRLIFT_SSH_URL"), services.get("AIRLIFT_SSH_KEY")
    if not url:
        need("sshd", "no endpoint recorded")
    files = _delta_pair(ws, hub, "truth-ssh", seed=931)
    remote = f"{url}{ws.root}/remote"
    first = ws.json("transfer", "v2", "--to", remote, "--ssh-key", key, *SSH_OPTS)
    assert first["blobs_lent"] == 2 and first["lineage"].startswith("truth-ssh "), first
    assert (ws.root / "remote" / ".airlift" / "verified.json").is_file()

    blob = ws.root / "remote" / "blobs" / "sha256" / sha256(files["config.json"])
    _damage(blob)
    repaired = ws.json("transfer", "v2", "--to", remote, "--ssh-key", key, *SSH_OPTS)
    assert repaired["blobs_resent"] == 1, repaired
    assert blob.read_bytes() == files["config.json"]

    back = ws.json("transfer", remote, "--to", "back", "--ssh-key", key, *SSH_OPTS)
    assert back["blobs_lent"] == 2 and back["lineage"].startswith("truth-ssh "), back
    assert verified(ws.root / "back", store=ws.root / "v1").ok
    assert "model.safetensors: missing" in problems(verified(ws.root / "back", ok=False))


def test_a_delta_and_a_damaged_object_on_s3(ws, hub, s3_endpoint):
    files = _delta_pair(ws, hub, "truth-s3", seed=941)
    bucket = f"airlift-{uuid.uuid4().hex[:10]}"
    dest = f"s3://{bucket}/drop"
    first = ws.json("transfer", "v2", "--to", dest, "--s3-endpoint", s3_endpoint)
    assert first["blobs_lent"] == 2 and first["lineage"].startswith("truth-s3 "), first

    # An object replaced with other bytes of the same size, still claiming airlift's sha256.
    digest = sha256(files["config.json"])
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    s3.put_object(Bucket=bucket, Key=f"drop/blobs/sha256/{digest}", Body=b'{"v": 9}\n', Metadata={"sha256": digest})
    trusted = ws.json("transfer", "v2", "--to", dest, "--s3-endpoint", s3_endpoint)
    assert (trusted["blobs_sent"], trusted["bytes_sent"]) == (0, 0)  # size and metadata are what S3 proves without --recheck
    rechecked = ws.json("transfer", "v2", "--to", dest, "--s3-endpoint", s3_endpoint, "--recheck")
    assert (rechecked["blobs_sent"], rechecked["blobs_resent"]) == (1, 1), rechecked
    assert s3.get_object(Bucket=bucket, Key=f"drop/blobs/sha256/{digest}")["Body"].read() == files["config.json"]

    back = ws.json("transfer", dest, "--to", "back", "--s3-endpoint", s3_endpoint)
    assert back["blobs_lent"] == 2 and back["lineage"].startswith("truth-s3 "), back
    assert verified(ws.root / "back", store=ws.root / "v1").ok
    assert "tokenizer.json: missing" in problems(verified(ws.root / "back", ok=False))


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
    assert verified(ws.root / "drop-2", store=first).ok
    assert "model.safetensors: missing" in problems(verified(ws.root / "drop-2", ok=False))

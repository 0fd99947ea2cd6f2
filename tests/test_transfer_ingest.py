"""Transfer to a directory, then ingest into the real S3 server and a shared root read by huggingface_hub."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import boto3

from tests.conftest import sha256sum_check
from tests.fixtures import add_dataset, add_model, pseudo_random


def _s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="airlift-test", aws_secret_access_key="airlift-test-secret")


def test_transfer_sends_only_missing_blobs_and_verifies(ws, hub):
    add_model(hub, "acme/xfer-model", weights_size=800_000, seed=21)
    spec = ws.write("xfer.yaml", "name: xfer\nmodels:\n  - hf: acme/xfer-model\n")
    ws.run("build", str(spec), "--out", "bundle")
    first = ws.run("transfer", "bundle", "--to", "dest").stdout
    assert "6 blobs" in first and "verified" in first  # 4 of the model + its SBOM and provenance blobs
    assert sha256sum_check(ws.root / "dest").returncode == 0
    assert (ws.root / "dest" / "manifest.json").read_bytes() == (ws.root / "bundle" / "manifest.json").read_bytes()

    second = ws.run("transfer", "bundle", "--to", "dest").stdout
    assert "0 blobs (0 B) sent, 6 already there" in second

    # A blob lost at DEST is the only one sent again.
    victim = next((ws.root / "dest" / "blobs" / "sha256").iterdir())
    victim.unlink()
    third = ws.run("transfer", "bundle", "--to", "dest").stdout
    assert "1 blobs" in third and "5 already there" in third
    ws.run("verify", "dest")


def test_ingest_to_s3_and_shared_root(ws, hub, s3_endpoint):
    model = add_model(hub, "acme/ingest-model", weights_size=1_200_000, seed=31)
    dataset = add_dataset(hub, "acme/ingest-data", seed=32)
    tarball = pseudo_random(250_000, 33)
    url = hub.add_file("ingest-file.tar", tarball)
    localdir = ws.root / "checkpoint"
    (localdir / "sub").mkdir(parents=True)
    (localdir / "weights.pt").write_bytes(pseudo_random(100_000, 34))
    (localdir / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (localdir / "sub" / "run.sh").chmod(0o755)
    spec = ws.write("ingest.yaml", f"""name: ingest
models:
  - hf: acme/ingest-model
datasets:
  - hf: acme/ingest-data
  - url: {url}
  - path: {localdir}
""")
    ws.run("build", str(spec), "--out", "bundle")
    ws.run("transfer", "bundle", "--to", "inside")

    bucket = f"airlift-{uuid.uuid4().hex[:12]}"
    root = ws.root / "shared"
    site = ws.write("site.yaml", f"s3: {{endpoint_url: '{s3_endpoint}', bucket: {bucket}, prefix: shared-storage/airgap}}\nshared_root: {root}\n")
    out = ws.run("ingest", "inside", "--site", str(site)).stdout
    assert "S3 11 uploaded" in out, out

    s3 = _s3(s3_endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {
        "shared-storage/airgap/models/acme/ingest-model/config.json",
        "shared-storage/airgap/models/acme/ingest-model/tokenizer.json",
        "shared-storage/airgap/models/acme/ingest-model/model.safetensors",
        "shared-storage/airgap/models/acme/ingest-model/nested/dir/notes.txt",
        "shared-storage/airgap/datasets/acme/ingest-data/README.md",
        "shared-storage/airgap/datasets/acme/ingest-data/data/train-00000.parquet",
        "shared-storage/airgap/datasets/acme/ingest-data/data/test-00000.parquet",
        "shared-storage/airgap/datasets/acme/ingest-data/data/extra.bin",
        "shared-storage/airgap/files/ingest-file.tar",
        "shared-storage/airgap/files/checkpoint/weights.pt",
        "shared-storage/airgap/files/checkpoint/sub/run.sh",
    }
    body = s3.get_object(Bucket=bucket, Key="shared-storage/airgap/models/acme/ingest-model/model.safetensors")["Body"].read()
    assert body == model["model.safetensors"]
    stamps = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}

    # huggingface_hub itself, offline, finds the bundled repos by id in the shared root.
    probe = (
        "import json, pathlib, sys\n"
        "from huggingface_hub import snapshot_download\n"
        "out = {}\n"
        "for repo, kind in [('acme/ingest-model', 'model'), ('acme/ingest-data', 'dataset')]:\n"
        "    root = pathlib.Path(snapshot_download(repo, repo_type=kind))\n"
        "    out[repo] = {p.relative_to(root).as_posix(): p.read_bytes().hex() for p in root.rglob('*') if p.is_file()}\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in ws.env.items() if k != "HF_ENDPOINT"}
    env.update(HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert {k: bytes.fromhex(v) for k, v in got["acme/ingest-model"].items()} == model
    assert {k: bytes.fromhex(v) for k, v in got["acme/ingest-data"].items()} == dataset

    assert (root / "files" / "ingest-file.tar").read_bytes() == tarball
    assert (root / "files" / "checkpoint" / "weights.pt").read_bytes() == (localdir / "weights.pt").read_bytes()
    assert (root / "files" / "checkpoint" / "sub" / "run.sh").stat().st_mode & 0o111

    again = ws.run("ingest", "inside", "--site", str(site)).stdout
    assert "S3 0 uploaded (0 B)" in again and "shared_root 0 placed" in again, again
    assert {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == stamps


def test_ingest_refuses_a_corrupt_bundle(ws, hub, s3_endpoint):
    add_model(hub, "acme/refuse-model", weights_size=300_000, seed=41)
    spec = ws.write("refuse.yaml", "name: refuse\nmodels:\n  - hf: acme/refuse-model\n")
    ws.run("build", str(spec), "--out", "bundle")
    blob = max((ws.root / "bundle" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    blob.chmod(0o644)
    blob.write_bytes(b"tampered" + blob.read_bytes()[8:])
    root = ws.root / "shared"
    site = ws.write("site.yaml", f"shared_root: {root}\n")
    result = ws.run("ingest", "bundle", "--site", str(site), expect=1)
    assert "models/acme/refuse-model: model.safetensors: corrupt" in result.stderr
    assert not (root / "hf").exists()

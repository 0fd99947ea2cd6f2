"""Reliability: a full disk, corrupted bytes, hostile input, and secrets.

Seeded so a failure reproduces. The kill -9 trials that land in each phase are in test_kill_trials.py.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import uuid
from pathlib import Path

from tests.conftest import AIRLIFT, verified
from tests.fixtures import add_model

TRIALS = int(os.environ.get("AIRLIFT_KILL_TRIALS", "3"))


def test_full_disk_is_a_clear_error_and_leaves_no_partial_blob(ws, hub):
    add_model(hub, "acme/full-disk-model", weights_size=3_000_000, seed=601)
    spec = ws.write("fd.yaml", "name: fd\nmodels:\n  - hf: acme/full-disk-model\n")

    def limit() -> None:  # a file-size limit: writes past 1 MiB fail with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = subprocess.run([AIRLIFT, "build", str(spec), "--out", "bundle"], cwd=ws.root, env=ws.env, capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "File too large" in proc.stderr and "Traceback" not in proc.stderr
    blobs = ws.root / "cache" / "blobs" / "sha256"
    for blob in blobs.iterdir() if blobs.is_dir() else []:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, "a partial blob got a final name"
    assert not (ws.root / "bundle" / "manifest.json").exists()
    ws.run("build", str(spec), "--out", "bundle")  # with room again, it completes
    verified(ws.root / "bundle")


def test_a_corrupted_byte_is_named_and_only_that_blob_is_fetched_again(ws, hub):
    files = add_model(hub, "acme/bitrot-model", weights_size=1_000_000, seed=701)
    spec = ws.write("br.yaml", "name: br\nmodels:\n  - hf: acme/bitrot-model\n")
    ws.run("build", str(spec), "--out", "bundle")
    digest = hashlib.sha256(files["model.safetensors"]).hexdigest()
    blob = ws.root / "bundle" / "blobs" / "sha256" / digest
    blob.chmod(0o644)
    with open(blob, "r+b") as handle:
        handle.seek(123_456)
        byte = handle.read(1)
        handle.seek(123_456)
        handle.write(bytes([byte[0] ^ 1]))
    result = ws.run("verify", "bundle", expect=1)
    assert "models/acme/bitrot-model: model.safetensors: corrupt" in result.stdout
    hub.reset_counters()
    ws.run("build", str(spec), "--out", "bundle")
    assert hub.content_bytes == len(files["model.safetensors"])
    verified(ws.root / "bundle")


def test_secrets_never_reach_bundles_logs_results_or_artifacts(ws, hub, s3_endpoint, prefect_server):
    secrets = {
        "HF_TOKEN": "hf_SECRETtokenABCDEF0123456789",
        "NGC_API_KEY": "nvapi-SECRETngcKEY0123456789",
        "AWS_ACCESS_KEY_ID": "AKIASECRETACCESSKEY01",
        "AWS_SECRET_ACCESS_KEY": "SECRETsecretAccessKeyValue0123456789abcd",
    }
    add_model(hub, "acme/secret-model", weights_size=100_000, seed=901)
    spec = ws.write("sec.yaml", "name: sec\nmodels:\n  - hf: acme/secret-model\n  - ngc: nvidia/nemo/tiny-nemo:1.0\n")
    env = secrets
    ws.with_ngc_double().run("build", str(spec), "--out", "bundle", "-v", extra_env=env)
    bucket = f"sec-{uuid.uuid4().hex[:8]}"
    ws.run("transfer", "bundle", "--to", f"s3://{bucket}/drop", "--s3-endpoint", s3_endpoint, "-v", extra_env=env)
    site = ws.write("site.yaml", f"s3: {{endpoint_url: '{s3_endpoint}', bucket: {bucket}, prefix: up}}\nshared_root: {ws.root / 'root'}\n")
    ws.run("ingest", "bundle", "--site", str(site), "-v", extra_env=env)
    ws.run("verify", "bundle", extra_env=env)
    leaks = []
    for root in (ws.root, Path(prefect_server["home"])):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 100_000_000:
                data = path.read_bytes()
                leaks += [f"{name} in {path}" for name, value in secrets.items() if value.encode() in data]
    assert not leaks, leaks

"""Reliability: a full disk, corrupted bytes, hostile input, and secrets.

Seeded so a failure reproduces. The kill -9 trials that land in each phase are in test_kill_trials.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import AIRLIFT
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
    ws.run("verify", "bundle")


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
    ws.run("verify", "bundle")


def test_hostile_volume_index_and_symlinked_blob(ws, hub):
    add_model(hub, "acme/hostile-model", weights_size=200_000, seed=801)
    ws.run("build", str(ws.write("h.yaml", "name: h\nmodels:\n  - hf: acme/hostile-model\n")), "--out", "bundle")
    ws.run("pack", "bundle", "--out", "vols", "--volume-size", "64KiB")
    index_path = ws.root / "vols" / "index.json"
    original = index_path.read_text()
    for mutate in (
        lambda i: i["volumes"][0].update(name="../../escape.bin"),
        lambda i: next(iter(i["blobs"].values()))["segments"][0].__setitem__(2, 1 << 40),
        lambda i: i["blobs"].update({"../../etc": {"size": 1, "codec": "raw", "segments": [[0, 0, 1]]}}),
    ):
        index = json.loads(original)
        mutate(index)
        index_path.write_text(json.dumps(index))
        result = ws.run("unpack", "vols", "--out", "out", expect=2)
        assert "invalid index" in result.stderr and "Traceback" not in result.stderr
        assert not (ws.root / "out").exists() and not (ws.root.parent / "escape.bin").exists()
    outside = ws.root / "outside-secret.txt"
    outside.write_text("not a blob")
    victim = next((ws.root / "bundle" / "blobs" / "sha256").iterdir())
    victim.unlink()
    victim.symlink_to(outside)
    result = ws.run("verify", "bundle", expect=1)
    assert "corrupt" in result.stdout
    assert outside.read_text() == "not a blob", "verify must never write through a symlink"


KEYS = ["name", "platform", "models", "datasets", "images", "repos", "wheels", "jobs", "hf", "revision", "url", "path", "ref", "typo"]
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(["a/b", "x", "../..", "https://h/f", "linux/amd64"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_fuzzed_specs_fail_only_with_input_errors(tmp_path_factory, document):
    from airlift.config.spec import load_spec
    from airlift.util.errors import InputError

    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_spec(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


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


@pytest.mark.parametrize("bad", ["name: x\nmodels: [{hf: a/b, revision: 1}]\n", "name: x\nimages: [{ref: ''}]\n", "- just\n- a list\n"])
def test_more_malformed_specs_are_exit_2(ws, bad):
    result = ws.run("build", str(ws.write("bad.yaml", bad)), "--out", "b", expect=2)
    assert "bad.yaml" in result.stderr and len(result.stderr.strip().splitlines()) == 1

"""Build, verify and inspect against the hub stand-in, with the real huggingface_hub client."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.conftest import sha256sum_check, verified
from tests.fixtures import add_dataset, add_model, pseudo_random, sha256


def spec_for(ws, name: str, body: str) -> Path:
    return ws.write(f"{name}.yaml", f"name: {name}\n{body}")


def test_build_bundle_layout_and_manifest(ws, hub):
    model = add_model(hub, "acme/build-model")
    dataset = add_dataset(hub, "acme/build-data")
    url = hub.add_file("build-file.tar", pseudo_random(300_000, 9))
    spec = spec_for(ws, "build", f"""
models:
  - hf: acme/build-model
    revision: main
    ignore: ["*.txt"]
datasets:
  - hf: acme/build-data
    allow: ["data/*.parquet"]
  - url: {url}
    sha256: {sha256(hub.files["build-file.tar"])}
""")
    ws.run("build", str(spec), "--out", "bundle")
    bundle = ws.root / "bundle"
    check = sha256sum_check(bundle)
    assert check.returncode == 0, check.stdout + check.stderr

    manifest = json.loads((bundle / "manifest.json").read_text())
    by_id = {a["id"]: a for a in manifest["artifacts"]}
    assert set(by_id) == {"models/acme/build-model", "datasets/acme/build-data", "files/build-file.tar"}
    model_art = by_id["models/acme/build-model"]
    assert model_art["source"]["commit"] == hub.repos[("model", "acme/build-model")].refs["main"]
    assert sorted(f["path"] for f in model_art["files"]) == ["config.json", "model.safetensors", "tokenizer.json"]
    for entry in model_art["files"]:
        assert entry["sha256"] == sha256(model[entry["path"]])
        assert (bundle / "blobs" / "sha256" / entry["sha256"]).read_bytes() == model[entry["path"]]
    assert sorted(f["path"] for f in by_id["datasets/acme/build-data"]["files"]) == ["data/test-00000.parquet", "data/train-00000.parquet"]
    assert by_id["datasets/acme/build-data"]["files"][0]["sha256"] in {sha256(v) for v in dataset.values()}

    verify = ws.run("verify", "bundle")
    assert "OK: 3 artifacts" in verify.stdout
    listing = ws.run("inspect", "bundle").stdout
    assert "models/acme/build-model" in listing and "files/build-file.tar" in listing
    assert json.loads(ws.run("inspect", "bundle", "--json").stdout)["name"] == "build"


def test_rebuild_and_new_out_download_zero_content_bytes(ws, hub):
    add_model(hub, "acme/rebuild-model")
    url = hub.add_file("rebuild.bin", pseudo_random(200_000, 4))
    spec = spec_for(ws, "rebuild", f"models:\n  - hf: acme/rebuild-model\ndatasets:\n  - url: {url}\n")
    ws.run("build", str(spec), "--out", "b1")
    first = hub.content_bytes
    assert first > 2_000_000
    manifest_before = (ws.root / "b1" / "manifest.json").read_bytes()

    hub.reset_counters()
    ws.run("build", str(spec), "--out", "b1")
    assert hub.content_bytes == 0, "a no-op rebuild fetched content"
    assert (ws.root / "b1" / "manifest.json").read_bytes() == manifest_before

    ws.run("build", str(spec), "--out", "b2")
    assert hub.content_bytes == 0, "a build into a new --out refetched cached content"
    assert sha256sum_check(ws.root / "b2").returncode == 0


def test_cache_hit_with_deleted_blob_refetches_only_that_blob(ws, hub):
    files = add_model(hub, "acme/refetch-model", weights_size=1_500_000)
    spec = spec_for(ws, "refetch", "models:\n  - hf: acme/refetch-model\n")
    ws.run("build", str(spec), "--out", "b1")
    ws.run("build", str(spec), "--out", "b1")  # now Prefect's cache holds this artifact too
    weights = sha256(files["model.safetensors"])
    cache_blob = ws.root / "cache" / "blobs" / "sha256" / weights
    cache_blob.unlink()
    hub.reset_counters()
    ws.run("build", str(spec), "--out", "b2")
    assert hub.content_bytes == len(files["model.safetensors"])
    assert cache_blob.exists()
    assert sha256sum_check(ws.root / "b2").returncode == 0


def test_corrupted_blob_is_named_by_verify(ws, hub):
    files = add_model(hub, "acme/corrupt-model")
    spec = spec_for(ws, "corrupt", "models:\n  - hf: acme/corrupt-model\n")
    ws.run("build", str(spec), "--out", "bundle")
    blob = ws.root / "bundle" / "blobs" / "sha256" / sha256(files["config.json"])
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[3] ^= 0xFF
    blob.write_bytes(bytes(data))
    missing = ws.root / "bundle" / "blobs" / "sha256" / sha256(files["tokenizer.json"])
    missing.unlink()
    result = ws.run("verify", "bundle", expect=1)
    assert "models/acme/corrupt-model: config.json: corrupt" in result.stdout
    assert "models/acme/corrupt-model: tokenizer.json: missing" in result.stdout
    assert "Traceback" not in result.stderr


def test_url_pin_mismatch_fails_with_exit_1_naming_the_file(ws, hub):
    url = hub.add_file("pinned.tar", pseudo_random(100_000, 5))
    spec = spec_for(ws, "pin", f"datasets:\n  - url: {url}\n    sha256: '{'0' * 64}'\n")
    result = ws.run("build", str(spec), "--out", "bundle", expect=1)
    assert "files/pinned.tar" in result.stderr and "does not match" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (ws.root / "bundle" / "manifest.json").exists()


def test_missing_repo_fails_fast_without_retries(ws, hub):
    spec = spec_for(ws, "missing", "models:\n  - hf: acme/does-not-exist\n")
    started = time.monotonic()
    result = ws.run("build", str(spec), "--out", "bundle", expect=1)
    assert "models/acme/does-not-exist" in result.stderr
    assert time.monotonic() - started < 30, "a 401/404 must not be retried with backoff"


def test_hf_token_comes_from_the_environment_and_is_never_written(ws, hub, prefect_server):
    add_model(hub, "acme/token-model", weights_size=100_000)
    token = "hf_airlift_test_secret_token_0123456789"
    spec = spec_for(ws, "token", "models:\n  - hf: acme/token-model\n")
    ws.run("build", str(spec), "--out", "bundle", "-v", extra_env={"HF_TOKEN": token})
    for root in (ws.root, Path(prefect_server["home"])):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert token.encode() not in path.read_bytes(), f"secret leaked into {path}"


def test_flaky_upstream_build_completes_and_verifies(ws, hub):
    add_model(hub, "acme/flaky-model", weights_size=1_000_000, seed=77)
    add_dataset(hub, "acme/flaky-data", seed=78)
    url = hub.add_file("flaky.tar", pseudo_random(400_000, 79))
    spec = spec_for(ws, "flaky", f"models:\n  - hf: acme/flaky-model\ndatasets:\n  - hf: acme/flaky-data\n  - url: {url}\n")
    hub.set_faults(rate=0.3, seed=1234)
    ws.run("build", str(spec), "--out", "bundle", timeout=600)
    assert hub.faults_injected > 0
    hub.set_faults()
    verified(ws.root / "bundle")


def test_kill_9_mid_file_then_rerun_completes_without_refetching(ws, hub):
    size = 6_000_000
    files = add_model(hub, "acme/kill-model", weights_size=size, seed=99)
    spec = spec_for(ws, "kill", "models:\n  - hf: acme/kill-model\n")
    hub.set_faults(bytes_per_second=1_500_000)
    proc = ws.popen("build", str(spec), "--out", "bundle")
    partial_dir = ws.root / "cache" / ".tmp"
    deadline = time.monotonic() + 120
    fetched = 0
    while time.monotonic() < deadline:
        parts = list(partial_dir.glob("*.part")) if partial_dir.exists() else []
        fetched = max((p.stat().st_size for p in parts), default=0)
        if fetched > size // 3:
            break
        time.sleep(0.05)
    assert fetched > size // 3, "the download never got going"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hub.set_faults()
    time.sleep(1.0)  # let the server notice the dead socket before counting
    before = hub.content_bytes
    ws.run("build", str(spec), "--out", "bundle")
    refetched = hub.content_bytes - before
    assert refetched <= size - fetched, f"refetched {refetched} bytes though {fetched} of {size} were on disk"
    assert sha256sum_check(ws.root / "bundle").returncode == 0
    assert (ws.root / "bundle" / "blobs" / "sha256" / sha256(files["model.safetensors"])).stat().st_size == size

"""Every source users bring: NGC (through the SDK boundary double), git, wheels, local paths, S3
prefixes, and `airlift plan`, which downloads no content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import boto3

from tests.conftest import verified
from tests.fixtures import add_model, pseudo_random

NGC_ENV = {"NGC_API_KEY": "nvapi-test-secret-key-do-not-log"}  # runs go through ws.with_ngc_double()


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def make_git_repo(root: Path) -> dict[str, str]:
    root.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=root)
    commits = {}
    for version in ("v1.0", "v1.1", "v2.0"):
        (root / "VERSION").write_text(f"{version}\n")
        (root / f"notes-{version}.txt").write_text(f"added in {version}\n")
        _git("add", ".", cwd=root)
        _git("commit", "-q", "-m", version, cwd=root)
        _git("tag", "-a", version, "-m", version, cwd=root)
        commits[version] = _git("rev-parse", "HEAD", cwd=root)
    (root / "VERSION").write_text("dev\n")
    _git("commit", "-q", "-am", "dev", cwd=root)
    commits["main"] = _git("rev-parse", "HEAD", cwd=root)
    return commits


def seed_s3(endpoint: str) -> tuple[str, dict[str, bytes]]:
    bucket = f"ckpt-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    s3.create_bucket(Bucket=bucket)
    objects = {"run7/step-100/model.pt": pseudo_random(200_000, 71), "run7/step-100/optim.pt": pseudo_random(90_000, 72), "run7/config.json": b"{}"}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return bucket, objects


def test_plan_sizes_every_source_kind_without_downloading(ws, hub, upstream, s3_endpoint):
    add_model(hub, "acme/plan-model", weights_size=900_000, seed=61)
    hub.add_repo("dataset", "acme/plan-data", files={"d.parquet": pseudo_random(100_000, 62)})
    url = hub.add_file("plan-file.tar", pseudo_random(50_000, 63))
    commits = make_git_repo(ws.root / "src-repo")
    bucket, _ = seed_s3(s3_endpoint)
    local = ws.root / "local-ckpt"
    local.mkdir()
    (local / "a.bin").write_bytes(pseudo_random(30_000, 64))
    spec = ws.write("plan.yaml", f"""name: plan
models:
  - hf: acme/plan-model
  - ngc: nvidia/nemo/tiny-nemo
datasets:
  - hf: acme/plan-data
  - url: {url}
  - path: {local}
  - s3: s3://{bucket}/run7/
images:
  - {upstream.app_a}
repos:
  - git: {ws.root / 'src-repo'}
    ref: v1.1
wheels:
  - requirements: ["six==1.16.0"]
    python: "3.12"
    platform: manylinux_2_28_x86_64
""")
    env = {**NGC_ENV, "AWS_ENDPOINT_URL": s3_endpoint, "DOCKER_HOST": upstream.docker_host}
    hub.reset_counters()
    ws = ws.with_ngc_double()  # the spec has an ngc: model
    out = ws.run("plan", str(spec), extra_env=env).stdout
    assert hub.content_bytes == 0, "plan downloaded content from the hub stand-in"
    assert not (ws.root / "cache" / "blobs").exists() or not any((ws.root / "cache" / "blobs" / "sha256").iterdir())
    for artifact_id in ("models/acme/plan-model", "models/nvidia/nemo/tiny-nemo", "datasets/acme/plan-data", "files/plan-file.tar",
                        "files/local-ckpt", "files/run7", f"images/{upstream.app_a}", "repos/src-repo", "wheels"):
        assert artifact_id in out, (artifact_id, out)
    assert commits["v1.1"] in out
    assert "total: 9 artifacts" in out
    plan = json.loads(ws.run("plan", str(spec), "--json", extra_env=env).stdout)
    sizes = {a["id"]: a["bytes"] for a in plan["artifacts"]}
    assert sizes["models/acme/plan-model"] > 900_000 and sizes["datasets/acme/plan-data"] == 100_000
    assert sizes["files/plan-file.tar"] == 50_000 and sizes["files/local-ckpt"] == 30_000 and sizes["files/run7"] == 290_002
    assert sizes[f"images/{upstream.app_a}"] > 3_000_000 and sizes["wheels"] > 10_000
    assert plan["totals"]["to_fetch_bytes"] == plan["totals"]["bytes"]


def test_git_tag_is_pinned_and_clones_offline(ws, hub):
    commits = make_git_repo(ws.root / "upstream-repo")
    spec = ws.write("git.yaml", f"name: git\nrepos:\n  - git: file://{ws.root / 'upstream-repo'}\n    ref: v1.0\n    name: trainer\n")
    ws.run("build", str(spec), "--out", "bundle")
    artifact = json.loads((ws.root / "bundle" / "manifest.json").read_text())["artifacts"][0]
    assert artifact["id"] == "repos/trainer" and artifact["source"]["commit"] == commits["v1.0"]
    site = ws.write("site.yaml", f"shared_root: {ws.root / 'root'}\n")
    ws.run("ingest", "bundle", "--site", str(site))
    clone = ws.root / "clone"
    env = {**os.environ, "GIT_ALLOW_PROTOCOL": "file", "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "clone", "-q", str(ws.root / "root" / "repos" / "trainer.git"), str(clone)], env=env, check=True)
    subprocess.run(["git", "checkout", "-q", "v1.0"], cwd=clone, check=True)
    assert (clone / "VERSION").read_text() == "v1.0\n"
    assert _git("rev-parse", "HEAD", cwd=clone) == commits["v1.0"]
    assert not (clone / "notes-v1.1.txt").exists()
    assert "v1.0" in _git("tag", cwd=clone).split()


def test_wheels_install_from_find_links_offline(ws):
    spec = ws.write("wheels.yaml", 'name: wheels\nwheels:\n  - requirements: ["six==1.16.0"]\n    python: "3.12"\n    platform: manylinux_2_28_x86_64\n')
    ws.run("build", str(spec), "--out", "bundle")
    ws.run("ingest", "bundle", "--site", str(ws.write("site.yaml", f"shared_root: {ws.root / 'root'}\n")))
    target = ws.root / "installed"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(ws.root / "root" / "wheels"), "--target", str(target), "six==1.16.0"],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": "/dev/null"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / "six.py").exists()


def test_local_directory_is_copied_and_arrives_byte_identical(ws):
    src = ws.root / "checkpoint"
    (src / "bin").mkdir(parents=True)
    (src / "weights.safetensors").write_bytes(pseudo_random(400_000, 81))
    (src / "bin" / "launch.sh").write_text("#!/bin/sh\necho launch\n")
    (src / "bin" / "launch.sh").chmod(0o755)
    spec = ws.write("path.yaml", f"name: path\ndatasets:\n  - path: {src}\n")
    ws.run("build", str(spec), "--out", "bundle")
    manifest = json.loads((ws.root / "bundle" / "manifest.json").read_text())
    entries = {f["path"]: f for f in manifest["artifacts"][0]["files"]}
    assert entries["bin/launch.sh"]["executable"] is True
    weights = ws.root / "cache" / "blobs" / "sha256" / entries["weights.safetensors"]["sha256"]
    assert weights.stat().st_ino != (src / "weights.safetensors").stat().st_ino, "a copy, never a link to the user's live file"
    assert weights.stat().st_mode & 0o777 == 0o444
    ws.run("ingest", "bundle", "--site", str(ws.write("site.yaml", f"shared_root: {ws.root / 'root'}\n")))
    dest = ws.root / "root" / "files" / "checkpoint"
    for relative in ("weights.safetensors", "bin/launch.sh"):
        assert (dest / relative).read_bytes() == (src / relative).read_bytes()
    assert os.access(dest / "bin" / "launch.sh", os.X_OK)


def test_s3_prefix_source(ws, s3_endpoint):
    bucket, objects = seed_s3(s3_endpoint)
    spec = ws.write("s3.yaml", f"name: s3src\ndatasets:\n  - s3: s3://{bucket}/run7/\n    name: run7\n")
    ws.run("build", str(spec), "--out", "bundle", extra_env={"AWS_ENDPOINT_URL": s3_endpoint})
    ws.run("ingest", "bundle", "--site", str(ws.write("site.yaml", f"shared_root: {ws.root / 'root'}\n")))
    for key, data in objects.items():
        assert (ws.root / "root" / "files" / key).read_bytes() == data


def test_ngc_model_through_the_sdk_boundary(ws, prefect_server):
    log = ws.root / "ngc-calls.jsonl"
    spec = ws.write("ngc.yaml", 'name: ngc\nmodels:\n  - ngc: nvidia/nemo/tiny-nemo\n    allow: ["*.yaml", "weights/*"]\n')
    ws.with_ngc_double().run("build", str(spec), "--out", "bundle", extra_env={**NGC_ENV, "AIRLIFT_NGC_DOUBLE_LOG": str(log)})
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"call": "configure", "api_key_given": True, "org_name": "nvidia", "team_name": "nemo"} in calls
    assert {"call": "registry.model.info", "target": "nvidia/nemo/tiny-nemo"} in calls
    download = next(c for c in calls if c["call"] == "registry.model.download_version")
    assert download["target"] == "nvidia/nemo/tiny-nemo:2.0" and download["file_patterns"] == ["*.yaml", "weights/*"]
    artifact = json.loads((ws.root / "bundle" / "manifest.json").read_text())["artifacts"][0]
    assert artifact["id"] == "models/nvidia/nemo/tiny-nemo" and artifact["source"]["version"] == "2.0"
    import hashlib

    from tests.ngc_double import FILES

    assert {f["path"]: f["sha256"] for f in artifact["files"]} == {
        p: hashlib.sha256(d).hexdigest() for p, d in FILES.items() if p != "README.md"
    }
    verified(ws.root / "bundle")
    secret = NGC_ENV["NGC_API_KEY"].encode()
    for root in (ws.root, Path(prefect_server["home"])):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert secret not in path.read_bytes(), f"NGC key leaked into {path}"


def test_many_small_files_run_one_task_per_artifact(ws, prefect_server):
    src = ws.root / "many"
    src.mkdir()
    for i in range(2000):
        (src / f"f{i:05d}.txt").write_text(f"row {i}\n")
    spec = ws.write("many.yaml", f"name: many\ndatasets:\n  - path: {src}\n")
    ws.run("build", str(spec), "--out", "bundle")
    manifest = json.loads((ws.root / "bundle" / "manifest.json").read_text())
    assert len(manifest["artifacts"][0]["files"]) == 2000
    request = urllib.request.Request(
        f"{prefect_server['api']}/flow_runs/filter",
        data=json.dumps({"sort": "START_TIME_DESC", "limit": 20}).encode(), headers={"Content-Type": "application/json"},
    )
    run = next(r for r in json.loads(urllib.request.urlopen(request).read()) if r["parameters"].get("spec") == str(spec))
    request = urllib.request.Request(
        f"{prefect_server['api']}/task_runs/count",
        data=json.dumps({"flow_runs": {"id": {"any_": [run["id"]]}}}).encode(), headers={"Content-Type": "application/json"},
    )
    assert json.loads(urllib.request.urlopen(request).read()) == 3  # resolve, fetch, assemble: not one per file

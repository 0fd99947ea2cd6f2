"""`airlift serve` from a bundle and from an ingested shared_root, each endpoint through its real client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import AIRLIFT, SERVER_START_TIMEOUT, _free_port
from tests.fixtures import add_dataset, add_model
from tests.test_sources import make_git_repo


@contextmanager
def serving(ws, path: Path):
    port = _free_port()
    proc = subprocess.Popen([AIRLIFT, "serve", str(path), "--port", str(port)], cwd=ws.root, env=ws.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT  # stated once in tests/conftest.py; the loop ends as soon as it answers
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read()) from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _client(code: str, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


HF_PROBE = """
import json, pathlib
from huggingface_hub import hf_hub_download, list_repo_tree, snapshot_download
out = {}
for repo, kind, rev in [("acme/serve-model", "model", None), ("acme/serve-model", "model", "%(commit)s"), ("acme/serve-data", "dataset", "main")]:
    root = pathlib.Path(snapshot_download(repo, repo_type=kind, revision=rev))
    out[f"{repo}@{rev}"] = {p.relative_to(root).as_posix(): p.read_bytes().hex() for p in root.rglob("*") if p.is_file()}
out["single"] = pathlib.Path(hf_hub_download("acme/serve-model", "config.json")).read_bytes().hex()
out["tree"] = sorted(f.path for f in list_repo_tree("acme/serve-model", recursive=True))
print(json.dumps(out))
"""


@pytest.fixture
def served_bundle(ws, hub):
    model = add_model(hub, "acme/serve-model", weights_size=600_000, seed=151)
    dataset = add_dataset(hub, "acme/serve-data", seed=152)
    commits = make_git_repo(ws.root / "src-repo")
    local = ws.root / "notes"
    local.mkdir()
    (local / "big.bin").write_bytes(bytes(range(256)) * 400)
    spec = ws.write("serve.yaml", f"""name: serve
models:
  - hf: acme/serve-model
datasets:
  - hf: acme/serve-data
  - path: {local}
repos:
  - git: {ws.root / 'src-repo'}
    ref: v1.1
    name: trainer
wheels:
  - requirements: ["six==1.16.0"]
    python: "3.11"
    platform: manylinux_2_28_x86_64
""")
    ws.run("build", str(spec), "--out", "bundle")
    commit = hub.repos[("model", "acme/serve-model")].refs["main"]
    return {"model": model, "dataset": dataset, "commit": commit, "git": commits, "local": local}


def _check_all_clients(ws, url: str, data: dict) -> None:
    env = {k: v for k, v in ws.env.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=url, HF_HOME=str(ws.root / f"hf-client-{time.monotonic_ns()}"), HF_HUB_DISABLE_TELEMETRY="1")
    got = _client(HF_PROBE % {"commit": data["commit"]}, env)
    for key in ("acme/serve-model@None", f"acme/serve-model@{data['commit']}"):
        assert {k: bytes.fromhex(v) for k, v in got[key].items()} == data["model"]
    assert {k: bytes.fromhex(v) for k, v in got["acme/serve-data@main"].items()} == data["dataset"]
    assert bytes.fromhex(got["single"]) == data["model"]["config.json"]
    assert "nested/dir/notes.txt" in got["tree"] and "nested" in got["tree"]

    pip_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": "/dev/null"}
    dest = ws.root / f"pip-{time.monotonic_ns()}"
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--index-url", f"{url}/simple/", "-d", str(dest), "six==1.16.0"],
                          env=pip_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in dest.iterdir()] == ["six-1.16.0-py2.py3-none-any.whl"]

    clone = ws.root / f"clone-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "-q", f"{url}/git/trainer.git", str(clone)], check=True, capture_output=True)
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip() == data["git"]["v1.1"]
    assert (clone / "VERSION").read_text() == "v1.1\n"

    ranged = subprocess.run(["curl", "-fsS", "-r", "256-511", f"{url}/files/files/notes/big.bin"], capture_output=True, check=True).stdout
    assert ranged == bytes(range(256))
    whole = subprocess.run(["curl", "-fsS", f"{url}/files/files/notes/big.bin"], capture_output=True, check=True).stdout
    assert whole == (data["local"] / "big.bin").read_bytes()
    missing = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{url}/files/files/notes/../../etc/passwd"], capture_output=True, text=True)
    assert missing.stdout == "404"


def test_serve_from_a_bundle(ws, served_bundle):
    with serving(ws, ws.root / "bundle") as url:
        _check_all_clients(ws, url, served_bundle)


def test_serve_from_an_ingested_shared_root(ws, served_bundle):
    root = ws.root / "root"
    ws.run("ingest", "bundle", "--site", str(ws.write("site.yaml", f"shared_root: {root}\n")))
    with serving(ws, root) as url:
        _check_all_clients(ws, url, served_bundle)
    result = ws.run("serve", str(ws.root / "nothing-here"), expect=2)
    assert "neither a bundle" in result.stderr

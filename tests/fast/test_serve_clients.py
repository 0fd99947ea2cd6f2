"""The serve app on a loopback port of this process, read by the real clients: git, huggingface_hub and pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from airlift.serve.catalog import Catalog
from airlift.serve.server import build_app
from tests.fast.conftest import (
    HF_COMMIT,
    build_bundle,
    git_repo_bundle,
    hf_model,
    make_wheel,
    run,
    serving,
    wheels,
)

HF_PROBE = """
import json, pathlib, sys
from huggingface_hub import snapshot_download
root = pathlib.Path(snapshot_download(sys.argv[1], revision=sys.argv[2]))
print(json.dumps({p.relative_to(root).as_posix(): p.read_bytes().hex() for p in root.rglob("*") if p.is_file()}))
"""


def client_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A client environment that can reach only loopback: no proxies, no tokens, a private cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "PIP_")) and "proxy" not in k.lower()}
    return env | {"HF_HOME": str(tmp_path / "client-hf"), "NO_PROXY": "127.0.0.1", "PIP_CONFIG_FILE": os.devnull} | extra


def test_git_clone_over_dumb_http(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the catalog's bare repos stay in this test's tmp
    repo, built = git_repo_bundle(tmp_path)
    with serving(build_app(Catalog.open(built.root))) as url:
        run(["git", "clone", "-q", f"{url}/git/tool.git", str(tmp_path / "checkout")], env=client_env(tmp_path, GIT_ALLOW_PROTOCOL="http"), inherit=False)
    checkout = tmp_path / "checkout"
    assert run(["git", "rev-parse", "HEAD"], cwd=checkout).stdout.strip() == repo.commit
    assert {path: (checkout / path).read_bytes() for path in repo.files} == repo.files


def test_huggingface_hub_downloads_through_hf_endpoint(tmp_path):
    model = hf_model()
    built = build_bundle(tmp_path / "bundle", [model])
    with serving(build_app(Catalog.open(built.root))) as url:
        env = client_env(tmp_path, HF_ENDPOINT=url)
        proc = subprocess.run([sys.executable, "-c", HF_PROBE, "acme/tiny", "main"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {path: data.hex() for path, data in model.files.items()}
    snapshot = tmp_path / "client-hf" / "hub" / "models--acme--tiny" / "snapshots" / HF_COMMIT
    assert (snapshot / "model.safetensors").read_bytes() == model.files["model.safetensors"]


def test_pip_installs_from_the_simple_index(tmp_path):
    name, data = make_wheel(value=7)
    built = build_bundle(tmp_path / "bundle", [wheels({name: data})])
    target = tmp_path / "site"
    with serving(build_app(Catalog.open(built.root))) as url:
        run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
             "--index-url", f"{url}/simple/", "--target", str(target), "Foo.Bar==1.0"],
            env=client_env(tmp_path), inherit=False,
        )
    probe = run([sys.executable, "-c", "import foo_bar; print(foo_bar.VALUE)"], env={"PYTHONPATH": str(target)})
    assert probe.stdout.strip() == "7"

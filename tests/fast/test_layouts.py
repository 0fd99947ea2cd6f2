"""shared_root layouts, read back by the tools that expect them: huggingface_hub offline, plain files, git clone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airlift.ingest.sharedfs import materialize
from tests.fast.conftest import (
    HF_COMMIT,
    build_bundle,
    git_artifact,
    git_repo_bundle,
    hf_model,
    make_git_bundle,
    path_tree,
    run,
    url_file,
)

# huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when it is imported, so it runs in a fresh interpreter.
HF_PROBE = """
import json, pathlib, sys
from huggingface_hub import snapshot_download
from huggingface_hub import constants
assert constants.HF_HUB_OFFLINE, "offline mode is not on"
repo, revision = sys.argv[1], sys.argv[2]
root = pathlib.Path(snapshot_download(repo, revision=None if revision == "-" else revision))
files = {p.relative_to(root).as_posix(): p.read_bytes().hex() for p in root.rglob("*") if p.is_file()}
print(json.dumps({"root": str(root), "files": files}))
"""


def hf_offline(root: Path, repo: str, revision: str = "-") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    # A dead proxy: any attempt to reach the network fails loudly instead of reaching the Hub.
    env |= {"HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-c", HF_PROBE, repo, revision], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hf_layout_is_read_by_snapshot_download_offline(tmp_path):
    model = hf_model()
    built = build_bundle(tmp_path / "bundle", [model])
    root = tmp_path / "shared"
    report = materialize(root, built.manifest.artifacts[0], blob_path=built.bundle.store.blob_path)
    assert not report.skipped and report.files == 3
    expected = {path: data.hex() for path, data in model.files.items()}
    by_branch = hf_offline(root, "acme/tiny")
    assert by_branch["files"] == expected
    assert by_branch["root"] == str(root / "hf" / "hub" / "models--acme--tiny" / "snapshots" / HF_COMMIT)
    assert hf_offline(root, "acme/tiny", HF_COMMIT)["files"] == expected


def test_hf_layout_files_are_copies_not_links_to_bundle_blobs(tmp_path):
    built = build_bundle(tmp_path / "bundle", [hf_model()])
    root = tmp_path / "shared"
    materialize(root, built.manifest.artifacts[0], blob_path=built.bundle.store.blob_path)
    blob = built.blob("models/acme/tiny", "model.safetensors")
    snapshot_file = root / "hf" / "hub" / "models--acme--tiny" / "snapshots" / HF_COMMIT / "model.safetensors"
    assert snapshot_file.is_symlink()  # into the cache's blobs/, as huggingface_hub lays it out
    assert snapshot_file.resolve().stat().st_ino != blob.stat().st_ino
    assert snapshot_file.read_bytes() == blob.read_bytes()


def test_files_layouts(tmp_path):
    single, tree = url_file("notes.txt", b"notes\n"), path_tree("corpus")
    built = build_bundle(tmp_path / "bundle", [single, tree])
    root = tmp_path / "shared"
    for artifact in built.manifest.artifacts:
        materialize(root, artifact, blob_path=built.bundle.store.blob_path)
    assert (root / "files" / "notes.txt").read_bytes() == b"notes\n"
    assert (root / "files" / "corpus" / "a.txt").read_bytes() == b"first\n"
    assert (root / "files" / "corpus" / "dir" / "b.txt").read_bytes() == b"second\n"
    assert (root / "files" / "corpus" / "a.txt").stat().st_mode & 0o777 == 0o644


def test_a_rerun_is_skipped_by_the_marker_and_redone_when_the_files_are_gone(tmp_path):
    built = build_bundle(tmp_path / "bundle", [path_tree("corpus")])
    artifact = built.manifest.artifacts[0]
    root = tmp_path / "shared"
    first = materialize(root, artifact, blob_path=built.bundle.store.blob_path)
    assert not first.skipped
    again = materialize(root, artifact, blob_path=built.bundle.store.blob_path)
    assert again.skipped and again.location == first.location
    # The marker is written last and checked against what is on disk: a removed tree is redone.
    (root / "files" / "corpus" / "a.txt").unlink()
    (root / "files" / "corpus" / "dir" / "b.txt").unlink()
    (root / "files" / "corpus" / "dir").rmdir()
    (root / "files" / "corpus").rmdir()
    redone = materialize(root, artifact, blob_path=built.bundle.store.blob_path)
    assert not redone.skipped and (root / "files" / "corpus" / "dir" / "b.txt").read_bytes() == b"second\n"


def test_a_changed_artifact_is_not_skipped(tmp_path):
    root = tmp_path / "shared"
    old = build_bundle(tmp_path / "old", [path_tree("corpus", {"a.txt": b"old\n"})])
    materialize(root, old.manifest.artifacts[0], blob_path=old.bundle.store.blob_path)
    new = build_bundle(tmp_path / "new", [path_tree("corpus", {"a.txt": b"new\n"})])
    report = materialize(root, new.manifest.artifacts[0], blob_path=new.bundle.store.blob_path)
    assert not report.skipped and (root / "files" / "corpus" / "a.txt").read_bytes() == b"new\n"


def test_git_layout_is_a_bare_repo_that_clones_offline(tmp_path):
    repo, built = git_repo_bundle(tmp_path)
    root = tmp_path / "shared"
    report = materialize(root, built.manifest.artifacts[0], blob_path=built.bundle.store.blob_path)
    bare = root / "repos" / "tool.git"
    assert Path(report.location) == bare
    assert run(["git", "rev-parse", "--is-bare-repository"], cwd=bare).stdout.strip() == "true"
    # A dead proxy and only the file transport allowed: the clone is local or it fails.
    offline = {"GIT_ALLOW_PROTOCOL": "file", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    run(["git", "clone", "-q", str(bare), str(tmp_path / "checkout")], env=offline)
    checkout = tmp_path / "checkout"
    assert run(["git", "rev-parse", "HEAD"], cwd=checkout).stdout.strip() == repo.commit
    assert run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=checkout).stdout.strip() == "main"
    for path, data in repo.files.items():
        assert (checkout / path).read_bytes() == data
    assert run(["git", "rev-parse", "v1^{commit}"], cwd=checkout).stdout.strip() == repo.tag_commit
    assert (bare / "info" / "refs").is_file()  # update-server-info ran: dumb HTTP can serve it


def test_git_layout_pinned_to_a_tag_has_a_detached_head(tmp_path):
    repo = make_git_bundle(tmp_path)
    draft = git_artifact(repo, ref="v1", full_ref="refs/tags/v1", commit=repo.tag_commit)
    built = build_bundle(tmp_path / "bundle", [draft])
    root = tmp_path / "shared"
    materialize(root, built.manifest.artifacts[0], blob_path=built.bundle.store.blob_path)
    run(["git", "clone", "-q", str(root / "repos" / "tool.git"), str(tmp_path / "checkout")])
    checkout = tmp_path / "checkout"
    assert run(["git", "rev-parse", "HEAD"], cwd=checkout).stdout.strip() == repo.tag_commit
    assert (checkout / "README.md").read_bytes() == b"version one\n"

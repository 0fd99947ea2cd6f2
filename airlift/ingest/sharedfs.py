"""Materialize artifacts under `shared_root` in the layouts tools already read.

- `hf/hub/`: a Hugging Face cache, so `HF_HOME=<root>/hf HF_HUB_OFFLINE=1` finds models by repo id.
- `files/<name>`: plain files and directories.

Every file lands by atomic rename; a per-artifact marker under `.airlift/ingested/` is written last,
so a rerun skips what is complete and redoes what a crash interrupted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airlift.bundle.manifest import Artifact, now_iso
from airlift.layouts.gitrepo import materialize_git_repo
from airlift.layouts.shared_root import marker_path, read_marker
from airlift.util.errors import WorkError
from airlift.util.fs import fsync_dir, is_within, link_or_copy, write_bytes_atomic


@dataclass
class MaterializeReport:
    artifact_id: str
    skipped: bool
    files: int
    bytes: int
    location: str


def _place(root: Path, target: Path, source: Path, *, executable: bool = False) -> None:
    if not is_within(root, target):
        raise WorkError(f"refusing to write outside {root}: {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A copy, not a hard link: jobs write under shared_root, and must never be able to alter a bundle blob.
    link_or_copy(source, target, allow_link=False)
    os.chmod(target, 0o755 if executable else 0o644)


def _hf_repo_dir(root: Path, artifact: Artifact) -> Path:
    repo = artifact.source["repo"]
    kind = "models" if artifact.kind == "hf-model" else "datasets"
    return root / "hf" / "hub" / f"{kind}--{repo.replace('/', '--')}"


def _materialize_hf(root: Path, artifact: Artifact, blob_path: Callable[[str], Path]) -> Path:
    repo_dir = _hf_repo_dir(root, artifact)
    commit = artifact.source["commit"]
    snapshot = repo_dir / "snapshots" / commit
    for entry in artifact.files:
        etag = entry.etag or entry.sha256
        blob = repo_dir / "blobs" / etag
        if not (blob.exists() and blob.stat().st_size == entry.size):
            _place(root, blob, blob_path(entry.sha256))
        link = snapshot / entry.path
        link.parent.mkdir(parents=True, exist_ok=True)
        relative = os.path.relpath(blob, link.parent)
        if not (link.is_symlink() and os.readlink(link) == relative):
            tmp = link.parent / f".{link.name}.tmp-link"
            tmp.unlink(missing_ok=True)
            os.symlink(relative, tmp)
            os.replace(tmp, link)
    revision = artifact.source.get("revision")
    if revision and revision != commit:
        write_bytes_atomic(repo_dir / "refs" / revision, commit.encode())
    fsync_dir(snapshot)
    return snapshot


def _materialize_files(root: Path, artifact: Artifact, blob_path: Callable[[str], Path]) -> Path:
    base = root / artifact.id  # files/<name>
    if artifact.layout == "file":
        entry = artifact.files[0]
        _place(root, base, blob_path(entry.sha256), executable=entry.executable)
        return base
    for entry in artifact.files:
        _place(root, base / entry.path, blob_path(entry.sha256), executable=entry.executable)
    return base


def materialize(root: Path, artifact: Artifact, blob_path: Callable[[str], Path]) -> MaterializeReport:
    root = Path(root)
    digest = artifact.content_digest()
    marker = read_marker(root, artifact.id)
    if marker and marker.get("content_digest") == digest and marker.get("location") and Path(marker["location"]).exists():
        return MaterializeReport(artifact.id, True, len(artifact.files), artifact.total_bytes, marker["location"])
    if artifact.kind in ("hf-model", "hf-dataset"):
        location = _materialize_hf(root, artifact, blob_path)
    elif artifact.kind in ("url", "path", "s3", "ngc-model", "wheels"):
        location = _materialize_files(root, artifact, blob_path)
    elif artifact.kind == "git":
        location = materialize_git_repo(root, artifact, blob_path)

    else:
        return MaterializeReport(artifact.id, True, 0, 0, "")
    record = {
        "id": artifact.id,
        "kind": artifact.kind,
        "content_digest": digest,
        "files": len(artifact.files),
        "bytes": artifact.total_bytes,
        "location": str(location),
        "ingested_at": now_iso(),
        "artifact": artifact.model_dump(mode="json"),  # lets `airlift serve` and preflight work from the root alone
    }
    write_bytes_atomic(marker_path(root, artifact.id), json.dumps(record, indent=1).encode())
    return MaterializeReport(artifact.id, False, len(artifact.files), artifact.total_bytes, str(location))

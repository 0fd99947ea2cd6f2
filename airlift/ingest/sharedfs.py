"""Materialize artifacts under `shared_root` in the layouts tools already read.

- `hf/hub/`: a Hugging Face cache, so `HF_HOME=<root>/hf HF_HUB_OFFLINE=1` finds models by repo id.
- `files/<name>`: plain files and directories.

Every file lands by atomic rename; a per-artifact marker under `.airlift/ingested/` is written last,
so a rerun skips what is complete and redoes what a crash interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airlift.bundle.manifest import Artifact, now_iso
from airlift.layouts.gitrepo import materialize_git_repo
from airlift.layouts.shared_root import IngestMarker, SharedRootLayout, marker_path, read_marker
from airlift.util.confine import ConfinedRoot
from airlift.util.fs import fsync_dir
from airlift.util.phase import progress, under_way


@dataclass
class MaterializeReport:
    artifact_id: str
    skipped: bool
    files: int
    bytes: int
    location: str



def _materialize_hf(root: ConfinedRoot, artifact: Artifact, blob_path: Callable[[str], Path]) -> Path:
    repo_dir = SharedRootLayout.hf_artifact_relative(artifact)
    commit = artifact.source.commit
    snapshot = f"{repo_dir}/snapshots/{commit}"
    for done, entry in enumerate(artifact.files, 1):
        blob = f"{repo_dir}/blobs/{entry.etag or entry.sha256}"
        # A copy, not a hard link: jobs write under shared_root and must never alter a bundle blob.
        root.copy_in(blob, blob_path(entry.sha256), sha256=entry.sha256, size=entry.size)
        link = f"{snapshot}/{entry.path}"
        root.symlink(link, os.path.relpath(root.root / blob, (root.root / link).parent))
        progress(done=done, total=len(artifact.files))
    revision = artifact.source.revision
    if revision and revision != commit:
        root.write_bytes(f"{repo_dir}/refs/{revision}", commit.encode())
    fsync_dir(root.path(snapshot))
    return root.path(snapshot)


def _materialize_files(root: ConfinedRoot, artifact: Artifact, blob_path: Callable[[str], Path]) -> Path:
    base = artifact.id  # files/<name>
    if artifact.layout == "file":
        entry = artifact.files[0]
        root.copy_in(base, blob_path(entry.sha256), mode=0o755 if entry.executable else 0o644, sha256=entry.sha256, size=entry.size)
        return root.path(base)
    for done, entry in enumerate(artifact.files, 1):
        root.copy_in(f"{base}/{entry.path}", blob_path(entry.sha256), mode=0o755 if entry.executable else 0o644, sha256=entry.sha256, size=entry.size)
        progress(done=done, total=len(artifact.files))
    return root.path(base)


def materialize(root: Path, artifact: Artifact, *, blob_path: Callable[[str], Path]) -> MaterializeReport:
    """Place one artifact under `root` in the layout its tools read; skip it when its marker says it is there.

    Every write goes through ConfinedRoot: a manifest value or a symlink a job planted cannot steer a
    write outside `root`.

    Args:
        root: The site's shared_root.
        artifact: The (validated) artifact.
        blob_path: Where a blob's bytes are, by sha256 (the bundle, or the store lending to a delta).

    Returns:
        What was placed, and where.
    """
    confined = ConfinedRoot(Path(root))
    root = confined.root
    digest = artifact.content_digest()
    marker = read_marker(root, artifact.id)
    if marker is not None and marker.matches(artifact):
        return MaterializeReport(artifact.id, True, len(artifact.files), artifact.total_bytes, marker.location)
    with under_way("materialize", artifact.id):
        if artifact.kind in ("hf-model", "hf-dataset"):
            location = _materialize_hf(confined, artifact, blob_path)
        elif artifact.kind in ("url", "path", "s3", "ngc-model", "ngc-catalog", "wheels", "output"):  # output: outputs/<job>/<run id>/
            location = _materialize_files(confined, artifact, blob_path)
        elif artifact.kind == "git":
            confined.path(SharedRootLayout.git_repo_relative(artifact.id.removeprefix("repos/")))  # refuses a name or symlink that escapes
            location = materialize_git_repo(root, artifact, blob_path=blob_path)
        else:
            return MaterializeReport(artifact.id, True, 0, 0, "")
        record = IngestMarker(
            id=artifact.id, kind=artifact.kind, content_digest=digest, files=len(artifact.files), bytes=artifact.total_bytes,
            location=str(location), ingested_at=now_iso(), artifact=artifact,
        )
        confined.write_bytes(marker_path(Path(), artifact.id).as_posix(), record.model_dump_json(indent=1).encode())
    return MaterializeReport(artifact.id, False, len(artifact.files), artifact.total_bytes, str(location))

"""What `airlift serve` offers: the artifacts of a bundle, or of an ingested shared_root, and where
each file's bytes are on disk."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Artifact, FileEntry
from airlift.layouts.gitrepo import materialize_git_repo
from airlift.layouts.shared_root import MARKER_DIR
from airlift.util.errors import InputError


def normalize_project(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Catalog:
    artifacts: dict[str, Artifact]
    root: Path
    from_bundle: bool
    git_dirs: dict[str, Path] = field(default_factory=dict)
    _bundle: Bundle | None = None

    @classmethod
    def open(cls, path: Path) -> Catalog:
        path = Path(path)
        if (path / "manifest.json").is_file():
            bundle = Bundle(path)
            manifest = bundle.read_manifest()
            catalog = cls({a.id: a for a in manifest.artifacts}, path, True, _bundle=bundle)
            # Dumb-HTTP git needs a real repository on disk: build bare repos from the bundles once.
            git_root = Path(tempfile.mkdtemp(prefix="airlift-serve-git-"))
            for artifact in manifest.artifacts:
                if artifact.kind == "git":
                    catalog.git_dirs[artifact.id.removeprefix("repos/")] = materialize_git_repo(git_root, artifact, bundle.store.blob_path)
            return catalog
        markers = path / MARKER_DIR
        if markers.is_dir():
            artifacts = {}
            for marker in sorted(markers.glob("*.json")):
                data = json.loads(marker.read_text())
                if "artifact" in data:
                    artifact = Artifact.model_validate(data["artifact"])
                    artifacts[artifact.id] = artifact
            catalog = cls(artifacts, path, False)
            for artifact in artifacts.values():
                if artifact.kind == "git":
                    name = artifact.id.removeprefix("repos/")
                    catalog.git_dirs[name] = path / "repos" / f"{name}.git"
            return catalog
        raise InputError(f"{path}: neither a bundle (manifest.json) nor an ingested shared_root ({MARKER_DIR}/)")

    def locate(self, artifact: Artifact, entry: FileEntry) -> Path:
        if self._bundle is not None:
            return self._bundle.store.blob_path(entry.sha256)
        if artifact.kind in ("hf-model", "hf-dataset"):
            kind = "models" if artifact.kind == "hf-model" else "datasets"
            repo = artifact.source["repo"].replace("/", "--")
            return self.root / "hf" / "hub" / f"{kind}--{repo}" / "snapshots" / artifact.source["commit"] / entry.path
        if artifact.layout == "file":
            return self.root / artifact.id
        return self.root / artifact.id / entry.path

    def hf_repo(self, kind: str, repo_id: str) -> Artifact | None:
        return self.artifacts.get(f"{kind}/{repo_id}")

    def wheels(self) -> dict[str, dict[str, tuple[Artifact, FileEntry]]]:
        """project -> filename -> (artifact, entry)."""
        projects: dict[str, dict[str, tuple[Artifact, FileEntry]]] = {}
        artifact = self.artifacts.get("wheels")
        if artifact is not None:
            for entry in artifact.files:
                project = normalize_project(entry.path.split("-", 1)[0])
                projects.setdefault(project, {})[entry.path] = (artifact, entry)
        return projects

    def file_at(self, path: str) -> tuple[Artifact, FileEntry] | None:
        """`/files/<artifact id>/<path>`: the longest artifact id that prefixes the path."""
        for artifact_id in sorted(self.artifacts, key=len, reverse=True):
            artifact = self.artifacts[artifact_id]
            if artifact.image is not None:
                continue
            if artifact.layout == "file" and path == artifact_id:
                return artifact, artifact.files[0]
            if path.startswith(artifact_id + "/"):
                relative = path[len(artifact_id) + 1:]
                entry = next((f for f in artifact.files if f.path == relative), None)
                if entry is not None:
                    return artifact, entry
        return None

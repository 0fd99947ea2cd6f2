"""What `airlift serve` offers: the artifacts of a bundle, or of an ingested shared_root, and where
each file's bytes are on disk."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Artifact, FileEntry, ImageArtifact
from airlift.bundle.signing import trusted_manifest
from airlift.layouts.gitrepo import materialize_git_repo
from airlift.layouts.shared_root import MARKER_DIR, SharedRootLayout, load_marker
from airlift.util.confine import EscapeError, hash_regular, open_regular
from airlift.util.errors import InputError


def _identity(info: os.stat_result) -> tuple[int, int, int, int, int]:
    # ctime cannot be set by a user: any write, rename or chmod of the blob since its rehash changes it.
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def normalize_project(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Catalog:
    artifacts: dict[str, Artifact]
    root: Path
    from_bundle: bool
    git_dirs: dict[str, tuple[Path, str]] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)
    hashed: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)
    _bundle: Bundle | None = None

    @classmethod
    def open(cls, path: Path, *, trusted_keys: Sequence[Path] = ()) -> Catalog:
        """Open a bundle (checking its signature when keys are given) or an ingested shared_root.

        Args:
            path: A bundle directory or an ingested shared_root.
            trusted_keys: Public keys; a bundle not signed by one of them is refused.

        Returns:
            The catalog. In bundle mode, blobs whose size on disk differs from the manifest (or that
            are missing, or are not regular files) are listed in `unavailable` and never served.

        Raises:
            InputError: `path` is neither, or its manifest is hostile.
            WorkError: The signature check failed.
        """
        path = Path(path)
        if (path / "manifest.json").is_file():
            bundle = Bundle(path)
            manifest = trusted_manifest(bundle, list(trusted_keys)).manifest
            catalog = cls({a.id: a for a in manifest.artifacts}, path, True, _bundle=bundle)
            catalog.unavailable = catalog._check_blob_sizes()
            if trusted_keys:
                # Signed content only: every blob is rehashed now, and served later only while its
                # (device, inode, size, mtime, ctime) are still those it had when it hashed right.
                catalog.unavailable |= catalog._rehash()
            # Dumb-HTTP git needs a real repository on disk: build bare repos from the bundles once.
            git_root = Path(tempfile.mkdtemp(prefix="airlift-serve-git-"))
            for artifact in manifest.artifacts:
                if artifact.kind == "git" and artifact.files and artifact.files[0].sha256 not in catalog.unavailable:
                    built = materialize_git_repo(git_root, artifact, blob_path=bundle.store.blob_path)
                    catalog.git_dirs[artifact.id.removeprefix("repos/")] = (git_root, built.relative_to(git_root).as_posix())
            return catalog
        markers = path / MARKER_DIR
        if markers.is_dir():
            artifacts = {}
            for marker_file in sorted(markers.glob("*.json")):
                marker = load_marker(marker_file)
                if marker is not None:
                    artifacts[marker.artifact.id] = marker.artifact
            catalog = cls(artifacts, path, False)
            for artifact in artifacts.values():
                if artifact.kind == "git":
                    name = artifact.id.removeprefix("repos/")
                    # Relative to the served root: every component from the root down is opened without
                    # following links, so a job that swaps repos/x.git for a symlink gets nothing served.
                    catalog.git_dirs[name] = (path, SharedRootLayout.git_repo_relative(name))
            return catalog
        raise InputError(f"{path}: neither a bundle (manifest.json) nor an ingested shared_root ({MARKER_DIR}/)")

    def _check_blob_sizes(self) -> set[str]:
        """Blobs that may not be served: missing, not a regular file, or not the manifest's size."""
        assert self._bundle is not None
        bad: set[str] = set()
        for artifact in self.artifacts.values():
            for entry in artifact.files:
                try:
                    info = os.lstat(self._bundle.store.blob_path(entry.sha256))
                except FileNotFoundError:
                    bad.add(entry.sha256)
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_size != entry.size:
                    bad.add(entry.sha256)
        return bad

    def _rehash(self) -> set[str]:
        """Rehash every file blob through the guarded opener; those that do not hash to their name."""
        assert self._bundle is not None
        bad: set[str] = set()
        for artifact in self.artifacts.values():
            for entry in artifact.files:
                if entry.sha256 in bad or entry.sha256 in self.hashed or entry.sha256 in self.unavailable:
                    continue
                path = self._bundle.store.blob_path(entry.sha256)
                try:
                    before = _identity(os.lstat(path))
                    good = hash_regular(path, size=entry.size) == entry.sha256
                    after = _identity(os.lstat(path))
                except (OSError, EscapeError):
                    good, before, after = False, None, None
                if good and before == after and before is not None:
                    self.hashed[entry.sha256] = before
                else:
                    bad.add(entry.sha256)
        return bad

    def open_git(self, name: str, relative: str) -> int:
        """A file of the dumb-HTTP git repository `name`, opened with no link followed from the root down."""
        base, prefix = self.git_dirs[name]
        return open_regular(base, f"{prefix}/{relative}")

    def relative_location(self, artifact: Artifact, entry: FileEntry) -> str:
        """Where the entry's bytes are, relative to the served root (never through a symlink)."""
        if self._bundle is not None:
            return f"blobs/sha256/{entry.sha256}"
        if artifact.kind in ("hf-model", "hf-dataset"):
            # The snapshot entry is a symlink into blobs/: serve the blob itself.
            return f"{SharedRootLayout.hf_artifact_relative(artifact)}/blobs/{entry.etag or entry.sha256}"
        if artifact.layout == "file":
            return artifact.id
        return f"{artifact.id}/{entry.path}"

    def open_entry(self, artifact: Artifact, entry: FileEntry) -> int:
        """An open descriptor of the entry's bytes: a regular file inside the root, of the manifest's size.

        Raises:
            EscapeError: A symlink or a special file is in the way.
            FileNotFoundError: The bytes are not there, or their size is not the manifest's.
        """
        if entry.sha256 in self.unavailable:
            raise FileNotFoundError(entry.path)
        fd = open_regular(self.root, self.relative_location(artifact, entry))
        info = os.fstat(fd)
        if info.st_size != entry.size or (self.hashed and self.hashed.get(entry.sha256) != _identity(info)):
            # Not the size the manifest says, or (serve --pubkey) changed since it was rehashed at start.
            os.close(fd)
            raise FileNotFoundError(f"{entry.path}: differs from the manifest")
        return fd

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
            if isinstance(artifact, ImageArtifact):
                continue
            if artifact.layout == "file" and path == artifact_id:
                return artifact, artifact.files[0]
            if path.startswith(artifact_id + "/"):
                relative = path[len(artifact_id) + 1:]
                entry = next((f for f in artifact.files if f.path == relative), None)
                if entry is not None:
                    return artifact, entry
        return None

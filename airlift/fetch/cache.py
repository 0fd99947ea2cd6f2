"""The build cache: a blob store plus records of what each resolved artifact consists of.

A record maps a resolved reference (commit, digest, URL+ETag) to the files it produced. A record
only counts when every blob it names is still in the store: the content store is the truth.
"""

from __future__ import annotations

import os
from pathlib import Path

from airlift.bundle.manifest import Artifact
from airlift.bundle.store import BlobStore
from airlift.util.fs import write_bytes_atomic


def default_cache_dir() -> Path:
    if os.environ.get("AIRLIFT_CACHE"):
        return Path(os.environ["AIRLIFT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "airlift"


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.store = BlobStore(self.root)
        self.records_dir = self.root / "records"

    def _record_path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    def load_record(self, key: str) -> Artifact | None:
        """The artifact recorded for `key`, whether or not its blobs are still present."""
        try:
            return Artifact.model_validate_json(self._record_path(key).read_bytes())
        except (FileNotFoundError, ValueError):
            return None

    def load(self, key: str) -> Artifact | None:
        """The artifact recorded for `key`, if all of its blobs are still present; else None."""
        artifact = self.load_record(key)
        if artifact is None:
            return None
        sizes = {f.sha256: f.size for f in artifact.files}
        for digest in artifact.all_blobs():
            if not self.store.has(digest, sizes.get(digest)):
                return None
        return artifact

    def remember_etag(self, etag: str, sha256: str) -> None:
        """Index an upstream ETag (e.g. a git blob id) to the sha256 of the blob it produced."""
        write_bytes_atomic(self.root / "etags" / etag, sha256.encode())

    def sha256_for_etag(self, etag: str | None, size: int | None) -> str | None:
        """The stored blob an ETag produced before, if it is still in the store with the right size."""
        if not etag:
            return None
        try:
            sha256 = (self.root / "etags" / etag).read_text().strip()
        except (FileNotFoundError, OSError):
            return None
        return sha256 if len(sha256) == 64 and self.store.has(sha256, size) else None

    def save(self, key: str, artifact: Artifact) -> None:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self._record_path(key), artifact.model_dump_json(indent=1).encode())

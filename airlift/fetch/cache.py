"""The build cache: a blob store plus records of what each resolved artifact consists of.

A record maps a resolved reference (commit, digest, URL+ETag) to the files it produced. A record
only counts when every blob it names is still in the store: the content store is the truth.

Keeping it from growing forever (`airlift cache info|prune`) is airlift/fetch/cache_prune.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from airlift.bundle.manifest import Artifact, parse_artifact
from airlift.bundle.store import BlobStore
from airlift.oci.dedup import LayerIndex
from airlift.util.errors import InputError
from airlift.util.fs import write_bytes_atomic
from airlift.util.settings import settings

DEFAULT_PRUNE_AGE = 24 * 3600.0
_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_HEX64 = re.compile(r"[0-9a-f]{64}")


def default_cache_dir() -> Path:
    return settings().cache_dir


class CacheLayout:
    """Every folder of the build cache, named here once (the blob store's `blobs/` and `.tmp/` are
    BlobStore's own)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.records = self.root / "records"  # resolved artifact -> its files
        self.etags = self.root / "etags"  # upstream ETag / git blob id -> sha256
        self.uploads = self.root / "uploads"  # pending uploads' state (S3 multipart, under s3/)
        self.s3_uploads = self.uploads / "s3"
        self.layers = self.root / LayerIndex.FOLDER  # diff_id -> compressed layer (oci/dedup.py)
        self.engine = self.root / "engine"  # engine image id -> synthesized manifest (fetch/engine_image.py)
        self.stamps = self.root / "stamps"  # `path:` sources' stat stamps (fetch/path_stamps.py)

    def record(self, key: str) -> Path:
        return self.records / f"{key}.json"

    def engine_record(self, hexdigest: str) -> Path:
        return self.engine / f"{hexdigest}.json"

    def stamp(self, source_root: str) -> Path:
        return self.stamps / f"path-{hashlib.sha256(source_root.encode()).hexdigest()}.json"


class Cache:
    """The cache at `root` (default: $AIRLIFT_CACHE, else $XDG_CACHE_HOME/airlift)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.layout = CacheLayout(self.root)
        self.store = BlobStore(self.root, check_dirs_once=True)
        self.records_dir = self.layout.records
        self.etags_dir = self.layout.etags
        self.uploads_dir = self.layout.uploads
        self.s3_uploads_dir = self.layout.s3_uploads

    def _record_path(self, key: str) -> Path:
        return self.layout.record(key)

    def load_record(self, key: str) -> Artifact | None:
        """The artifact recorded for `key`, whether or not its blobs are still present."""
        try:
            return parse_artifact(self._record_path(key).read_bytes())
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
        with contextlib.suppress(OSError):  # "last used": `cache prune --records` keeps what builds reuse
            os.utime(self._record_path(key))
        return artifact

    def remember_etag(self, etag: str, sha256: str) -> None:
        """Index an upstream ETag (e.g. a git blob id) to the sha256 of the blob it produced.

        Not fsynced: a hint, read back only as a 64-character name of a blob the store holds at the
        expected size (`sha256_for_etag`), so one lost to a crash costs a download, never a wrong blob;
        two fsyncs per small file were a third of a 10,000-file dataset's fetch.
        """
        write_bytes_atomic(self.etags_dir / etag, sha256.encode(), durable=False)

    def sha256_for_etag(self, etag: str | None, size: int | None) -> str | None:
        """The stored blob an ETag produced before, if it is still in the store with the right size."""
        if not etag:
            return None
        try:
            sha256 = (self.etags_dir / etag).read_text().strip()
        except (FileNotFoundError, OSError):
            return None
        return sha256 if len(sha256) == 64 and self.store.has(sha256, size) else None

    def save(self, key: str, artifact: Artifact) -> None:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self._record_path(key), artifact.model_dump_json(indent=1).encode())


# -- lifecycle: airlift cache info | prune ---------------------------------------------------------
def parse_age(text: str, *, option: str = "--older-than") -> float:
    """Seconds from an age such as `24h`, `7d`, `90m`, `2w` or `30s`.

    Raises:
        InputError: Not an age (the message names `option`).
    """
    match = _AGE_RE.match(text)
    if not match:
        raise InputError(f"{option} {text!r}: expected an age such as 24h, 7d, 90m or 2w")
    return float(match[1]) * _AGE_UNITS[match[2]]

"""The far side's own state: pending registry sessions and S3 multipart uploads of `airlift ingest`.

It lives under airlift's home ($AIRLIFT_HOME, util/settings.py), not in the build cache: the cache
belongs to the networked side, and the air-gapped side of the same operator may have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from airlift.util.settings import settings


@dataclass(frozen=True)
class IngestStateLayout:
    """Where ingest remembers its unfinished uploads, so a rerun after a crash resumes them."""

    root: Path

    @classmethod
    def default(cls) -> IngestStateLayout:
        return cls(settings().home_dir / "ingest")

    @property
    def registry_uploads(self) -> Path:
        """Registry upload sessions (ingest/registry.py), one file per registry, repository and blob."""
        return self.root / "registry"

    @property
    def s3_uploads(self) -> Path:
        """S3 multipart uploads (util/s3.py), one file per endpoint, bucket, key and sha256."""
        return self.root / "s3"

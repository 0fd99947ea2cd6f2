"""Upload artifacts to S3-compatible storage (SeaweedFS, MinIO, AWS) with the standard API only.

Keys are `<prefix>/<artifact id>/<relative path>` (a single-file artifact is the object at its id).
Each object carries its sha256 in metadata, so "already there" is decided by a HEAD, not a download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airlift.bundle.manifest import Artifact, FileEntry
from airlift.util.net import bounded_map
from airlift.util.s3 import SHA_META, TRANSFER, has_object


def object_key(*, prefix: str, artifact: Artifact, entry: FileEntry) -> str:
    """The S3 key of one file: `<prefix>/<artifact id>[/<path>]`."""
    base = f"{prefix.strip('/')}/{artifact.id}" if prefix.strip("/") else artifact.id
    return base if artifact.layout == "file" else f"{base}/{entry.path}"


@dataclass
class UploadReport:
    uploaded: int = 0
    skipped: int = 0
    bytes: int = 0


def upload_artifact(
    s3, *, bucket: str, prefix: str, artifact: Artifact, blob_path: Callable[[str], Path], workers: int = 8,
    on_bytes: Callable[[int], None] | None = None,
) -> UploadReport:
    """Upload an artifact's files; objects whose size and sha256 metadata match are skipped."""
    report = UploadReport()

    def one(entry: FileEntry) -> None:
        key = object_key(prefix=prefix, artifact=artifact, entry=entry)
        if has_object(s3, bucket, key, entry.size, entry.sha256):
            report.skipped += 1
            return
        s3.upload_file(
            str(blob_path(entry.sha256)), bucket, key,
            ExtraArgs={"Metadata": {SHA_META: entry.sha256}}, Config=TRANSFER, Callback=on_bytes,
        )
        report.uploaded += 1
        report.bytes += entry.size

    bounded_map(one, artifact.files, workers=workers)
    return report

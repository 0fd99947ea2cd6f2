"""Upload artifacts to S3-compatible storage (SeaweedFS, MinIO, AWS) with the standard API only.

Keys are `<prefix>/<artifact id>/<relative path>` (a single-file artifact is the object at its id).
Each object carries its sha256 in metadata, so "already there" is decided by a HEAD, not a download;
a large file killed mid-upload resumes at the part (see `airlift.util.s3.upload_file_resumable`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airlift.bundle.manifest import Artifact, FileEntry
from airlift.util.net import bounded_map
from airlift.util.s3 import has_object, upload_file_resumable


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
    s3, *, bucket: str, prefix: str, artifact: Artifact, blob_path: Callable[[str], Path], state_dir: Path, workers: int = 8,
    on_bytes: Callable[[int], None] | None = None,
) -> UploadReport:
    """Upload an artifact's files; objects whose size and sha256 metadata match are skipped.

    Args:
        s3: The S3 client.
        bucket: The bucket.
        prefix: The key prefix (see `object_key`).
        artifact: The artifact.
        blob_path: Where each file's blob is, by sha256.
        state_dir: Where pending multipart uploads are remembered, so a rerun after a crash sends
            only the parts S3 lacks (the cache's `uploads/s3/`).
        workers: Files in flight.
        on_bytes: Progress, in bytes.

    Returns:
        Files uploaded and skipped, and the bytes of those uploaded.
    """
    report = UploadReport()
    counting = threading.Lock()  # the files go up on several threads

    def one(entry: FileEntry) -> None:
        key = object_key(prefix=prefix, artifact=artifact, entry=entry)
        if has_object(s3, bucket=bucket, key=key, size=entry.size, sha256=entry.sha256):
            with counting:
                report.skipped += 1
            return
        upload_file_resumable(
            s3, path=blob_path(entry.sha256), bucket=bucket, key=key, sha256=entry.sha256, on_bytes=on_bytes, state_dir=state_dir,
        )
        with counting:
            report.uploaded += 1
            report.bytes += entry.size

    bounded_map(one, artifact.files, workers=workers)
    return report

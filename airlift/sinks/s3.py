"""Upload artifacts to S3-compatible storage (SeaweedFS, MinIO, AWS) with the standard API only.

Keys are `<prefix>/<artifact id>/<relative path>` (a single-file artifact is the object at its id).
Each object carries its sha256 in metadata, so "already there" is decided by a HEAD, not a download.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from airlift.manifest import Artifact, FileEntry
from airlift.sources.base import bounded_map

TRANSFER = TransferConfig(
    multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4, use_threads=True
)
SHA_META = "sha256"


def client(endpoint_url: str | None = None, region: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
        region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 6}, signature_version="s3v4"),
    )


def ensure_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
        s3.create_bucket(Bucket=bucket)


def object_key(prefix: str, artifact: Artifact, entry: FileEntry) -> str:
    base = f"{prefix.strip('/')}/{artifact.id}" if prefix.strip("/") else artifact.id
    return base if artifact.layout == "file" else f"{base}/{entry.path}"


def has_object(s3, bucket: str, key: str, size: int, sha256: str) -> bool:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    return head.get("ContentLength") == size and head.get("Metadata", {}).get(SHA_META) == sha256


@dataclass
class UploadReport:
    uploaded: int = 0
    skipped: int = 0
    bytes: int = 0


def upload_artifact(
    s3, *, bucket: str, prefix: str, artifact: Artifact, blob_path: Callable[[str], Path], workers: int = 8,
    on_bytes: Callable[[int], None] | None = None,
) -> UploadReport:
    report = UploadReport()

    def one(entry: FileEntry) -> None:
        key = object_key(prefix, artifact, entry)
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

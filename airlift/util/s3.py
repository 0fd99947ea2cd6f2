"""The S3 client every side uses (standard S3 API only: SeaweedFS, MinIO and AWS alike).

Each object airlift writes carries its sha256 in user metadata, so "already there" is a HEAD, never
a download. botocore's own retry layer (standard mode) is the one retry layer for S3 calls.
"""

from __future__ import annotations

import os

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

# One multipart policy for every S3 upload airlift makes: 64 MiB parts, 4 threads per file.
TRANSFER = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4, use_threads=True)
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


def has_object(s3, bucket: str, key: str, size: int, sha256: str) -> bool:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    return head.get("ContentLength") == size and head.get("Metadata", {}).get(SHA_META) == sha256

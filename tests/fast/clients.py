"""Helpers for tests that check results with real clients (boto3's S3 calls, docker credential helpers);
shared by tests/fast and the service tests."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path


def pending_upload(s3, bucket: str, key: str) -> tuple[str, dict[int, int]] | None:
    """The pending multipart upload of `key` (its id and its parts' sizes), if any."""
    uploads = [u for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", []) if u["Key"] == key]
    if not uploads:
        return None
    upload_id = uploads[0]["UploadId"]
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", [])
    return upload_id, {p["PartNumber"]: p["Size"] for p in parts}


def object_sha256(s3, bucket: str, key: str) -> str:
    """The sha256 of an S3 object as the server returns it, read in 1 MiB pieces."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    while chunk := body.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()

def credential_helper(directory: Path, name: str, *, servers: str, username: str, secret: str) -> Path:
    """A real `docker-credential-<name>` in `directory`, speaking the helper protocol: `get` reads a server
    URL on stdin and prints JSON credentials for a URL matching the shell pattern `servers`; else it fails."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / f"docker-credential-{name}"
    script.write_text(f"""#!/bin/sh
[ "$1" = get ] || exit 1
read -r server
case "$server" in
  {servers}) printf '{{"ServerURL":"%s","Username":"{username}","Secret":"{secret}"}}' "$server" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory

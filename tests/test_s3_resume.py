"""S3 multipart uploads resume at the part: after kill -9, a rerun sends only the parts S3 lacks.

Against the real S3 server of `make services` (moto); the part-level rules themselves are tested
in-process in tests/fast/test_s3_parts.py. Parts are 5 MiB (S3's minimum, through
AIRLIFT_S3_PART_SIZE or the `part_size` argument), so a blob of a few parts stands in for a 20 GB one.
"""

from __future__ import annotations

import hashlib
import signal
import time
import uuid

import boto3
from botocore.config import Config

from tests.conftest import verified
from tests.fast.clients import object_sha256, pending_upload
from tests.fixtures import pseudo_random
from tests.proxy import CountingProxy

PART = 5 << 20


class PartCountingProxy(CountingProxy):
    """CountingProxy that tells UploadPart requests (`?partNumber=`) from other PUTs."""

    @staticmethod
    def kind(path: str) -> str:
        return "part" if "partNumber=" in path else CountingProxy.kind(path)


def _client(endpoint: str):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="airlift-test",
        aws_secret_access_key="airlift-test-secret", config=Config(signature_version="s3v4"),
    )


def test_transfer_killed_mid_blob_resends_only_the_missing_parts(ws, hub, s3_endpoint):
    data = pseudo_random(7 * PART - 12_345, 7)  # 7 parts, the last one short
    blob = hashlib.sha256(data).hexdigest()
    total = 7
    hub.add_repo("dataset", "acme/s3-resume", files={"big.bin": data})
    spec = ws.write("resume.yaml", "name: resume\ndatasets:\n  - hf: acme/s3-resume\n")
    ws.run("build", str(spec), "--out", "bundle")
    bucket = f"airlift-{uuid.uuid4().hex[:10]}"
    key = f"b/blobs/sha256/{blob}"
    env = {"AIRLIFT_S3_PART_SIZE": "5MiB"}
    s3 = _client(s3_endpoint)
    proxy = PartCountingProxy(s3_endpoint.removeprefix("http://")).start()
    proxy.bytes_per_second = 3_000_000  # per connection: a part takes ~2 s, four go at once
    try:
        proc = ws.popen("transfer", "bundle", "--to", f"s3://{bucket}/b", "--s3-endpoint", f"http://{proxy.address}", extra_env=env)
        deadline = time.monotonic() + 180
        pending = None
        while time.monotonic() < deadline and proc.poll() is None:
            pending = pending_upload(s3, bucket, key) if bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]} else None
            if pending and pending[1]:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)  # a part the proxy was already forwarding lands now: count after it
        pending = pending_upload(s3, bucket, key)
        assert pending is not None, "the transfer never started a multipart upload"
        upload_id, parts = pending
        assert 1 <= len(parts) < total, f"kill point missed: {len(parts)} of {total} parts at S3"
        assert all(size == PART for size in parts.values())
        assert list((ws.root / "cache" / "uploads" / "s3").glob("*.json")), "no upload state was kept for the rerun"

        proxy.bytes_per_second = None
        proxy.reset()
        ws.run("transfer", "bundle", "--to", f"s3://{bucket}/b", "--s3-endpoint", f"http://{proxy.address}", extra_env=env)
        assert proxy.requests["PUT part"] == total - len(parts), f"{proxy.requests} with {len(parts)} parts already at S3"
        assert proxy.requests["POST blob"] == 1  # CompleteMultipartUpload of the same upload; no new one was created
    finally:
        proxy.stop()
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(data) and head["Metadata"]["sha256"] == blob
    assert object_sha256(s3, bucket, key) == blob
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], f"upload {upload_id} left pending"
    assert not list((ws.root / "cache" / "uploads" / "s3").glob("*")), "state left behind after completion"
    ws.run("transfer", f"s3://{bucket}/b", "--to", "back", "--s3-endpoint", s3_endpoint)
    verified(ws.root / "back")

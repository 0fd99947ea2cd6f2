"""S3 multipart uploads resume at the part, in-process: moto's mock of the S3 API (no server, no socket).

Moved from tests/test_s3_resume.py: the part-level rules (list parts page by page, resend the missing
and the wrong-sized, clean up a create cut before its UploadId was recorded) need no service. The kill
-9 of a whole `airlift transfer` mid-blob stays there, against the real server.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest

from airlift.bundle.manifest import parse_artifact
from airlift.ingest.s3 import upload_artifact
from airlift.util import s3 as s3_util
from airlift.util.errors import InputError
from tests.fast.clients import object_sha256, pending_upload

PART = 5 << 20


def pseudo_random(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def _local_blob(s3, tmp_path, *, size: int, seed: int, name: str = "blob"):
    """A fresh bucket, and a file of `size` pseudo-random bytes: (bucket, path, data, sha256)."""
    bucket = f"airlift-{uuid.uuid4().hex[:10]}"
    s3_util.ensure_bucket(s3, bucket)
    data = pseudo_random(size, seed)
    path = tmp_path / name
    path.write_bytes(data)
    return bucket, path, data, hashlib.sha256(data).hexdigest()


def _cut_create(s3, **upload) -> None:
    """Run an upload that dies right after S3 created its multipart upload, before the UploadId is recorded."""

    def crash(**_):
        raise ConnectionAbortedError("simulated crash")

    s3.meta.events.register("after-call.s3.CreateMultipartUpload", crash)
    try:
        with pytest.raises(ConnectionAbortedError):
            s3_util.upload_file_resumable(s3, **upload)
    finally:
        s3.meta.events.unregister("after-call.s3.CreateMultipartUpload", crash)


@pytest.fixture
def s3(monkeypatch):
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "airlift-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "airlift-test-secret")
    with mock_aws():
        yield s3_util.client()


def _count_parts(s3) -> list[int]:
    sent: list[int] = []
    s3.meta.events.register("provide-client-params.s3.UploadPart", lambda params, **_: sent.append(params["PartNumber"]))
    return sent


def test_resume_lists_parts_page_by_page_and_resends_missing_and_wrong_sized_ones(s3, tmp_path, monkeypatch):
    bucket, path, data, blob = _local_blob(s3, tmp_path, size=5 * PART + 999, seed=11)  # 6 parts
    state_dir = tmp_path / "uploads"

    def crash(params, **_):  # the first run dies before parts 2, 4, 5 and 6 reach S3
        if params["PartNumber"] != 1 and params["PartNumber"] != 3:
            raise ConnectionAbortedError("simulated crash")

    s3.meta.events.register("provide-client-params.s3.UploadPart", crash)
    with pytest.raises(ConnectionAbortedError):
        s3_util.upload_file_resumable(s3, path=path, bucket=bucket, key="k", sha256=blob, part_size=PART, state_dir=state_dir)
    s3.meta.events.unregister("provide-client-params.s3.UploadPart", crash)
    upload_id, parts = pending_upload(s3, bucket, "k")
    assert parts == {1: PART, 3: PART}
    # Part 3 at S3 now has the wrong size (as if another writer had sent garbage): it must be sent again.
    s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=3, Body=b"x" * (PART + 7))
    monkeypatch.setattr(s3_util, "_PARTS_PAGE", 1)  # one part per list_parts page: the listing must paginate
    listings = []
    s3.meta.events.register("provide-client-params.s3.ListParts", lambda params, **_: listings.append(params.get("PartNumberMarker")))
    sent = _count_parts(s3)
    progress: list[int] = []

    got = s3_util.upload_file_resumable(
        s3, path=path, bucket=bucket, key="k", sha256=blob, part_size=PART, state_dir=state_dir, on_bytes=progress.append,
    )

    assert sorted(sent) == [2, 3, 4, 5, 6]
    assert got == len(data) - PART  # everything but part 1
    assert sum(progress) == len(data)  # part 1 is reported as done at the start
    assert len(listings) >= 2, "list_parts was not paginated"
    assert object_sha256(s3, bucket, "k") == blob
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"]["sha256"] == blob
    assert not list(state_dir.iterdir())


def test_a_create_cut_before_its_upload_id_was_recorded_leaves_no_pending_upload(s3, tmp_path):
    bucket, path, data, blob = _local_blob(s3, tmp_path, size=2 * PART + 1, seed=14)  # 3 parts
    state_dir = tmp_path / "uploads"
    # Somebody else's upload of a key that merely starts with ours: it must survive the cleanup.
    other = s3.create_multipart_upload(Bucket=bucket, Key="k2")["UploadId"]
    _cut_create(s3, path=path, bucket=bucket, key="k", sha256=blob, part_size=PART, state_dir=state_dir)
    orphans = [u for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) if u["Key"] == "k"]
    assert len(orphans) == 1, "the crash must leave the created upload behind"

    assert s3_util.upload_file_resumable(s3, path=path, bucket=bucket, key="k", sha256=blob, part_size=PART, state_dir=state_dir) == len(data)

    pending = [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert pending == [("k2", other)]
    assert object_sha256(s3, bucket, "k") == blob
    assert not list(state_dir.iterdir())


def test_a_cut_create_does_not_block_the_rerun_when_pending_uploads_cannot_be_listed(s3, tmp_path, caplog):
    from botocore.exceptions import ClientError

    bucket, path, data, blob = _local_blob(s3, tmp_path, size=2 * PART + 1, seed=15)
    state_dir = tmp_path / "uploads"

    def denied(**_):  # a least-privilege policy without s3:ListBucketMultipartUploads
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "ListMultipartUploads")

    _cut_create(s3, path=path, bucket=bucket, key="k", sha256=blob, part_size=PART, state_dir=state_dir)
    s3.meta.events.register("before-call.s3.ListMultipartUploads", denied)
    try:
        assert s3_util.upload_file_resumable(s3, path=path, bucket=bucket, key="k", sha256=blob, part_size=PART, state_dir=state_dir) == len(data)
    finally:
        s3.meta.events.unregister("before-call.s3.ListMultipartUploads", denied)
    assert object_sha256(s3, bucket, "k") == blob
    assert "cannot list pending uploads (AccessDenied)" in caplog.text


def test_small_files_are_one_put_with_the_sha256(s3, tmp_path):
    bucket, path, data, blob = _local_blob(s3, tmp_path, size=PART, seed=12, name="small")  # one part: no multipart upload
    sent = _count_parts(s3)
    assert s3_util.upload_file_resumable(s3, path=path, bucket=bucket, key="s", sha256=blob, part_size=PART, state_dir=tmp_path / "st") == len(data)
    assert sent == [] and not (tmp_path / "st").exists()
    assert s3_util.has_object(s3, bucket=bucket, key="s", size=len(data), sha256=blob)
    assert object_sha256(s3, bucket, "s") == blob


def test_ingest_upload_resumes_a_killed_multipart_upload(s3, tmp_path, monkeypatch):
    bucket = f"airlift-{uuid.uuid4().hex[:10]}"
    s3_util.ensure_bucket(s3, bucket)
    data = pseudo_random(2 * PART + 5, 13)  # 3 parts
    blob = hashlib.sha256(data).hexdigest()
    (tmp_path / blob).write_bytes(data)
    artifact = parse_artifact({
        "id": "files/big.bin", "kind": "url", "layout": "file",
        "source": {"url": "https://files.example.invalid/big.bin", "sha256": blob},
        "files": [{"path": "big.bin", "size": len(data), "sha256": blob}],
    })
    monkeypatch.setenv("AIRLIFT_S3_PART_SIZE", "5MiB")

    def crash(params, **_):
        if params["PartNumber"] > 1:
            raise ConnectionAbortedError("simulated crash")

    s3.meta.events.register("provide-client-params.s3.UploadPart", crash)
    with pytest.raises(ConnectionAbortedError):
        upload_artifact(s3, bucket=bucket, prefix="p", artifact=artifact, blob_path=lambda d: tmp_path / d, state_dir=tmp_path / "st")
    s3.meta.events.unregister("provide-client-params.s3.UploadPart", crash)
    sent = _count_parts(s3)

    report = upload_artifact(s3, bucket=bucket, prefix="p", artifact=artifact, blob_path=lambda d: tmp_path / d, state_dir=tmp_path / "st")

    assert sorted(sent) == [2, 3] and report.uploaded == 1
    assert object_sha256(s3, bucket, "p/files/big.bin") == blob
    again = upload_artifact(s3, bucket=bucket, prefix="p", artifact=artifact, blob_path=lambda d: tmp_path / d, state_dir=tmp_path / "st")
    assert (again.skipped, again.uploaded, sorted(sent)) == (1, 0, [2, 3])


def test_file_slice_streams_and_rewinds(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 4)
    with s3_util.FileSlice(path, 100, 300) as body:
        assert len(body) == 300
        first = body.read(50)
        assert first == (bytes(range(256)) * 4)[100:150]
        assert body.read() == (bytes(range(256)) * 4)[150:400]
        assert body.read(10) == b""
        body.seek(0)  # botocore rewinds to retry or after computing the checksum
        assert body.read() == (bytes(range(256)) * 4)[100:400]


def test_part_size_setting(monkeypatch):
    monkeypatch.delenv(s3_util.PART_SIZE_ENV, raising=False)
    assert s3_util.part_size_default() == 64 << 20
    monkeypatch.setenv(s3_util.PART_SIZE_ENV, "5MiB")
    assert s3_util.part_size_default() == PART
    monkeypatch.setenv(s3_util.PART_SIZE_ENV, "1MiB")
    with pytest.raises(InputError, match="AIRLIFT_S3_PART_SIZE='1MiB'"):
        s3_util.part_size_default()
    # 10,000 parts at most: a 1 TB blob gets parts large enough to fit.
    size = 10**12
    fitted = s3_util._fit_part_size(size, 64 << 20)
    assert fitted >= 64 << 20 and -(-size // fitted) <= 10_000 and fitted % (1 << 20) == 0


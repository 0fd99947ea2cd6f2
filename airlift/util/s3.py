"""The S3 client every side uses (standard S3 API only: SeaweedFS, MinIO and AWS alike).

Each object airlift writes carries its sha256 in user metadata, so "already there" is a HEAD, never
a download. botocore's own retry layer (standard mode) is the one retry layer for S3 calls.

Every upload sends a SHA-256 checksum the server checks before it stores anything: a single PUT
carries the blob's own sha256 (the manifest's digest), each part of a multipart upload its part's.

Large files go up as multipart uploads that survive a crash: the UploadId is remembered in a small
state file, and a rerun lists the parts S3 already holds and sends only the missing ones (a 20 GB
blob killed at 19 GB sends 1 GB more, not 20). Parts are streamed from the file, never held whole
in memory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import BaseModel

from airlift.util.errors import WorkError
from airlift.util.fs import write_bytes_atomic
from airlift.util.locks import FileLock
from airlift.util.net import bounded_map
from airlift.util.phase import progress, under_way
from airlift.util.settings import DEFAULT_PART, MIN_PART, settings  # noqa: F401 - DEFAULT_PART: re-exported

SHA_META = "sha256"
PART_SIZE_ENV = "AIRLIFT_S3_PART_SIZE"
MAX_PARTS = 10_000  # S3's most parts per upload
PART_WORKERS = 4  # parts in flight per file
log = logging.getLogger(__name__)
_PARTS_PAGE = 1000  # list_parts page size (S3's maximum)
_IDENTITY = {"endpoint", "bucket", "key", "sha256", "size"}  # what makes a state file this upload's


def client(endpoint_url: str | None = None, region: str | None = None):
    """A boto3 S3 client: endpoint and region from the arguments or the settings, standard retries."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or settings().s3_endpoint_url,
        region_name=region or settings().aws_region or "us-east-1",
        # Files x parts in flight (4 x 4) must not queue for pooled connections.
        config=Config(retries={"mode": "standard", "max_attempts": 6}, signature_version="s3v4", max_pool_connections=32),
    )


def ensure_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
        s3.create_bucket(Bucket=bucket)


def has_object(s3, *, bucket: str, key: str, size: int, sha256: str) -> bool:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False
        raise
    return head.get("ContentLength") == size and head.get("Metadata", {}).get(SHA_META) == sha256


def part_size_default() -> int:
    """The part size: AIRLIFT_S3_PART_SIZE (bytes, or e.g. `5MiB`, `128MB`), else 64 MiB (util/settings.py).

    Raises:
        InputError: The variable is not a size, or is below S3's 5 MiB minimum.
    """
    return settings().s3_part_size


def _fit_part_size(size: int, wanted: int) -> int:
    """`wanted`, grown (in whole MiB) when the file would otherwise need more than S3's 10,000 parts."""
    wanted = max(wanted, MIN_PART)
    least = -(-size // MAX_PARTS)
    return wanted if wanted >= least else -(-least // (1 << 20)) * (1 << 20)


class FileSlice(io.RawIOBase):
    """A read-only, seekable view of `length` bytes of a file from `offset`: one part's request body.

    botocore reads it a chunk at a time (for the checksum, then to send) and seeks back to retry,
    so a part is never held in memory whole.
    """

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed with the slice
        self._offset, self._length, self._pos = offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        count = min(len(buffer), self._length - self._pos)
        if count <= 0:
            return 0
        self._file.seek(self._offset + self._pos)
        data = self._file.read(count)
        buffer[: len(data)] = data
        self._pos += len(data)
        progress(done=self._pos, total=self._length)
        return len(data)

    def __len__(self) -> int:
        return self._length

    def close(self) -> None:
        self._file.close()
        super().close()


class UploadState(BaseModel):
    """What a rerun needs to resume one multipart upload (a JSON file under the state directory)."""

    endpoint: str
    bucket: str
    key: str
    sha256: str
    size: int
    part_size: int
    upload_id: str
    # True while `create_multipart_upload` is in flight and its UploadId not yet recorded.
    creating: bool = False
    # The upload was created with ChecksumAlgorithm=SHA256 (an upload begun by an older airlift was not:
    # its parts are resumed without one, as S3 requires).
    sha256_parts: bool = False


def checksum_sha256(sha256_hex: str) -> str:
    """S3's spelling of a SHA-256 checksum (base64 of the digest) from the hex digest airlift records."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def _state_name(endpoint: str, bucket: str, key: str, sha256: str) -> str:
    return hashlib.sha256(f"{endpoint}\0{bucket}\0{key}\0{sha256}".encode()).hexdigest()


def _load_state(path: Path) -> UploadState | None:
    try:
        return UploadState.model_validate_json(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None  # no upload begun, or a file we cannot trust: start a new upload


def _listed_parts(s3, state: UploadState) -> dict[int, tuple[str, int, str | None]] | None:
    """The parts S3 holds for the pending upload (number -> (ETag, size, ChecksumSHA256)); None if the upload is gone."""
    parts: dict[int, tuple[str, int, str | None]] = {}
    pages = s3.get_paginator("list_parts").paginate(
        Bucket=state.bucket, Key=state.key, UploadId=state.upload_id, PaginationConfig={"PageSize": _PARTS_PAGE},
    )
    try:
        for page in pages:
            for part in page.get("Parts", []):
                parts[part["PartNumber"]] = (part["ETag"], part["Size"], part.get("ChecksumSHA256"))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "NoSuchUpload" or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None  # completed, aborted, or expired by a lifecycle rule
        raise
    return parts


def upload_file_resumable(
    s3, *, path: Path, bucket: str, key: str, sha256: str, part_size: int | None = None,
    on_bytes: Callable[[int], None] | None = None, state_dir: Path,
) -> int:
    """Upload a file as `key` with its sha256 in the metadata, resuming a killed upload at the part.

    Up to one part's size, a single PUT. Above it, a multipart upload whose UploadId is kept in a
    state file under `state_dir` (one per endpoint, bucket, key and sha256); a rerun lists the
    parts S3 already holds and sends only the missing ones, and any listed part whose size is wrong.
    A lock on the state file keeps two processes from driving the same upload.

    Args:
        s3: The S3 client.
        path: The local file (a blob, whose name is its sha256).
        bucket: The bucket.
        key: The object key.
        sha256: The file's sha256, stored in the object's metadata at create time.
        part_size: Bytes per part (default: `part_size_default()`); grown if the file would need
            more than 10,000 parts. A resumed upload keeps the part size it began with.
        on_bytes: Progress: called with each part's length once S3 has it (parts found already
            there are reported at the start).
        state_dir: Where the state files live (the cache's `uploads/s3/`).

    Returns:
        The bytes sent by this call.

    Raises:
        WorkError: After completing, S3 reports a different size or sha256 for the object.
    """
    path, state_dir = Path(path), Path(state_dir)
    size = path.stat().st_size
    chosen = _fit_part_size(size, part_size or part_size_default())
    endpoint = str(s3.meta.endpoint_url)
    name = _state_name(endpoint, bucket, key, sha256)
    state_path = state_dir / f"{name}.json"
    if size <= chosen and not state_path.exists():  # (an upload begun with smaller parts is resumed, not left behind)
        with open(path, "rb") as body:
            s3.put_object(
                Bucket=bucket, Key=key, Body=body, ContentLength=size, Metadata={SHA_META: sha256},
                # S3 refuses the body unless it hashes to the manifest's digest (the algorithm is named too:
                # moto records a checksum only then).
                ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum_sha256(sha256),
            )
        if on_bytes:
            on_bytes(size)
        return size
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(state_dir / f"{name}.lock")
    waited = not lock.acquire(blocking=False)
    if waited:
        lock.acquire()
    try:
        if waited and has_object(s3, bucket=bucket, key=key, size=size, sha256=sha256):
            return 0  # another process finished this very upload while we waited for it
        fresh = UploadState(endpoint=endpoint, bucket=bucket, key=key, sha256=sha256, size=size, part_size=chosen, upload_id="")
        upload, listed = _begin_or_resume(s3, state_path=state_path, fresh=fresh)
        sent = _send_parts(s3, path=path, upload=upload, listed=listed, on_bytes=on_bytes)
        state_path.unlink(missing_ok=True)  # completed: nothing left to resume
        lock.remove()
    finally:
        lock.release()
    if not has_object(s3, bucket=bucket, key=key, size=size, sha256=sha256):
        raise WorkError(f"s3://{bucket}/{key}: after the upload S3 reports another size or sha256 than {sha256}")
    return sent


def _begin_or_resume(s3, *, state_path: Path, fresh: UploadState) -> tuple[UploadState, dict[int, tuple[str, int, str | None]]]:
    """The pending upload of the state file with the parts S3 holds, or a new upload with none."""
    state = _load_state(state_path)
    ours = state is not None and state.model_dump(include=_IDENTITY) == fresh.model_dump(include=_IDENTITY)
    if ours and state.upload_id:
        listed = _listed_parts(s3, state)
        if listed is not None:
            return state, listed
    if ours and state.creating:
        _abort_cut_creates(s3, state)
    # The intent goes to disk first: a crash between S3 creating the upload and its UploadId reaching the
    # state file would otherwise leave an upload nobody knows of (S3 keeps its parts, and bills them).
    write_bytes_atomic(state_path, fresh.model_copy(update={"creating": True}).model_dump_json().encode())
    created = s3.create_multipart_upload(Bucket=fresh.bucket, Key=fresh.key, Metadata={SHA_META: fresh.sha256}, ChecksumAlgorithm="SHA256")
    state = fresh.model_copy(update={"upload_id": created["UploadId"], "sha256_parts": True})
    write_bytes_atomic(state_path, state.model_dump_json().encode())
    return state, {}


def _abort_cut_creates(s3, intent: UploadState) -> None:
    """Abort the pending uploads of `intent.key` after a create whose UploadId was never recorded.

    The cut upload holds no part (parts are sent only once the UploadId is on disk), and nothing tells
    it apart from other pending uploads of the same key: S3 lists no metadata for pending uploads, and
    their `Initiated` time is not reliable everywhere (moto reports a fixed date). So every pending
    upload of exactly this key goes. A writer of the same key elsewhere at that moment fails to
    complete and, run again, begins a new upload.
    """
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=intent.bucket, Prefix=intent.key)
    try:
        uploads = [upload for page in pages for upload in page.get("Uploads", []) if upload["Key"] == intent.key]
    except ClientError as exc:  # least-privilege policies often lack s3:ListBucketMultipartUploads
        code = exc.response.get("Error", {}).get("Code", "?")
        log.warning("s3://%s/%s: cannot list pending uploads (%s): one begun by a cut run may be left to a lifecycle rule", intent.bucket, intent.key, code)
        return
    for upload in uploads:
        with contextlib.suppress(ClientError):  # already completed or aborted: nothing to clean
            s3.abort_multipart_upload(Bucket=intent.bucket, Key=intent.key, UploadId=upload["UploadId"])


def _send_parts(
    s3, *, path: Path, upload: UploadState, listed: dict[int, tuple[str, int, str | None]], on_bytes: Callable[[int], None] | None,
) -> int:
    """Send the parts S3 lacks (or holds at the wrong size), then complete the upload; returns bytes sent."""
    count = -(-upload.size // upload.part_size)

    def length(number: int) -> int:
        return min(upload.part_size, upload.size - (number - 1) * upload.part_size)

    # Each part as CompleteMultipartUpload names it: its ETag and, for a checksummed upload, its SHA-256.
    etags = {n: _part(n, etag, checksum) for n, (etag, got, checksum) in listed.items() if n <= count and got == length(n)}
    if on_bytes and etags:
        on_bytes(sum(length(n) for n in etags))

    def send(number: int) -> tuple[int, dict[str, object]]:
        # Each part is a unit of work on its own thread: kill trials stop inside one (util/phase.py).
        with under_way("upload", f"{upload.key}#{number}"), FileSlice(path, (number - 1) * upload.part_size, length(number)) as body:
            response = s3.upload_part(
                Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id, PartNumber=number,
                Body=body, ContentLength=length(number), **({"ChecksumAlgorithm": "SHA256"} if upload.sha256_parts else {}),
            )
        if on_bytes:
            on_bytes(length(number))
        return number, _part(number, response["ETag"], response.get("ChecksumSHA256"))

    missing = [n for n in range(1, count + 1) if n not in etags]
    etags.update(bounded_map(send, missing, workers=PART_WORKERS))
    s3.complete_multipart_upload(
        Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id,
        MultipartUpload={"Parts": [etags[n] for n in range(1, count + 1)]},
    )
    return sum(length(n) for n in missing)


def _part(number: int, etag: str, checksum: str | None) -> dict[str, object]:
    return {"PartNumber": number, "ETag": etag, **({"ChecksumSHA256": checksum} if checksum else {})}

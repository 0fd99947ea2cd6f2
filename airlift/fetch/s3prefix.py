"""`s3:` datasets: every object under an S3 prefix (endpoint from AWS_ENDPOINT_URL, as boto3 reads it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry, check_relative_path
from airlift.config.spec import S3Prefix
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.util.errors import IntegrityError, WorkError
from airlift.util.fs import CHUNK
from airlift.util.net import bounded_map
from airlift.util.s3 import client


def _split(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix


def resolve(entry: S3Prefix, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """List every object under the prefix (keys checked as relative paths) and stamp the listing."""
    bucket, prefix = _split(entry.s3)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    s3 = client()

    def listing() -> list[dict]:
        items = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            items += [i for i in page.get("Contents", []) if not i["Key"].endswith("/")]
        return items

    items = listing()  # botocore retries S3 calls (standard mode): the one retry layer for S3
    if not items:
        raise WorkError(f"no objects under {entry.s3}", artifact_id=artifact_id)
    files = []
    for item in sorted(items, key=lambda i: i["Key"]):
        relative = item["Key"][len(prefix):]
        try:
            check_relative_path(relative)
        except ValueError as exc:
            raise WorkError(f"object {item['Key']!r}: {exc}", artifact_id=artifact_id) from None
        files.append(RemoteFile(path=relative, size=item["Size"], etag=item.get("ETag", "").strip('"') or None))
    stamp = hashlib.sha256(json.dumps([[f.path, f.size, f.etag] for f in files]).encode()).hexdigest()
    return Resolved(artifact_id, "s3", {"url": entry.s3, "bucket": bucket, "prefix": prefix, "listing": stamp}, tuple(files))


def capped(body, size: int | None, label: str) -> Iterator[bytes]:  # noqa: ANN001 - a botocore StreamingBody
    """The body's chunks, stopping one byte past the listed size (permanent: the listing lied).

    An object listed at 10 B that streams forever would otherwise fill the cache's disk first and be
    compared with its listing only at the end.
    """
    seen = 0
    while chunk := body.read(CHUNK if size is None else min(CHUNK, size + 1 - seen)):
        seen += len(chunk)
        if size is not None and seen > size:
            raise IntegrityError(f"{label}: the object is larger than the {size} bytes its listing says; stopped at {seen}")
        yield chunk


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Stream each object into the cache store, hashing while writing."""
    s3 = client()
    bucket, prefix = resolved.source.bucket, resolved.source.prefix

    def one(remote: RemoteFile) -> FileEntry:
        if remote.sha256 and ctx.cache.store.has(remote.sha256, remote.size):
            return FileEntry(path=remote.path, size=remote.size or 0, sha256=remote.sha256)

        def get() -> FileEntry:
            body = s3.get_object(Bucket=bucket, Key=prefix + remote.path)["Body"]
            try:
                blob = ctx.cache.store.put_stream(capped(body, remote.size, f"{resolved.artifact_id}: {remote.path}"))
            finally:
                body.close()
            if remote.size is not None and blob.size != remote.size:
                raise WorkError(f"{remote.path}: got {blob.size} bytes, listing said {remote.size}", artifact_id=resolved.artifact_id)
            ctx.progress(blob.size)
            return FileEntry(path=remote.path, size=blob.size, sha256=blob.sha256)

        return get()

    entries = bounded_map(one, resolved.files, workers=ctx.max_parallel_files)
    return FileArtifact(id=resolved.artifact_id, kind="s3", source=resolved.source, files=entries)

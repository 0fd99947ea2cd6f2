"""Bundles on S3: `s3://bucket/prefix/{manifest.json, SHA256SUMS, blobs/sha256/<hex>}`.

Each blob object carries its sha256 in metadata, so "already there" is a listing plus a HEAD, never
a download. The manifest goes up last, so a half-sent bundle is never mistaken for a whole one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from airlift.bundle.layout import MANIFEST, SIGNATURE, SUMS, Bundle
from airlift.bundle.manifest import Manifest
from airlift.bundle.verify import verify_bundle
from airlift.transport.location import Location, blob_sizes
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import CHUNK, write_bytes_atomic
from airlift.util.net import bounded_map
from airlift.util.s3 import SHA_META, TRANSFER, ensure_bucket, has_object


def _key(location: Location, name: str) -> str:
    return f"{location.prefix}/{name}" if location.prefix else name


def inventory(s3, location: Location) -> dict[str, int]:
    """Blob objects under the prefix, by digest, with their sizes (one listing, no downloads)."""
    found: dict[str, int] = {}
    prefix = _key(location, "blobs/sha256/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix):]
            if len(name) == 64:
                found[name] = item["Size"]
    return found


@dataclass
class S3TransferResult:
    sent: list[str]
    bytes_sent: int
    present: int


def _present(s3, location: Location, wanted: dict[str, int], listed: dict[str, int]) -> set[str]:
    candidates = [d for d, size in wanted.items() if listed.get(d) == size]

    def check(digest: str) -> tuple[str, bool]:
        return digest, has_object(s3, location.bucket, _key(location, f"blobs/sha256/{digest}"), wanted[digest], digest)

    return {d for d, ok in bounded_map(check, candidates, workers=16) if ok}


def upload_blobs(s3, src: Bundle, location: Location, digests: Iterable[str], on_bytes: Callable[[int], None] | None = None) -> int:
    def one(digest: str) -> int:
        path = src.store.blob_path(digest)
        s3.upload_file(str(path), location.bucket, _key(location, f"blobs/sha256/{digest}"),
                       ExtraArgs={"Metadata": {SHA_META: digest}}, Config=TRANSFER, Callback=on_bytes)
        return path.stat().st_size

    return sum(bounded_map(one, list(digests), workers=4))


def plan_pull(s3, location: Location, dest: Path) -> tuple[bytes, dict[str, tuple[str, int]], int]:
    """What a pull from S3 must fetch: blobs the remote bundle carries and DEST lacks.

    Returns:
        The remote manifest's bytes (validated), the missing blobs as digest -> (first artifact naming
        it, size), and the number already at DEST.
    """
    manifest_bytes = read_remote_manifest(s3, location)
    manifest = Manifest.parse(manifest_bytes, origin=f"{location.text}/{MANIFEST}")
    offered = inventory(s3, location)
    store = Bundle(dest).store
    carried: dict[str, tuple[str, int]] = {}
    for artifact in manifest.artifacts:
        for digest in sorted(artifact.all_blobs()):
            if digest in offered and digest not in carried:
                carried[digest] = (artifact.id, offered[digest])
    missing = {d: v for d, v in carried.items() if not store.has(d, v[1])}
    return manifest_bytes, missing, len(carried) - len(missing)


def plan_push(s3, src: Bundle, location: Location) -> tuple[Manifest, dict[str, tuple[str, int]], int]:
    ensure_bucket(s3, location.bucket)
    manifest = src.read_manifest()
    carried = blob_sizes(manifest, src)
    present = _present(s3, location, {d: v[1] for d, v in carried.items()}, inventory(s3, location))
    missing = {d: v for d, v in carried.items() if d not in present}
    return manifest, missing, len(present)


def finish_push(s3, src: Bundle, location: Location) -> None:
    """Upload the small files (manifest last), skipping any already identical, then check DEST."""
    for name in (SUMS, SIGNATURE, MANIFEST):
        path = src.root / name
        if not path.exists():
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        key = _key(location, name)
        if not has_object(s3, location.bucket, key, len(data), digest):
            s3.put_object(Bucket=location.bucket, Key=key, Body=data, Metadata={SHA_META: digest})
    manifest = src.read_manifest()
    carried = {d: v[1] for d, v in blob_sizes(manifest, src).items()}
    present = _present(s3, location, carried, inventory(s3, location))
    lost = sorted(set(carried) - present)
    if lost:
        raise WorkError(f"verification at {location.text} failed: {len(lost)} blobs missing or with the wrong size/sha256, e.g. {lost[0]}")


def read_remote_manifest(s3, location: Location) -> bytes:
    try:
        return s3.get_object(Bucket=location.bucket, Key=_key(location, MANIFEST))["Body"].read()
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            raise InputError(f"{location.text}: no {MANIFEST} there (not a bundle, or an unfinished transfer)") from None
        raise


def pull_blobs(s3, location: Location, dest: Path, digests: Iterable[str], on_bytes: Callable[[int], None] | None = None) -> int:
    """Download blobs into DEST's store, hashing while writing: each must hash to its name."""
    store = Bundle(dest).store

    def one(digest: str) -> int:
        body = s3.get_object(Bucket=location.bucket, Key=_key(location, f"blobs/sha256/{digest}"))["Body"]
        blob = store.put_stream(iter(lambda: body.read(CHUNK), b""), expected_sha256=digest, label=f"{location.text} blob {digest[:12]}")
        if on_bytes:
            on_bytes(blob.size)
        return blob.size

    return sum(bounded_map(one, list(digests), workers=4))


def finish_pull(s3, location: Location, dest: Path, manifest_bytes: bytes, copied: set[str]) -> None:
    bundle = Bundle(dest)
    for name in (SIGNATURE,):
        try:
            data = s3.get_object(Bucket=location.bucket, Key=_key(location, name))["Body"].read()
            write_bytes_atomic(dest / name, data)
        except ClientError:
            pass
    write_bytes_atomic(dest / MANIFEST, manifest_bytes)
    manifest = bundle.read_manifest()
    bundle.write_sums(manifest, bundle.manifest_sha256())
    bundle.store.cleanup_tmp()
    already = set(blob_sizes(manifest, bundle)) - copied
    report = verify_bundle(bundle, trusted=copied | already)
    if not report.ok:
        raise WorkError("verification at destination failed: " + "; ".join(p.describe() for p in report.problems))

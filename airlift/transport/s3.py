"""Bundles on S3: `s3://bucket/prefix/{manifest.json, SHA256SUMS, blobs/sha256/<hex>}`.

Each blob object carries, in metadata, the sha256 airlift computed before uploading it, so "already
there" is a listing plus a HEAD (right size, airlift's sha256), not a download. An S3 object is
immutable: changing its bytes takes a new PUT, which drops that metadata unless the writer sets it
again. `--recheck` downloads and rehashes every object already there, and sends the damaged ones again.
The manifest goes up last, so a half-sent bundle is never mistaken for a whole one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from botocore.exceptions import ClientError

from airlift.bundle.layout import MANIFEST, SIGNATURE, SUMS, TOP_LEVEL_FILES, Bundle
from airlift.bundle.manifest import Manifest
from airlift.bundle.store import SHA256_RE
from airlift.transport.location import (
    Location,
    TransferPlan,
    blob_sizes,
    check_dest,
    lent_blobs,
    require_whole,
)
from airlift.transport.proof import prove_local, stamp_received
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import CHUNK, write_bytes_atomic
from airlift.util.net import bounded_map
from airlift.util.s3 import SHA_META, ensure_bucket, has_object, upload_file_resumable


def _key(location: Location, name: str) -> str:
    return f"{location.prefix}/{name}" if location.prefix else name


def inventory(s3, location: Location) -> dict[str, int]:
    """Blob objects under the prefix, by digest, with their sizes (one listing, no downloads)."""
    found: dict[str, int] = {}
    prefix = _key(location, "blobs/sha256/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix):]
            if SHA256_RE.match(name):  # anything else under the prefix is not a blob of this bundle
                found[name] = item["Size"]
    return found


def _present(s3, location: Location, wanted: dict[str, int], listed: dict[str, int]) -> set[str]:
    """Blobs listed with the right size whose object carries the sha256 airlift gave it on upload."""
    candidates = [d for d, size in wanted.items() if listed.get(d) == size]

    def check(digest: str) -> tuple[str, bool]:
        return digest, has_object(s3, bucket=location.bucket, key=_key(location, f"blobs/sha256/{digest}"), size=wanted[digest], sha256=digest)

    return {d for d, ok in bounded_map(check, candidates, workers=16) if ok}


def _rehash_objects(s3, location: Location, digests: list[str]) -> set[str]:
    """Download (to memory, a chunk at a time) and rehash objects; returns those that fail (--recheck)."""
    def one(digest: str) -> tuple[str, bool]:
        body = s3.get_object(Bucket=location.bucket, Key=_key(location, f"blobs/sha256/{digest}"))["Body"]
        hasher = hashlib.sha256()
        while chunk := body.read(CHUNK):
            hasher.update(chunk)
        return digest, hasher.hexdigest() == digest

    return {d for d, ok in bounded_map(one, digests, workers=4) if not ok}


def upload_blobs(
    s3, *, src: Bundle, location: Location, digests: Iterable[str], state_dir: Path, on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Upload blobs under `blobs/sha256/`, each with its sha256 in the metadata; a killed upload resumes at the part.

    Args:
        s3: The S3 client.
        src: The local bundle.
        location: The remote bundle.
        digests: The blobs to send.
        state_dir: Where pending multipart uploads are remembered (the cache's `uploads/s3/`, not
            the bundle: a bundle may sit on read-only media, and its directory holds only bundle files).
        on_bytes: Progress, in bytes.

    Returns:
        The bytes sent.
    """
    def one(digest: str) -> int:
        return upload_file_resumable(
            s3, path=src.store.blob_path(digest), bucket=location.bucket, key=_key(location, f"blobs/sha256/{digest}"),
            sha256=digest, on_bytes=on_bytes, state_dir=state_dir,
        )

    return sum(bounded_map(one, list(digests), workers=4))


def plan_pull(s3, location: Location, dest: Path, *, recheck: bool = False) -> TransferPlan:
    """What a pull from S3 must fetch: blobs the remote bundle carries that DEST cannot prove it holds.

    Args:
        s3: The S3 client.
        location: The remote bundle.
        dest: The local destination directory.
        recheck: Rehash every blob DEST holds, whatever its stamp says.

    Returns:
        The plan (the remote manifest's bytes, validated; the missing blobs by first artifact and size;
        what DEST proved; what a delta leaves to its lineage).
    """
    manifest_bytes = read_remote_manifest(s3, location)
    manifest = Manifest.parse(manifest_bytes, origin=f"{location.text}/{MANIFEST}")
    offered = inventory(s3, location)
    carried: dict[str, tuple[str, int]] = {}
    for artifact in manifest.artifacts:
        for digest in sorted(artifact.all_blobs()):
            if digest in offered and digest not in carried:
                carried[digest] = (artifact.id, offered[digest])
    for digest in sorted(manifest.all_blobs() - set(carried)):  # v1.1: the SBOM and provenance blobs
        if digest in offered:
            carried[digest] = ("evidence", offered[digest])
    proof = prove_local(dest, {d: v[1] for d, v in carried.items()}, recheck=recheck)
    missing = {d: v for d, v in carried.items() if d not in proof.proven}
    return TransferPlan(
        manifest, manifest_bytes, missing, len(proof.proven),
        proven=proof.proven, damaged=len(proof.damaged), lent=lent_blobs(manifest, carried),
    )


def plan_push(s3, src: Bundle, location: Location, *, recheck: bool = False) -> TransferPlan:
    """What DEST lacks: objects absent, of the wrong size, without airlift's sha256, or (recheck) whose bytes fail.

    Raises:
        WorkError: SRC is not a delta yet lacks blobs its manifest names.
    """
    ensure_bucket(s3, location.bucket)
    manifest = src.read_manifest()
    carried = blob_sizes(manifest, src)
    lent = lent_blobs(manifest, carried)
    require_whole(manifest, set(carried) | lent, where=str(src.root))
    sizes = {d: v[1] for d, v in carried.items()}
    present = _present(s3, location, sizes, inventory(s3, location))
    damaged = _rehash_objects(s3, location, sorted(present)) if recheck else set()
    proven = present - damaged
    missing = {d: v for d, v in carried.items() if d not in proven}
    return TransferPlan(manifest, src.manifest_bytes(), missing, len(proven), proven=proven, damaged=len(damaged), lent=lent)


def finish_push(s3, src: Bundle, location: Location) -> None:
    """Upload the small files (manifest last), skipping any already identical, then check DEST."""
    for name in (*TOP_LEVEL_FILES, SUMS, SIGNATURE, MANIFEST):  # SHA256SUMS names the derived top-level files
        path = src.root / name
        if not path.exists():
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        key = _key(location, name)
        if not has_object(s3, bucket=location.bucket, key=key, size=len(data), sha256=digest):
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


def pull_blobs(s3, location: Location, *, dest: Path, digests: Iterable[str], on_bytes: Callable[[int], None] | None = None) -> int:
    """Download blobs into DEST's store, hashing while writing (each must hash to its name); stamp them."""
    store = Bundle(dest).store
    digests = list(digests)

    def one(digest: str) -> int:
        body = s3.get_object(Bucket=location.bucket, Key=_key(location, f"blobs/sha256/{digest}"))["Body"]
        blob = store.put_stream(iter(lambda: body.read(CHUNK), b""), expected_sha256=digest, label=f"{location.text} blob {digest[:12]}")
        if on_bytes:
            on_bytes(blob.size)
        return blob.size

    total = sum(bounded_map(one, digests, workers=4))
    stamp_received(dest, digests)
    return total


def finish_pull(s3, location: Location, *, dest: Path, plan: TransferPlan, copied: set[str]) -> None:
    """Write DEST's signature and manifest (last), then verify DEST (see `check_dest`)."""
    bundle = Bundle(dest)
    for name in (SIGNATURE,):
        try:
            data = s3.get_object(Bucket=location.bucket, Key=_key(location, name))["Body"].read()
            write_bytes_atomic(dest / name, data)
        except ClientError:
            pass
    write_bytes_atomic(dest / MANIFEST, plan.manifest_bytes)
    bundle.write_sums(plan.manifest, bundle.manifest_sha256())
    bundle.store.cleanup_tmp()
    check_dest(bundle, proven=plan.proven | copied, lent=plan.lent, where=str(dest))

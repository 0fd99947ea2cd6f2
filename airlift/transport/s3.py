"""Bundles on S3: `s3://bucket/prefix/{manifest.json, SHA256SUMS, blobs/sha256/<hex>}`.

Each blob object carries, in metadata, the sha256 airlift computed before uploading it, so "already
there" is a listing plus a HEAD (right size, airlift's sha256), not a download. An S3 object is
immutable: changing its bytes takes a new PUT, which drops that metadata unless the writer sets it
again. `--recheck` downloads and rehashes every object already there, and sends the damaged ones again.
The manifest goes up last, so a half-sent bundle is never mistaken for a whole one.

One endpoint holds one client for the whole run (and checks the bucket once), whatever the number of
artifacts it moves.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from botocore.exceptions import ClientError

from airlift.bundle.layout import MANIFEST, TOP_FILES, Bundle
from airlift.bundle.stamps import Stamp
from airlift.bundle.store import SHA256_RE
from airlift.transport.base import Endpoint, OnBytes, Proof, TransferPlan
from airlift.transport.proof import stamp_received
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import CHUNK
from airlift.util.net import bounded_map
from airlift.util.s3 import SHA_META, client, ensure_bucket, has_object, upload_file_resumable

S3_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


def _not_found(exc: ClientError) -> bool:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404 or exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}


class S3Endpoint:
    """A bundle under an S3 prefix."""

    def __init__(self, text: str, *, argument: str, endpoint_url: str | None = None, state_dir: Path | None = None) -> None:
        match = S3_RE.match(text)
        if not match:
            raise InputError(f"{argument}: {text!r} is not s3://bucket/prefix")
        self.text = text
        self.bucket = match["bucket"]
        self.prefix = (match["prefix"] or "").strip("/")
        self.endpoint_url = endpoint_url
        # Pending multipart uploads are remembered there (the cache's `uploads/s3/`, not the bundle:
        # a bundle may sit on read-only media, and its directory holds only bundle files).
        self.state_dir = state_dir
        self._client = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Endpoint({self.text!r})"

    @property
    def s3(self):  # noqa: ANN201 - a boto3 S3 client
        """The run's one client (boto3 clients are thread-safe; creating one costs ~50 ms and a credentials lookup)."""
        with self._lock:
            if self._client is None:
                self._client = client(self.endpoint_url)
            return self._client

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _blob_key(self, digest: str) -> str:
        return self.key(f"blobs/sha256/{digest}")

    def prepare(self, *, as_dest: bool) -> None:
        if as_dest:
            ensure_bucket(self.s3, self.bucket)

    def read_manifest(self) -> bytes:
        data = self.read_small(MANIFEST)
        if data is None:
            raise InputError(f"{self.text}: no {MANIFEST} there (not a bundle, or an unfinished transfer)")
        return data

    def read_small(self, name: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise

    def list_blobs(self) -> dict[str, int]:
        """Blob objects under the prefix, by digest, with their sizes (one listing, no downloads)."""
        found: dict[str, int] = {}
        prefix = self.key("blobs/sha256/")
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix):]
                if SHA256_RE.match(name):  # anything else under the prefix is not a blob of this bundle
                    found[name] = item["Size"]
        return found

    def _stored_sha(self, wanted: Mapping[str, int], listed: Mapping[str, int]) -> set[str]:
        """Blobs listed with the right size whose object carries the sha256 airlift gave it on upload."""
        candidates = [d for d, size in wanted.items() if listed.get(d) == size]

        def check(digest: str) -> tuple[str, bool]:
            return digest, has_object(self.s3, bucket=self.bucket, key=self._blob_key(digest), size=wanted[digest], sha256=digest)

        return {d for d, ok in bounded_map(check, candidates, workers=16) if ok}

    def _rehash(self, digests: list[str]) -> set[str]:
        """Download (to memory, a chunk at a time) and rehash objects; returns those that fail (--recheck)."""
        def one(digest: str) -> tuple[str, bool]:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._blob_key(digest))["Body"]
            hasher = hashlib.sha256()
            while chunk := body.read(CHUNK):
                hasher.update(chunk)
            return digest, hasher.hexdigest() == digest

        return {d for d, ok in bounded_map(one, digests, workers=4) if not ok}

    def prove(self, wanted: Mapping[str, int], *, recheck: bool = False) -> Proof:
        """Present: right size and airlift's sha256 in the metadata; with `recheck`, also bytes that hash right.

        A damaged object is not moved (S3 has no rename): the PUT that follows replaces it.
        """
        listed = self.list_blobs()
        present = self._stored_sha(wanted, listed)
        damaged = self._rehash(sorted(present)) if recheck else set()
        proven = present - damaged
        return Proof(proven=proven, damaged=damaged, absent={d for d in wanted if d not in listed})

    def put_blobs(self, src: Bundle, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
        """Upload blobs under `blobs/sha256/`, each with its sha256 in the metadata; a killed upload resumes at the part."""
        if self.state_dir is None:
            raise ValueError("S3Endpoint.put_blobs needs a state_dir for resumable uploads")
        state_dir = self.state_dir

        def one(digest: str) -> int:
            return upload_file_resumable(
                self.s3, path=src.store.blob_path(digest), bucket=self.bucket, key=self._blob_key(digest),
                sha256=digest, on_bytes=on_bytes, state_dir=state_dir,
            )

        list(bounded_map(one, list(digests), workers=4))
        return dict.fromkeys(digests)

    def get_blobs(self, dest: Bundle, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
        """Download blobs into DEST's store, hashing while writing (each must hash to its name); stamp them."""
        store = dest.store
        store.ensure_dirs()

        def one(digest: str) -> int:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._blob_key(digest))["Body"]
            blob = store.put_stream(iter(lambda: body.read(CHUNK), b""), expected_sha256=digest, label=f"{self.text} blob {digest[:12]}")
            if on_bytes:
                on_bytes(blob.size)
            return blob.size

        list(bounded_map(one, list(digests), workers=4))
        stamp_received(dest.root, list(digests))
        return dict.fromkeys(digests)

    def finish(self, plan: TransferPlan, src: Endpoint, *, sent: Mapping[str, Stamp | None]) -> None:
        """Upload the small files (manifest last), skipping any already identical, then check every blob is there."""
        for name in (*TOP_FILES, MANIFEST):
            data = plan.manifest_bytes if name == MANIFEST else src.read_small(name)
            if data is None:
                continue
            digest = hashlib.sha256(data).hexdigest()
            key = self.key(name)
            if not has_object(self.s3, bucket=self.bucket, key=key, size=len(data), sha256=digest):
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata={SHA_META: digest})
        carried = {d: v[1] for d, v in plan.carried.items()}
        present = self._stored_sha(carried, self.list_blobs())
        lost = sorted(set(carried) - present)
        if lost:
            raise WorkError(f"verification at {self.text} failed: {len(lost)} blobs missing or with the wrong size/sha256, e.g. {lost[0]}")

"""Bundle transfer destinations. Only what DEST lacks is sent; DEST is verified after the transfer."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from airlift.bundle.layout import MANIFEST, SIGNATURE, Bundle
from airlift.bundle.manifest import Manifest
from airlift.bundle.verify import verify_bundle
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import write_bytes_atomic
from airlift.util.net import bounded_map

SSH_RE = re.compile(r"^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)$")
S3_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


@dataclass(frozen=True)
class Location:
    kind: str  # "dir" | "ssh" | "s3"
    text: str
    path: str = ""
    host: str = ""
    user: str | None = None
    port: int | None = None
    bucket: str = ""
    prefix: str = ""


def parse_location(text: str, *, argument: str) -> Location:
    if text.startswith("ssh://"):
        match = SSH_RE.match(text)
        if not match:
            raise InputError(f"{argument}: {text!r} is not ssh://[user@]host[:port]/abs/path")
        return Location("ssh", text, path=match["path"], host=match["host"], user=match["user"], port=int(match["port"]) if match["port"] else None)
    if text.startswith("s3://"):
        match = S3_RE.match(text)
        if not match:
            raise InputError(f"{argument}: {text!r} is not s3://bucket/prefix")
        return Location("s3", text, bucket=match["bucket"], prefix=(match["prefix"] or "").strip("/"))
    if "://" in text:
        raise InputError(f"{argument}: {text!r}: only paths, ssh:// and s3:// are supported")
    return Location("dir", text, path=text)


class TransferResult(BaseModel):
    """What a transfer did: blobs sent, bytes sent, blobs DEST already had; DEST was verified."""

    dest: str
    blobs_sent: int
    bytes_sent: int
    blobs_present: int


@dataclass
class TransferPlan:
    manifest: Manifest
    manifest_bytes: bytes
    # blob -> (artifact id that first names it, size)
    missing: dict[str, tuple[str, int]]
    present: int

    def by_artifact(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for digest, (artifact_id, _) in sorted(self.missing.items()):
            groups.setdefault(artifact_id, []).append(digest)
        return groups


def blob_sizes(manifest: Manifest, bundle: Bundle) -> dict[str, tuple[str, int]]:
    """Every blob the bundle carries (a delta lacks some), with the first artifact naming it and its size."""
    out: dict[str, tuple[str, int]] = {}
    for artifact in manifest.artifacts:
        for digest in sorted(artifact.all_blobs()):
            if digest in out:
                continue
            path = bundle.store.blob_path(digest)
            if path.exists():
                out[digest] = (artifact.id, path.stat().st_size)
    return out


def plan_dir_transfer(src: Bundle, dest: Path) -> TransferPlan:
    manifest = src.read_manifest()
    carried = blob_sizes(manifest, src)
    dest_store = Bundle(dest).store
    missing = {d: v for d, v in carried.items() if not dest_store.has(d, v[1])}
    return TransferPlan(manifest, src.manifest_bytes(), missing, len(carried) - len(missing))


def copy_blobs_to_dir(src: Bundle, dest: Path, digests: Iterable[str], *, workers: int = 2, on_bytes: Callable[[int], None] | None = None) -> int:
    """Copy blobs, hashing each while it is written: the copy is verified byte for byte in the same pass."""
    dest_bundle = Bundle(dest)
    dest_bundle.store.ensure_dirs()

    def one(digest: str) -> int:
        if dest_bundle.store.has(digest):
            return 0
        size = src.store.copy_blob_to(dest_bundle.store, digest)
        if on_bytes:
            on_bytes(size)
        return size

    return sum(bounded_map(one, list(digests), workers=workers))


def finalize_dir(src: Bundle, dest: Path, plan: TransferPlan, *, copied: set[str]) -> None:
    """Write DEST's manifest (the same bytes) last, then verify DEST; raise WorkError naming any damage."""
    dest_bundle = Bundle(dest)
    signature = src.root / SIGNATURE
    if signature.exists():
        write_bytes_atomic(dest / SIGNATURE, signature.read_bytes())
    write_bytes_atomic(dest / MANIFEST, plan.manifest_bytes)
    dest_bundle.write_sums(plan.manifest, dest_bundle.manifest_sha256())
    dest_bundle.store.cleanup_tmp()
    # Blobs copied now were hashed as written; blobs DEST already had are checked for presence and size.
    already = set(blob_sizes(plan.manifest, dest_bundle)) - copied
    report = verify_bundle(dest_bundle, trusted=copied | already)
    if not report.ok:
        raise WorkError("verification at destination failed: " + "; ".join(p.describe() for p in report.problems))


def resolve_dir(location: Location) -> Path:
    path = Path(location.path)
    if path.exists() and not path.is_dir():
        raise InputError(f"--to {location.text}: exists and is not a directory")
    return path

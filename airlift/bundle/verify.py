"""Rehash a bundle against its manifest and say exactly which artifact and file is broken or missing."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from airlift.bundle.layout import Bundle, evidence_pins
from airlift.bundle.manifest import Manifest, now_iso
from airlift.bundle.signing import TrustedManifest, trusted_manifest
from airlift.bundle.store import BlobStore
from airlift.util.confine import ConfinedRoot, EscapeError, SpecialFileError, hash_regular


class Problem(BaseModel):
    """One broken file or blob, named by artifact and path."""

    model_config = ConfigDict(frozen=True)

    artifact_id: str
    path: str
    sha256: str
    reason: str = Field(pattern=r"^(missing|corrupt|wrong size|disagrees with the manifest.*|signature mismatch.*)$")

    def describe(self) -> str:
        return f"{self.artifact_id}: {self.path}: {self.reason} (blob {self.sha256})"


class ArtifactCheck(BaseModel):
    """One artifact's result."""

    id: str
    kind: str
    files: int
    bytes: int
    ok: bool


class VerifyReport(BaseModel):
    """What `verify` checked and found: the receipt's content."""

    bundle: str
    manifest_sha256: str
    checked_at: str
    host: str
    blobs_checked: int = 0
    bytes_checked: int = 0
    blobs_from_store: int = 0
    artifacts: list[ArtifactCheck] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)
    manifest_matches_sums: bool | None = None
    signature: str = "unsigned"
    quarantined: list[str] = Field(default_factory=list)
    receipt: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.manifest_matches_sums is not False


def _check_blob(path: Path, sha256: str, size: int | None, stop: threading.Event | None = None) -> str | None:
    # The guarded opener: a symlink (to /dev/zero), a FIFO or a device is "corrupt" at once, never read;
    # no more than the declared size (+1) is read, so a blob that grows while hashed is "wrong size".
    try:
        return None if hash_regular(path, size=size, stop=stop) == sha256 else "corrupt"
    except FileNotFoundError:
        return "missing"
    except SpecialFileError as exc:
        return "wrong size" if exc.wrong_size else "corrupt"
    except EscapeError:
        return "corrupt"


def verify_bundle(
    bundle: Bundle,
    *,
    store: BlobStore | None = None,
    trusted: set[str] | None = None,
    workers: int | None = None,
    extra_stores: tuple[BlobStore, ...] = (),
    on_bytes: Callable[[int], None] | None = None,
    opened: TrustedManifest | None = None,
) -> VerifyReport:
    """Rehash every blob the manifest names (each once, in parallel threads: hashlib drops the GIL).

    `store` lends blobs a delta bundle does not carry; `trusted` names blobs already hashed as they
    were written in this same run (a transfer), which are then only checked for presence and size.
    """
    # `opened` is the manifest the caller already read (and checked the signature of): verify exactly that.
    if opened is None:
        opened = trusted_manifest(bundle, ())
    manifest: Manifest = opened.manifest
    report = VerifyReport(bundle=str(bundle.root), manifest_sha256=opened.sha256, checked_at=now_iso(), host=socket.gethostname())
    report.signature = opened.signature
    sums_digest = bundle.sums_manifest_digest()
    report.manifest_matches_sums = None if sums_digest is None else sums_digest == report.manifest_sha256

    sizes: dict[str, int | None] = {}
    for artifact in manifest.artifacts:
        for entry in artifact.files:
            sizes[entry.sha256] = entry.size
        for blob in artifact.blobs:
            sizes.setdefault(blob.hex, None)
    evidence = evidence_pins(manifest)  # v1.1: the SBOM and provenance blobs are rehashed like any other
    for pinned in evidence.values():
        sizes.setdefault(pinned, None)

    stop = threading.Event()

    def check(sha256: str) -> tuple[str, str | None, int, bool]:
        path, lent = bundle.locate_blob(sha256, store)
        size = 0
        if trusted and sha256 in trusted and path.exists():
            reason = None if sizes[sha256] is None or path.stat().st_size == sizes[sha256] else "wrong size"
        else:
            reason = _check_blob(path, sha256, sizes[sha256], stop)
        if reason is None:
            size = path.stat().st_size
            if on_bytes:
                on_bytes(size)
        return sha256, reason, size, lent

    bad: dict[str, str] = {}
    # One hashing thread per core (hashlib drops the GIL on large updates); the largest blobs start
    # first, so one big blob last does not leave the other cores idle at the end. Counts are summed
    # here, in the calling thread, not in the workers.
    order = sorted(sizes, key=lambda d: (-(sizes[d] or 0), d))
    # A signal (SIGTERM raised as an exception by the flow engine, Ctrl-C) reaches this thread only:
    # `stop` tells the hashing threads to end within one chunk, and the pool is not waited on, so
    # the process exits promptly instead of finishing every hash first.
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2)
    try:
        for sha256, reason, size, lent in pool.map(check, order):
            report.blobs_checked += 1
            report.bytes_checked += size
            report.blobs_from_store += lent
            if reason:
                bad[sha256] = reason
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()

    report.quarantined = quarantine(bundle, [d for d, reason in bad.items() if reason in ("corrupt", "wrong size")], extra_stores=extra_stores)

    for artifact in manifest.artifacts:
        broken = False
        for entry in artifact.files:
            if entry.sha256 in bad:
                report.problems.append(Problem(artifact_id=artifact.id, path=entry.path, sha256=entry.sha256, reason=bad[entry.sha256]))
                broken = True
        for blob in artifact.blobs:
            digest = blob.hex
            if digest in bad:
                report.problems.append(Problem(artifact_id=artifact.id, path=f"blob {digest[:12]}", sha256=digest, reason=bad[digest]))
                broken = True
        report.artifacts.append(ArtifactCheck(id=artifact.id, kind=artifact.kind, files=len(artifact.files), bytes=artifact.total_bytes, ok=not broken))
    # oci-layout/index.json are derived from the manifest: a bad blob changes them too, so report the cause alone.
    if not report.problems:
        for name, reason in bundle.layout_problems(manifest).items():
            report.problems.append(Problem(artifact_id="oci layout", path=name, sha256="-", reason=reason))
    # The SBOM and provenance are pinned by the manifest: checked even when another blob is broken.
    for name, pinned in evidence.items():
        if pinned in bad:
            report.problems.append(Problem(artifact_id="evidence", path=f"{name} (blob)", sha256=pinned, reason=bad[pinned]))
    for name, reason in bundle.evidence_problems(manifest).items():
        report.problems.append(Problem(artifact_id="evidence", path=name, sha256="-", reason=reason))
    return report


def model_signature_problems(bundle: str | Path, manifest: Manifest, *, store: str | None = None) -> list[Problem]:
    """v1.1 (`verify --model-signatures`): each recorded model signature checked again against its bundled trust."""
    from airlift.bundle import modelsig

    opened = Bundle(bundle)
    lender = BlobStore(Path(store)) if store else None

    def blob_path(sha256: str) -> Path:
        own = opened.store.blob_path(sha256)
        return own if own.exists() or lender is None else lender.blob_path(sha256)

    problems = []
    for artifact in manifest.artifacts:
        found = modelsig.recheck(artifact, blob_path=blob_path, scratch=opened.store.tmp_dir)
        if found is not None and artifact.signature is not None:
            problems.append(Problem(artifact_id=artifact.id, path=artifact.signature.signature, sha256="-", reason=f"signature mismatch: {found}"))
    return problems


def quarantine(bundle: Bundle, digests: list[str], *, extra_stores: tuple[BlobStore, ...] = ()) -> list[str]:
    """Move corrupt blobs to `<bundle>/.corrupt/`, so the next build or transfer puts good bytes back.

    The move goes through ConfinedRoot: a `.corrupt` (or `blobs/sha256`) planted as a symlink is
    refused, so a hostile bundle cannot make verify drop its bytes into /etc/cron.d.

    A bundle blob is often a hard link to the cache's: when the cache (or another store) holds the same
    damaged inode, or a blob that also fails its hash, it is moved aside there too, so the next build
    fetches that one blob again instead of trusting it.
    """
    moved = []
    confined = ConfinedRoot(bundle.root)
    for digest in digests:
        path = bundle.store.blob_path(digest)
        try:
            inode = os.lstat(path).st_ino
        except FileNotFoundError:
            continue
        relative = f"blobs/sha256/{digest}"
        try:
            moved.append(str(confined.move(relative, f".corrupt/{digest}")))
        except (EscapeError, OSError):
            continue  # a bundle that will not let its blob be moved aside stays reported as corrupt
        for store in extra_stores:
            other = store.blob_path(digest)
            try:
                same = os.lstat(other).st_ino == inode or _check_blob(other, digest, None) is not None
            except FileNotFoundError:
                continue
            if same:
                try:
                    moved.append(str(ConfinedRoot(store.root).move(relative, f".corrupt/{digest}")))
                except (EscapeError, OSError):
                    continue
    return moved

"""Bundle transfer destinations. Only what DEST lacks is sent; DEST is verified after the transfer.

"Lacks" is proven, not guessed from a size: a blob already at a directory DEST counts only when its
verification stamp still matches or it is rehashed (airlift/transport/proof.py); a damaged one is sent
again. A delta bundle's blobs left to its lineage are expected absent at DEST, and counted as such.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from airlift.bundle.layout import MANIFEST, SIGNATURE, Bundle
from airlift.bundle.manifest import Manifest
from airlift.bundle.verify import verify_bundle
from airlift.transport.proof import prove_local, stamp_received
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import write_bytes_atomic
from airlift.util.net import bounded_map
from airlift.util.units import human

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
    """What a transfer did: blobs sent, bytes sent, blobs DEST already had (each proven); DEST was verified.

    `blobs_resent` counts blobs DEST held damaged (wrong size or bytes) that were sent again;
    `blobs_lent` counts blobs a delta bundle leaves to its lineage (`lineage`), expected absent at DEST.
    """

    dest: str
    blobs_sent: int
    bytes_sent: int
    blobs_present: int
    blobs_resent: int = 0
    blobs_lent: int = 0
    lineage: str | None = None

    def summary(self) -> str:
        """One line for the terminal and the flow log."""
        text = f"transferred to {self.dest}: {self.blobs_sent} blobs ({human(self.bytes_sent)}) sent, {self.blobs_present} already there"
        if self.blobs_resent:
            text += f"; re-sent {self.blobs_resent} damaged blobs"
        if self.blobs_lent:
            text += f"; {self.blobs_lent} blobs left to the lineage {self.lineage}"
        return text + "; verified"


@dataclass
class TransferPlan:
    """What a transfer must send, and what it proved about DEST before sending anything."""

    manifest: Manifest
    manifest_bytes: bytes
    # blob -> (artifact id that first names it, size)
    missing: dict[str, tuple[str, int]]
    present: int
    proven: set[str] = field(default_factory=set)  # at DEST already, proven by a stamp or a rehash
    damaged: int = 0  # at DEST with the wrong size or bytes: moved aside, in `missing`
    lent: frozenset[str] = frozenset()  # named by the manifest, not carried: a delta's, left to the lineage

    def by_artifact(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for digest, (artifact_id, _) in sorted(self.missing.items()):
            groups.setdefault(artifact_id, []).append(digest)
        return groups

    @property
    def lineage(self) -> str | None:
        return lineage_label(self.manifest)

    def result(self, dest: str, *, sent: list[str]) -> TransferResult:
        """The outcome once `sent` (a subset of `missing`) has been sent and DEST verified."""
        return TransferResult(
            dest=dest, blobs_sent=len(sent), bytes_sent=sum(self.missing[d][1] for d in sent), blobs_present=self.present,
            blobs_resent=self.damaged, blobs_lent=len(self.lent), lineage=self.lineage if self.lent else None,
        )


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
    for digest in sorted(manifest.all_blobs() - set(out)):  # v1.1: the SBOM and provenance blobs, of no artifact
        path = bundle.store.blob_path(digest)
        if path.exists():
            out[digest] = ("evidence", path.stat().st_size)
    return out


def lent_blobs(manifest: Manifest, carried: Iterable[str]) -> frozenset[str]:
    """Blobs the manifest names that the source does not carry, when it is a delta (left to its lineage).

    A bundle that is not a delta lends nothing: a blob it lacks is missing, and DEST's check says so.
    """
    if manifest.since is None:
        return frozenset()
    return frozenset(manifest.all_blobs() - set(carried))


def require_whole(manifest: Manifest, have: set[str], *, where: str) -> None:
    """Refuse to send a source lacking blobs it does not lend (for DESTs checked by blob, not by verify).

    Raises:
        WorkError: Naming the artifact files whose blobs are neither at the source nor lent.
    """
    gaps = [f"{a.id}: {f.path}" for a in manifest.artifacts for f in a.files if f.sha256 not in have]
    gaps += [f"{a.id}: blob {b.removeprefix('sha256:')[:12]}" for a in manifest.artifacts for b in a.blobs if b.removeprefix("sha256:") not in have]
    if gaps:
        raise WorkError(f"{where}: {len(gaps)} files missing (and the bundle is not a delta that lends them): {'; '.join(gaps[:5])}")


def lineage_label(manifest: Manifest) -> str | None:
    since = manifest.since
    return None if since is None else f"{since.name} (built {since.created}, manifest {since.manifest_sha256[:12]})"


def plan_dir_transfer(src: Bundle, dest: Path, *, recheck: bool = False) -> TransferPlan:
    """What DEST lacks: blobs absent there, and blobs there that no stamp vouches for and fail a rehash.

    Args:
        src: The source bundle.
        dest: The destination directory.
        recheck: Rehash every blob DEST holds, whatever its stamp says.

    Returns:
        The plan; damaged blobs at DEST are already moved aside (to `DEST/.corrupt/`).
    """
    manifest = src.read_manifest()
    carried = blob_sizes(manifest, src)
    proof = prove_local(dest, {d: v[1] for d, v in carried.items()}, recheck=recheck)
    missing = {d: v for d, v in carried.items() if d not in proof.proven}
    return TransferPlan(
        manifest, src.manifest_bytes(), missing, len(proof.proven),
        proven=proof.proven, damaged=len(proof.damaged), lent=lent_blobs(manifest, carried),
    )


def copy_blobs_to_dir(src: Bundle, dest: Path, digests: Iterable[str], *, workers: int = 2, on_bytes: Callable[[int], None] | None = None) -> list[str]:
    """Copy blobs, hashing each while it is written (the copy is verified in the same pass), and stamp them.

    Returns:
        The digests copied now (a blob that appeared at DEST meanwhile is left to DEST's check).
    """
    dest_bundle = Bundle(dest)
    dest_bundle.store.ensure_dirs()

    def one(digest: str) -> str | None:
        if dest_bundle.store.has(digest):
            return None
        size = src.store.copy_blob_to(dest_bundle.store, digest)
        if on_bytes:
            on_bytes(size)
        return digest

    copied = [d for d in bounded_map(one, list(digests), workers=workers) if d is not None]
    stamp_received(dest, copied)
    return copied


def finalize_dir(src: Bundle, dest: Path, plan: TransferPlan, *, copied: set[str]) -> None:
    """Write DEST's manifest (the same bytes) last, then verify DEST; raise WorkError naming any damage."""
    dest_bundle = Bundle(dest)
    signature = src.root / SIGNATURE
    if signature.exists():
        write_bytes_atomic(dest / SIGNATURE, signature.read_bytes())
    write_bytes_atomic(dest / MANIFEST, plan.manifest_bytes)
    dest_bundle.write_sums(plan.manifest, dest_bundle.manifest_sha256())
    dest_bundle.store.cleanup_tmp()
    check_dest(dest_bundle, proven=plan.proven | copied, lent=plan.lent, where=str(dest))


def check_dest(bundle: Bundle, *, proven: set[str], lent: frozenset[str], where: str) -> None:
    """Verify a local DEST after a transfer.

    Blobs in `proven` were hashed in this run (as they were written, or by a rehash in place, or vouched
    for by a matching stamp) and are checked for presence and size; any other blob is rehashed. Blobs in
    `lent` (a delta's, left to its lineage) are expected absent.

    Raises:
        WorkError: Naming each missing or damaged artifact file, or a manifest that does not match.
    """
    report = verify_bundle(bundle, trusted=proven)
    problems = [p for p in report.problems if not (p.reason == "missing" and p.sha256 in lent)]
    if problems:
        raise WorkError(f"verification at {where} failed: " + "; ".join(p.describe() for p in problems))
    if report.manifest_matches_sums is False:
        raise WorkError(f"verification at {where} failed: manifest.json does not match its line in SHA256SUMS")


def resolve_dir(location: Location) -> Path:
    path = Path(location.path)
    if path.exists() and not path.is_dir():
        raise InputError(f"--to {location.text}: exists and is not a directory")
    return path

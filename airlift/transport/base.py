"""The endpoint protocol every transport implements, and the records a transfer passes between its steps.

Modelled on restic's backend interface (list, stat, save, load of content-addressed blobs, nothing
else) and dvc-objects' `transfer()` (status of both sides, then copy what is missing): an endpoint
knows how to list and prove what it holds and how to move blobs and small files; the rules (what
counts as present, what a delta lends, what order things are written in, what is checked at the
end) live once, in airlift/transport/engine.py.

A blob counts as held only when it is proven, never from a size alone: by a matching verification
stamp or a rehash (a directory; ssh, hashed on the far side), or by its size and the sha256 airlift
stored with it (S3). A damaged one is moved aside where that is possible and sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Manifest
from airlift.bundle.stamps import Stamp
from airlift.util.errors import WorkError
from airlift.util.units import human

OnBytes = Callable[[int], None] | None


@dataclass
class Proof:
    """Blobs at an endpoint sorted by what is known of them."""

    proven: set[str] = field(default_factory=set)  # present and proven: by a matching stamp, a rehash, or S3's stored sha256
    damaged: set[str] = field(default_factory=set)  # wrong size or wrong bytes: moved aside where possible, to be sent again
    absent: set[str] = field(default_factory=set)
    # Stamps observed at a remote endpoint for proven blobs (ssh), recorded there when the transfer ends.
    stamps: dict[str, Stamp] = field(default_factory=dict)


@runtime_checkable
class Endpoint(Protocol):
    """Where a bundle is: a local directory, an S3 prefix, or a directory over ssh.

    One side of every transfer is a local directory (`DirEndpoint`); blobs go from or to its store.
    """

    text: str  # as the user wrote it, for messages and results

    def prepare(self, *, as_dest: bool) -> None:
        """Check (and, as a destination, create) the place; fail with InputError when it cannot be one."""

    def read_manifest(self) -> bytes:
        """The manifest's bytes (bounded); InputError/ManifestError when there is none."""

    def list_blobs(self) -> dict[str, int]:
        """What it holds: blob digest -> size, from one listing (nothing is hashed)."""

    def prove(self, wanted: Mapping[str, int], *, recheck: bool = False) -> Proof:
        """Sort `wanted` (digest -> size) by what it holds, proving each present blob; set damaged ones aside."""

    def read_small(self, name: str) -> bytes | None:
        """A top-level small file (airlift.bundle.layout.TOP_FILES), or None when it has none by that name."""

    def put_blobs(self, src: Bundle, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
        """Store blobs from the local bundle `src`, each checked as it lands; returns what was sent (with a far-side stamp if any)."""

    def get_blobs(self, dest: Bundle, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
        """Copy blobs into the local bundle `dest`, each hashed as it is written (it must hash to its name)."""

    def finish(self, plan: TransferPlan, src: Endpoint, *, sent: Mapping[str, Stamp | None]) -> None:
        """As the destination: write the small files from `src`, the manifest last, then prove the result (WorkError if not whole)."""


class TransferResult(BaseModel):
    """What a transfer did: blobs sent, bytes sent, blobs DEST already had (each proven); DEST was verified.

    `blobs_resent` counts blobs DEST held damaged (wrong size or bytes) that were sent again;
    `blobs_lent` counts blobs a delta bundle leaves to its lineage (`lineage`), expected absent at DEST.
    `artifacts` (v1.1, for `--json`): per artifact id, the blobs and bytes sent for it.
    """

    dest: str
    blobs_sent: int
    bytes_sent: int
    blobs_present: int
    blobs_resent: int = 0
    blobs_lent: int = 0
    lineage: str | None = None
    src: str | None = None
    artifacts: dict[str, dict[str, int]] = {}

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
    proven: set[str] = field(default_factory=set)  # at DEST already, proven by a stamp, a rehash or S3's sha256
    damaged: int = 0  # at DEST with the wrong size or bytes: moved aside, in `missing`
    lent: frozenset[str] = frozenset()  # named by the manifest, not carried: a delta's, left to the lineage
    carried: dict[str, tuple[str, int]] = field(default_factory=dict)  # every blob the source holds
    stamps: dict[str, Stamp] = field(default_factory=dict)  # far-side stamps of proven blobs (ssh)

    def by_artifact(self) -> dict[str, list[str]]:
        """The missing blobs grouped by the artifact that first names them (one send step each)."""
        groups: dict[str, list[str]] = {}
        for digest, (artifact_id, _) in sorted(self.missing.items()):
            groups.setdefault(artifact_id, []).append(digest)
        return groups

    def bytes_of(self, digests: Iterable[str]) -> int:
        return sum(self.missing[d][1] for d in digests)

    @property
    def lineage(self) -> str | None:
        return lineage_label(self.manifest)

    def result(self, dest: str, *, sent: Iterable[str], src: str | None = None) -> TransferResult:
        """The outcome once `sent` (a subset of `missing`) has been sent and DEST verified."""
        sent = sorted(set(sent))
        per: dict[str, dict[str, int]] = {}
        for digest in sent:
            artifact_id, size = self.missing[digest]
            row = per.setdefault(artifact_id, {"blobs_sent": 0, "bytes_sent": 0})
            row["blobs_sent"] += 1
            row["bytes_sent"] += size
        return TransferResult(
            dest=dest, blobs_sent=len(sent), bytes_sent=self.bytes_of(sent), blobs_present=self.present,
            blobs_resent=self.damaged, blobs_lent=len(self.lent), lineage=self.lineage if self.lent else None,
            src=src, artifacts=per,
        )


def carried_blobs(manifest: Manifest, offered: Mapping[str, int]) -> dict[str, tuple[str, int]]:
    """Every blob of the manifest the source holds (a delta lacks some), with the first artifact naming it and its size."""
    out: dict[str, tuple[str, int]] = {}
    for artifact in manifest.artifacts:
        for digest in sorted(artifact.all_blobs()):
            if digest in offered and digest not in out:
                out[digest] = (artifact.id, offered[digest])
    for digest in sorted(manifest.all_blobs() - set(out)):  # v1.1: the SBOM and provenance blobs, of no artifact
        if digest in offered:
            out[digest] = ("evidence", offered[digest])
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
    gaps += [f"{a.id}: blob {b.hex[:12]}" for a in manifest.artifacts for b in a.blobs if b.hex not in have]
    if gaps:
        raise WorkError(f"{where}: {len(gaps)} files missing (and the bundle is not a delta that lends them): {'; '.join(gaps[:5])}")


def lineage_label(manifest: Manifest) -> str | None:
    since = manifest.since
    return None if since is None else f"{since.name} (built {since.created}, manifest {since.manifest_sha256[:12]})"

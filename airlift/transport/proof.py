"""What a transfer may count as already at a local DEST: only blobs it can prove, never a size alone.

A blob DEST already holds counts when its verification stamp (airlift/bundle/stamps.py) still matches,
or when it is rehashed now. A blob of the wrong size, or one that fails its hash, is damaged: it is moved
aside to `DEST/.corrupt/` (where `airlift verify` puts what it finds) and sent again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from airlift.bundle import stamps
from airlift.bundle.layout import Bundle
from airlift.bundle.verify import quarantine
from airlift.transport.base import Proof
from airlift.util.net import bounded_map

__all__ = ["Proof", "prove_local", "stamp_received"]


def prove_local(dest: Path, wanted: Mapping[str, int], *, recheck: bool = False, workers: int = 4) -> Proof:
    """Sort the blobs `wanted` (digest -> size) by what DEST holds, rehashing what no stamp vouches for.

    Args:
        dest: The destination bundle directory (it may not exist yet).
        wanted: The blobs the transfer would send, with their sizes.
        recheck: Ignore the stamps: rehash every blob DEST holds.
        workers: Blobs hashed at once.

    Returns:
        The proof; rehashed blobs that passed are stamped, damaged ones are already moved aside.
    """
    bundle = Bundle(dest)
    proof = Proof()
    candidates: list[str] = []
    for digest, size in wanted.items():
        now = stamps.current(bundle.store, digest)
        if now is None:
            proof.absent.add(digest)
        elif now[2] != size:
            proof.damaged.add(digest)
        else:
            candidates.append(digest)
    stamped = set() if recheck else stamps.matching(dest, candidates)
    proof.proven |= stamped
    to_hash = sorted(set(candidates) - stamped)
    observed: dict[str, stamps.Stamp] = {}
    for digest, (good, stamp) in zip(to_hash, bounded_map(lambda d: stamps.hash_in_place(bundle.store, d), to_hash, workers=workers), strict=True):
        if good and stamp is not None:
            proof.proven.add(digest)
            observed[digest] = stamp
        else:
            # Wrong bytes, or bytes that changed while they were hashed: neither can be counted.
            proof.damaged.add(digest)
    stamps.record(dest, observed)
    if proof.damaged:
        quarantine(bundle, sorted(proof.damaged))
    return proof


def stamp_received(dest: Path, digests: list[str] | set[str]) -> None:
    """Stamp blobs just written into DEST by a writer that hashed them as it wrote (a copy, a download)."""
    store = Bundle(dest).store
    observed = {d: s for d in digests if (s := stamps.current(store, d)) is not None}
    stamps.record(dest, observed)

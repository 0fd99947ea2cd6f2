"""A bundle directory as a transfer endpoint, and the one local finish every transfer into a directory ends with.

A blob already in the directory counts only when its verification stamp still matches or it is
rehashed (airlift/transport/proof.py); a damaged one is moved aside to `.corrupt/` and sent again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from airlift.bundle.layout import DERIVED_FILES, MANIFEST, SUMS, TOP_FILES, Bundle
from airlift.bundle.manifest import Manifest
from airlift.bundle.stamps import Stamp
from airlift.bundle.verify import verify_bundle
from airlift.transport.base import Endpoint, OnBytes, Proof, TransferPlan
from airlift.transport.proof import prove_local, stamp_received
from airlift.util.confine import MAX_BLOB_BYTES, EscapeError, open_path
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import write_bytes_atomic
from airlift.util.net import bounded_map

COPY_WORKERS = 2  # a local copy is disk-bound: two streams keep a disk busy without thrashing it


class DirEndpoint:
    """A bundle directory on this host."""

    def __init__(self, text: str, *, workers: int = COPY_WORKERS) -> None:
        self.text = text
        self.path = Path(text)
        self.bundle = Bundle(self.path)
        self.workers = workers

    def __repr__(self) -> str:
        return f"DirEndpoint({self.text!r})"

    def prepare(self, *, as_dest: bool) -> None:
        if as_dest:
            if self.path.exists() and not self.path.is_dir():
                raise InputError(f"--to {self.text}: exists and is not a directory")
        else:
            self.bundle.require()

    def read_manifest(self) -> bytes:
        self.bundle.require()
        return self.bundle.manifest_bytes()

    def list_blobs(self) -> dict[str, int]:
        """Blobs the manifest names that this directory holds (its store may hold others: they are not listed)."""
        manifest = self.bundle.read_manifest()
        found: dict[str, int] = {}
        for digest in sorted(manifest.all_blobs()):
            path = self.bundle.store.blob_path(digest)
            # The guarded opener decides (util/confine.py): a blob that is a symlink (to /dev/zero), a FIFO
            # or a device is refused here, before any transport reads it and fills the destination.
            try:
                fd = open_path(path, max_bytes=MAX_BLOB_BYTES)
            except FileNotFoundError:
                continue
            except EscapeError as exc:
                raise WorkError(f"{self.text}: refusing to send {exc}") from None
            try:
                found[digest] = os.fstat(fd).st_size
            finally:
                os.close(fd)
        return found

    def prove(self, wanted: Mapping[str, int], *, recheck: bool = False) -> Proof:
        return prove_local(self.path, wanted, recheck=recheck)

    def read_small(self, name: str) -> bytes | None:
        if name not in TOP_FILES and name != MANIFEST:
            raise ValueError(f"{name}: not a top-level bundle file")
        path = self.path / name
        return path.read_bytes() if path.is_file() and not path.is_symlink() else None

    def put_blobs(self, src: Bundle, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
        """Copy blobs from `src`, hashing each while it is written (the copy is verified in the same pass), and stamp them.

        A blob that appeared here meanwhile is left out (and to the final check).
        """
        store = self.bundle.store
        store.ensure_dirs()
        declared = {f.sha256: f.size for a in src.read_manifest().artifacts for f in a.files}

        def one(digest: str) -> str | None:
            if store.has(digest):
                return None
            size = src.store.copy_blob_to(store, digest, declared.get(digest))
            if on_bytes:
                on_bytes(size)
            return digest

        copied = [d for d in bounded_map(one, list(digests), workers=self.workers) if d is not None]
        stamp_received(self.path, copied)
        return dict.fromkeys(copied)

    def get_blobs(self, dest: Bundle, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
        return DirEndpoint(str(dest.root), workers=self.workers).put_blobs(self.bundle, digests, on_bytes=on_bytes)

    def finish(self, plan: TransferPlan, src: Endpoint, *, sent: Mapping[str, Stamp | None]) -> None:
        small = {name: data for name in TOP_FILES if name not in DERIVED_FILES and name != SUMS and (data := src.read_small(name)) is not None}
        finish_local(self.bundle, plan.manifest, plan.manifest_bytes, small=small, proven=plan.proven | set(sent), lent=plan.lent)


def finish_local(bundle: Bundle, manifest: Manifest, manifest_bytes: bytes, *, small: Mapping[str, bytes], proven: set[str], lent: frozenset[str]) -> None:
    """The end of every transfer into a local directory: small files, the manifest (the same bytes) last, SHA256SUMS, then the check.

    SHA256SUMS and the OCI layout files are derived from the manifest and rewritten here, never copied.

    Raises:
        WorkError: Naming any missing or damaged artifact file (see `check_dest`).
    """
    for name, data in small.items():
        write_bytes_atomic(bundle.root / name, data)
    write_bytes_atomic(bundle.manifest_path, manifest_bytes)
    bundle.write_sums(manifest, bundle.manifest_sha256())
    bundle.store.cleanup_tmp()
    check_dest(bundle, proven=proven, lent=lent, where=str(bundle.root))


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

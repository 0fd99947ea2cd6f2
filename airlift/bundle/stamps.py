"""Verification stamps: `<bundle>/.airlift/verified.json`, what airlift last proved about each blob.

A stamp is a blob's (device, inode, size, mtime_ns) at a moment airlift knew its bytes hash to its name:
right after a transfer copied it (hashing as it wrote), or around a rehash in place (a transfer's check
of what DEST already held, `airlift verify`). While all four still match, the blob is the file that was
hashed: a write through the filesystem moves mtime, a replacement changes the inode. What bypasses the
filesystem (bit rot, a tool that restores mtime) is not seen; `airlift transfer --recheck` rehashes all.

The file is a convenience, never a source of trust by itself: one that is missing, oversized or does not
validate counts as empty (it costs a rehash), and writing it is best effort (a read-only medium still
verifies, it just rehashes next time).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airlift.bundle.store import BlobStore, sha256_file
from airlift.util.confine import ConfinedRoot, EscapeError, read_regular
from airlift.util.errors import WorkError

STAMPS = ".airlift/verified.json"
_LOCK = ".airlift/verified.lock"
MAX_STAMPS_BYTES = 64 << 20

Stamp = tuple[int, int, int, int]  # device, inode, size, mtime_ns
_Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_Count = Annotated[int, Field(ge=0)]


class StampFile(BaseModel):
    """The stamp file's content: digest -> [device, inode, size, mtime_ns]."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    blobs: dict[_Digest, tuple[_Count, _Count, _Count, int]] = Field(default_factory=dict)


def stamp_of(info: os.stat_result) -> Stamp:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def current(store: BlobStore, digest: str) -> Stamp | None:
    """The blob's stamp as it is now, or None when it is not there."""
    try:
        return stamp_of(os.stat(store.blob_path(digest)))
    except FileNotFoundError:
        return None


def snapshot(root: Path, digests: Iterable[str]) -> dict[str, Stamp]:
    """The current stamps of those of `digests` the bundle at `root` holds (taken before a rehash)."""
    store = BlobStore(Path(root))
    return {d: s for d in digests if (s := current(store, d)) is not None}


def parse_stamps(data: bytes) -> dict[str, Stamp]:
    """The stamps in `data`; anything that does not validate counts as no stamps at all."""
    if len(data) > MAX_STAMPS_BYTES:
        return {}
    try:
        return dict(StampFile.model_validate(json.loads(data)).blobs)
    except (ValueError, UnicodeDecodeError, ValidationError):
        return {}


def render_stamps(stamps: Mapping[str, Stamp]) -> bytes:
    return (json.dumps(StampFile(blobs=dict(sorted(stamps.items()))).model_dump(mode="json")) + "\n").encode()


def read_stamps(root: Path) -> dict[str, Stamp]:
    """The stamps recorded in the bundle at `root` (empty when there are none or they are unreadable)."""
    try:
        return parse_stamps(read_regular(Path(root), STAMPS, max_bytes=MAX_STAMPS_BYTES))
    except (OSError, EscapeError):  # absent, a symlink, a FIFO or too large: no stamps
        return {}


def matching(root: Path, digests: set[str] | list[str]) -> set[str]:
    """Those of `digests` whose blob at `root` still has exactly the stamp recorded for it."""
    stamps = read_stamps(root)
    store = BlobStore(Path(root))
    return {d for d in digests if d in stamps and current(store, d) == stamps[d]}


def hash_in_place(store: BlobStore, digest: str) -> tuple[bool, Stamp | None]:
    """Rehash one blob where it lies.

    Returns:
        Whether it hashes to its name, and the stamp it had throughout (None when it is missing or
        changed while it was being hashed: then nothing can be recorded for it).
    """
    path = store.blob_path(digest)
    try:
        before = stamp_of(os.stat(path))
        good = sha256_file(path) == digest
        after = stamp_of(os.stat(path))
    except FileNotFoundError:
        return False, None
    except EscapeError:  # a symlink, FIFO or device planted as a blob: damaged, never read
        return False, None
    return good, before if before == after else None


def record(root: Path, observed: Mapping[str, Stamp]) -> None:
    """Add `observed` stamps (taken when each blob was proven) to the bundle at `root`.

    Entries are kept only while they match the blob on disk now, so a blob that changed between its
    proof and this write, or since an earlier record, loses its stamp. The merge runs under a file lock,
    so concurrent writers (parallel copy tasks, a verify) do not drop each other's entries. Best effort:
    a read-only or hostile `.airlift/` leaves the stamps unwritten, which only costs a rehash later.
    """
    if not observed:
        return
    store = BlobStore(Path(root))
    with contextlib.suppress(OSError, WorkError):
        confined = ConfinedRoot(Path(root))
        confined.mkdirs(".airlift")
        with open(confined.path(_LOCK), "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            # Every writer holds the lock, so a temp file found now is a killed writer's: sweep it.
            for stale in confined.path(".airlift").glob(".verified.json.*.tmp"):
                stale.unlink(missing_ok=True)
            merged = {**read_stamps(root), **observed}
            kept = {d: s for d, s in merged.items() if current(store, d) == s}
            confined.write_bytes(STAMPS, render_stamps(kept))

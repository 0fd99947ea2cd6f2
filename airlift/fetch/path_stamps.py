"""Source stamps of `path:` datasets: what airlift's own copy proved about each local file.

A stamp is a source file's (device, inode, size, mtime_ns, ctime_ns) together with the sha256 that
airlift computed while copying it into the store, taken only when the file had that same identity
before and after the copy. While every field still matches and the blob is in the store, the file
holds the bytes that were hashed: a write moves mtime and ctime, a replacement changes the inode,
and ctime cannot be set back by a tool that restores mtime. So a rebuild after one file of a large
tree changed copies that one file, and recognises the rest by a stat.

The stamp file (`<cache>/stamps/path-<sha256 of the root>.json`) is a convenience, never a source of
trust by itself: one that is missing, oversized or does not validate counts as empty (it costs a copy).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airlift.bundle.store import BlobStore
from airlift.fetch.cache import CacheLayout
from airlift.util.fs import write_bytes_atomic

MAX_BYTES = 64 << 20
Identity = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns
_Count = Annotated[int, Field(ge=0)]


class SourceStamp(BaseModel):
    """One source file's identity at its last verified copy, and the sha256 of the bytes copied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity: tuple[_Count, _Count, _Count, int, int]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class SourceStampFile(BaseModel):
    """The stamp file: the source root it describes, and each file's stamp by its path under that root."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    root: str
    files: dict[str, SourceStamp] = Field(default_factory=dict)


def identity_of(info: os.stat_result) -> Identity:
    """(device, inode, size, mtime_ns, ctime_ns): what any change to a file, or its replacement, moves."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def stamp_path(cache_root: Path, source_root: str) -> Path:
    return CacheLayout(cache_root).stamp(source_root)


def load(cache_root: Path, source_root: str) -> dict[str, SourceStamp]:
    """The stamps recorded for `source_root`; empty when none, unreadable, or recorded for another root."""
    try:
        with open(stamp_path(cache_root, source_root), "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError:
        return {}
    if len(data) > MAX_BYTES:
        return {}
    try:
        parsed = SourceStampFile.model_validate(json.loads(data))
    except (ValueError, UnicodeDecodeError, ValidationError):
        return {}
    return dict(parsed.files) if parsed.root == source_root else {}


def save(cache_root: Path, source_root: str, stamps: dict[str, SourceStamp]) -> None:
    """Replace the stamps of `source_root` (atomically). Best effort: unwritten stamps only cost a copy."""
    body = SourceStampFile(root=source_root, files=dict(sorted(stamps.items())))
    with contextlib.suppress(OSError):
        write_bytes_atomic(stamp_path(cache_root, source_root), body.model_dump_json().encode())


def still_valid(stamp: SourceStamp | None, now: Identity, store: BlobStore) -> bool:
    """True when the file's identity now is exactly the stamped one and the store still has the blob."""
    return stamp is not None and stamp.identity == now and store.has(stamp.sha256, now[2])

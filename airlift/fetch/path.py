"""`path:` datasets: a local file or directory, copied into the store while it is hashed.

Copied, never hard-linked: the source is the user's live data, and a blob sharing its inode would
change in the cache and in every bundle built from it when the user edits a file in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from airlift.bundle.manifest import Artifact, FileEntry
from airlift.config.spec import LocalPath
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.util.errors import InputError
from airlift.util.net import bounded_map


def _walk(root: Path) -> list[tuple[str, os.stat_result]]:
    found: list[tuple[str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = full.resolve()
                if not target.is_relative_to(root.resolve()):
                    raise InputError(f"{full}: symlink points outside {root}")
                info = target.stat()
            if stat.S_ISREG(info.st_mode):
                found.append((full.relative_to(root).as_posix(), info))
    return found


def resolve(entry: LocalPath, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """List the local file or directory (sizes, mtimes, inodes): a cheap, honest "unchanged" stamp."""
    root = Path(entry.path).expanduser()
    if not root.exists():
        raise InputError(f"datasets: path {entry.path}: does not exist")
    if root.is_file():
        info = root.stat()
        files = (RemoteFile(entry.file_name, info.st_size, executable=bool(info.st_mode & 0o111)),)
        fingerprint = [[entry.file_name, info.st_size, info.st_mtime_ns, info.st_ino]]
        layout = "file"
    else:
        listing = _walk(root)
        files = tuple(RemoteFile(rel, info.st_size, executable=bool(info.st_mode & 0o111)) for rel, info in listing)
        fingerprint = [[rel, info.st_size, info.st_mtime_ns, info.st_ino] for rel, info in listing]
        layout = "tree"
    # size+mtime+inode per file: a cheap, honest "unchanged" test, like rsync's quick check.
    stamp = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()
    return Resolved(artifact_id, "path", {"path": str(root.resolve()), "stamp": stamp}, files, layout=layout)


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Bring every file into the cache store."""
    root = Path(resolved.source.path)

    def one(remote: RemoteFile) -> FileEntry:
        source_file = root if resolved.layout == "file" else root / remote.path
        blob = ctx.cache.store.add_file(source_file, on_bytes=ctx.progress)
        return FileEntry(path=remote.path, size=blob.size, sha256=blob.sha256, executable=remote.executable)

    ctx.cache.store.ensure_dirs()
    entries = bounded_map(one, resolved.files, workers=ctx.max_parallel_files)
    return Artifact(id=resolved.artifact_id, kind="path", layout=resolved.layout, source={"path": resolved.source.path}, files=entries)

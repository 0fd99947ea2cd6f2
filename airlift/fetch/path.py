"""`path:` datasets: a local file or directory, copied into the store while it is hashed.

Copied, never hard-linked: the source is the user's live data, and a blob sharing its inode would
change in the cache and in every bundle built from it when the user edits a file in place.

Rebuilds cost a stat per file: the artifact's cache key is every file's (device, inode, size, mtime_ns,
ctime_ns), and a fetch checks that each file it copied (or recognised by its source stamp, see
path_stamps.py) had exactly the identity resolve saw, so a record is only ever keyed by the stat of
the very bytes airlift hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry
from airlift.config.spec import LocalPath
from airlift.fetch import path_stamps
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.fetch.path_stamps import SourceStamp, identity_of
from airlift.util.errors import InputError, WorkError
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
        identities = [(entry.file_name, identity_of(info))]
        layout = "file"
    else:
        listing = _walk(root)
        files = tuple(RemoteFile(rel, info.st_size, executable=bool(info.st_mode & 0o111)) for rel, info in listing)
        identities = [(rel, identity_of(info)) for rel, info in listing]
        layout = "tree"
    # Every stat field per file: a write moves mtime and ctime, a replacement the inode (see module doc).
    return Resolved(artifact_id, "path", {"path": str(root.resolve()), "stamp": _fingerprint(identities)}, files, layout=layout)


def _fingerprint(identities: list[tuple[str, tuple[int, ...]]]) -> str:
    return hashlib.sha256(json.dumps([[rel, *identity] for rel, identity in identities]).encode()).hexdigest()


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Bring every file into the cache store: copy (hashing) what changed, recognise the rest by its stamp.

    Raises:
        WorkError: A file changed between resolve and its copy (build again), or while it was copied.
    """
    root = Path(resolved.source.path)
    store = ctx.cache.store
    stamps = path_stamps.load(ctx.cache.root, resolved.source.path)
    fresh: dict[str, SourceStamp] = {}

    def one(remote: RemoteFile) -> tuple[FileEntry, tuple[int, ...]]:
        source_file = root if resolved.layout == "file" else root / remote.path
        before = identity_of(os.stat(source_file))
        stamp = stamps.get(remote.path)
        if stamp is not None and path_stamps.still_valid(stamp, before, store):
            fresh[remote.path] = stamp
            ctx.progress(before[2])
            return FileEntry(path=remote.path, size=before[2], sha256=stamp.sha256, executable=remote.executable), before
        blob = store.add_file(source_file, on_bytes=ctx.progress)
        # add_file proved its own copy untorn; the same identity around it ties the digest to this stat.
        if identity_of(os.stat(source_file)) == before and blob.size == before[2]:
            fresh[remote.path] = SourceStamp(identity=before, sha256=blob.sha256)
        return FileEntry(path=remote.path, size=blob.size, sha256=blob.sha256, executable=remote.executable), before

    store.ensure_dirs()
    # Copy+hash is CPU work (hashlib drops the GIL): at least one thread per core, a 4 MiB buffer each.
    try:
        results = bounded_map(one, resolved.files, workers=max(ctx.max_parallel_files, os.cpu_count() or 1))
    finally:
        path_stamps.save(ctx.cache.root, resolved.source.path, fresh)  # what was proven counts on a rerun too
    if _fingerprint([(remote.path, seen) for remote, (_, seen) in zip(resolved.files, results, strict=True)]) != resolved.source.stamp:
        raise WorkError(f"{root}: changed while the build was reading it; stop writing to it, then build again")
    entries = [entry for entry, _ in results]
    return FileArtifact(id=resolved.artifact_id, kind="path", layout=resolved.layout, source={"path": resolved.source.path}, files=entries)

"""`cache_info` and `prune_cache` (`airlift cache info|prune`) keep the build cache from growing forever.

Prune removes blobs no record (and no bundle the operator names) references, dangling ETag entries,
and what killed writers left under `.tmp/`; it is safe beside a running build: nothing younger than
the given age goes, a partial download goes only while prune holds its lock, and the records are read
again just before any blob is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import parse_artifact
from airlift.bundle.store import SHA256_RE, BlobStore
from airlift.fetch.cache import _HEX64, DEFAULT_PRUNE_AGE, Cache, parse_age  # noqa: F401 - parse_age, DEFAULT_PRUNE_AGE re-exported
from airlift.fetch.cache_records import evict, records_to_evict
from airlift.util.locks import try_lock
from airlift.util.names import Digest


class CacheInfo(BaseModel):
    """What `airlift cache info` shows."""

    root: str
    total_bytes: int  # every file under the root, hard links counted once
    blobs: int
    blob_bytes: int
    unreferenced_blobs: int  # in no record: what `prune --older-than 0s` would remove
    unreferenced_bytes: int
    records: int
    etags: int
    pending_uploads: int  # state files of uploads a rerun would resume
    partials: int  # resumable partial downloads under .tmp/
    partial_bytes: int
    partials_in_use: int  # a running writer holds their lock
    stale_temp: int  # temp files of dead writers, and work directories/leftovers untouched for 24h
    stale_temp_bytes: int
    stale_locks: int  # lock files of no partial that nobody holds


class PruneReport(BaseModel):
    """What `airlift cache prune` removed, and what it kept that it might otherwise have removed."""

    dry_run: bool = False
    blobs_removed: int = 0
    blob_bytes_removed: int = 0
    blobs_kept_young: int = 0  # unreferenced, but younger than the age
    partials_removed: int = 0
    partial_bytes_removed: int = 0
    partials_kept_in_use: int = 0
    partials_kept_young: int = 0
    temp_removed: int = 0
    temp_bytes_removed: int = 0
    locks_removed: int = 0
    etags_removed: int = 0
    indexes_removed: int = 0  # layers/ and engine/ entries whose blob is gone
    records_removed: int = 0  # evicted on purpose (--records, --artifact, --all)


def _record_blobs(cache: Cache, evicted: frozenset[Path] = frozenset()) -> set[str]:
    """Every blob a record (not being evicted) names. A record that does not parse still protects each digest in its text."""
    found: set[str] = set()
    for path in cache.records_dir.glob("*.json") if cache.records_dir.is_dir() else []:
        if path in evicted:
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        try:
            found |= parse_artifact(data).all_blobs()
        except ValueError:
            found |= set(_HEX64.findall(data.decode("utf-8", "replace")))
    return found


def _bundle_blobs(bundles: Iterable[Path]) -> set[str]:
    found: set[str] = set()
    for root in bundles:
        found |= Bundle(Path(root)).read_manifest().all_blobs()
    return found


def _blobs(store: BlobStore) -> list[tuple[str, os.stat_result]]:
    out = []
    for path in store.blobs_dir.iterdir() if store.blobs_dir.is_dir() else []:
        if SHA256_RE.match(path.name):
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if path.is_file() and not path.is_symlink():
                out.append((path.name, info))
    return out


def _tree(path: Path) -> tuple[int, float]:
    """(bytes, newest mtime) of a file, or of a directory and everything in it."""
    info = path.lstat()
    size, newest = (info.st_size if not path.is_dir() else 0), info.st_mtime
    if path.is_dir() and not path.is_symlink():
        for sub in path.rglob("*"):
            try:
                sub_info = sub.lstat()
            except FileNotFoundError:
                continue
            newest = max(newest, sub_info.st_mtime)
            size += sub_info.st_size if sub.is_file() else 0
    return size, newest


def _in_use(lock_path: Path) -> bool:
    if not lock_path.exists():
        return False
    with try_lock(lock_path) as lock:
        return lock is None


def _leftovers(cache: Cache) -> list[tuple[Path, bool]]:
    """Temp files and work directories no live writer owns, each with whether its writer is known gone.

    Known gone: temp files named for a dead process on this host. Unknown (their age decides): work
    directories under `.tmp/` (git, NGC) and atomic-write leftovers (`.<name>.*.tmp`) beside records,
    ETags, uploads and blobs. Temp files of a live process, or of another host, are not listed.
    """
    found = [(p, True) for p in cache.store.stale_tmp()]
    tmp = cache.store.tmp_dir
    found += [(p, False) for p in tmp.iterdir() if p.is_dir() and not p.is_symlink()] if tmp.is_dir() else []
    for directory in (cache.records_dir, cache.etags_dir, cache.uploads_dir, cache.store.blobs_dir):
        if directory.is_dir():
            found += [(p, False) for p in directory.rglob(".*.tmp") if p.is_file()]
    return found


def cache_info(cache: Cache) -> CacheInfo:
    """Survey the cache: sizes, counts, and what prune could remove. Reads only; removes nothing."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in cache.root.rglob("*") if cache.root.is_dir() else []:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if path.is_file() and not path.is_symlink() and (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    blobs = _blobs(cache.store)
    referenced = _record_blobs(cache)
    loose = [info.st_size for digest, info in blobs if digest not in referenced]
    tmp = cache.store.tmp_dir
    parts = sorted(tmp.glob("*.part")) if tmp.is_dir() else []
    locks = [p for p in tmp.glob("*.lock") if not p.with_suffix(".part").exists()] if tmp.is_dir() else []
    stale = []
    for path, gone in _leftovers(cache):
        with contextlib.suppress(FileNotFoundError):
            size, newest = _tree(path)
            if gone or newest < time.time() - DEFAULT_PRUNE_AGE:
                stale.append(size)
    return CacheInfo(
        root=str(cache.root), total_bytes=total, blobs=len(blobs), blob_bytes=sum(i.st_size for _, i in blobs),
        unreferenced_blobs=len(loose), unreferenced_bytes=sum(loose),
        records=len(list(cache.records_dir.glob("*.json"))) if cache.records_dir.is_dir() else 0,
        etags=sum(1 for p in cache.etags_dir.iterdir() if not p.name.startswith(".")) if cache.etags_dir.is_dir() else 0,
        pending_uploads=len(list(cache.uploads_dir.rglob("*.json"))) if cache.uploads_dir.is_dir() else 0,
        partials=len(parts), partial_bytes=sum(p.stat().st_size for p in parts if p.exists()),
        partials_in_use=sum(1 for p in parts if _in_use(p.with_suffix(".lock"))),
        stale_temp=len(stale), stale_temp_bytes=sum(stale),
        stale_locks=sum(1 for p in locks if not _in_use(p)),
    )


def prune_cache(
    cache: Cache, *, older_than: float = DEFAULT_PRUNE_AGE, keep_bundles: Iterable[Path] = (), dry_run: bool = False,
    records: bool = False, artifacts: Iterable[str] = (),
) -> PruneReport:
    """Remove what nothing references and what dead writers left, if older than `older_than` seconds.

    Safe while a build runs: anything modified within the age stays (a build's fresh blobs, a partial
    it is resuming), a partial goes only while prune holds the lock its writer takes, a blob any
    record names stays (records are read again just before blobs are removed), and temp files of a
    live process stay.

    Args:
        cache: The cache.
        older_than: Seconds; younger files are kept whatever they are.
        keep_bundles: Bundle directories whose blobs are kept too.
        dry_run: Count what would go, remove nothing.
        records: Also evict records last used more than `older_than` ago (their blobs then go as above).
        artifacts: Also evict the records of these artifact ids, whatever their age.

    Returns:
        What was removed and kept.

    Raises:
        InputError: A bundle in `keep_bundles` is not a readable bundle.
    """
    keep = _bundle_blobs(keep_bundles)  # first: a wrong --keep-bundle must stop prune before it removes anything
    cutoff = time.time() - older_than
    report = PruneReport(dry_run=dry_run)
    evicted = frozenset(records_to_evict(cache.records_dir, cutoff=cutoff if records else None, artifacts=artifacts))
    report.records_removed = evict(evicted, dry_run=dry_run)
    _prune_partials(cache, cutoff, report)
    for path, _gone in _leftovers(cache):
        try:
            size, newest = _tree(path)
        except FileNotFoundError:
            continue
        if newest >= cutoff:
            continue
        if dry_run:
            pass
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        report.temp_removed += 1
        report.temp_bytes_removed += size
    removed = _prune_blobs(cache, cutoff, keep, report, evicted)  # under --dry-run, still there: counted as gone

    def gone(target: str) -> bool:
        return not SHA256_RE.match(target) or target in removed or not cache.store.has(target)

    for entry in cache.etags_dir.iterdir() if cache.etags_dir.is_dir() else []:
        try:
            target = entry.read_text().strip()
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
            continue
        if not entry.name.startswith(".") and SHA256_RE.match(target) and gone(target):
            report.etags_removed += 1
            if not dry_run:
                entry.unlink(missing_ok=True)
    # The engine-image dedup indexes (oci/dedup.py, fetch/engine_image.py) check the store on every
    # lookup, so a stale entry is harmless; it is removed so the cache does not grow without bound.
    for directory, field in ((cache.layout.layers, "digest"), (cache.layout.engine, "manifest")):
        for entry in directory.glob("*.json") if directory.is_dir() else []:
            try:
                target = Digest(str(json.loads(entry.read_bytes())[field])).hex
            except (OSError, ValueError, KeyError, TypeError):
                target = ""
            if gone(target):
                report.indexes_removed += 1
                if not dry_run:
                    entry.unlink(missing_ok=True)
    return report


def _prune_partials(cache: Cache, cutoff: float, report: PruneReport) -> None:
    """Partial downloads (and their locks) whose writer is gone and that stopped growing before `cutoff`."""
    tmp = cache.store.tmp_dir
    if not tmp.is_dir():
        return
    for part in sorted(tmp.glob("*.part")):
        with try_lock(part.with_suffix(".lock")) as lock:
            if lock is None:
                report.partials_kept_in_use += 1
                continue
            try:
                info = part.stat()
            except FileNotFoundError:
                continue  # its writer committed it meanwhile
            if info.st_mtime >= cutoff:
                report.partials_kept_young += 1  # the next build resumes it
                continue
            report.partials_removed += 1
            report.partial_bytes_removed += info.st_size
            if not report.dry_run:
                part.unlink(missing_ok=True)
                lock.remove()
    for leftover in sorted(tmp.glob("*.lock")):
        if leftover.with_suffix(".part").exists():
            continue
        with try_lock(leftover) as lock:
            try:
                young = leftover.stat().st_mtime >= cutoff
            except FileNotFoundError:
                continue
            if lock is not None and not young:
                report.locks_removed += 1
                if not report.dry_run:
                    lock.remove()


def _prune_blobs(cache: Cache, cutoff: float, keep: set[str], report: PruneReport, evicted: frozenset[Path]) -> set[str]:
    """Blobs no record and no kept bundle names, last modified before `cutoff`; returns their digests."""
    referenced = _record_blobs(cache, evicted) | keep
    candidates = []
    for digest, info in _blobs(cache.store):
        if digest in referenced:
            continue
        if info.st_mtime >= cutoff:
            report.blobs_kept_young += 1
            continue
        candidates.append((digest, info.st_size))
    # A build may have saved a record since the first read: read them again, right before removing.
    referenced = _record_blobs(cache, evicted)
    removed = set()
    for digest, size in candidates:
        if digest in referenced:
            continue
        removed.add(digest)
        report.blobs_removed += 1
        report.blob_bytes_removed += size
        if not report.dry_run:
            cache.store.blob_path(digest).unlink(missing_ok=True)
    return removed

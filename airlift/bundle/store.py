"""Content-addressed blob store: `<root>/blobs/sha256/<hex>`, every name a verified sha256.

Bytes are hashed as they are written, into a temp file in the store's own `.tmp/`, and reach their
final name by an atomic rename only once the digest is known (and matches, when one was promised).
Partial downloads live under `.tmp/` with a stable name so a rerun after `kill -9` resumes them; a
file lock keeps two processes from appending to the same partial.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from airlift.util.confine import ConfinedRoot, hash_regular, open_path
from airlift.util.errors import IntegrityError, WorkError
from airlift.util.fs import CHUNK, copy_hashing, fsync_dir, link_or_copy
from airlift.util.hashing import git_blob_hasher
from airlift.util.locks import FileLock, try_lock
from airlift.util.phase import under_way
from airlift.util.proc import pid_alive

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HOST = socket.gethostname().replace(".", "-")


_alive = pid_alive


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime_ns): what changes when a file is edited in place or replaced."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def sha256_file(path: Path, size: int | None = None) -> str:
    """sha256 of a regular file, through the guarded opener (no symlink, FIFO or device; bounded)."""
    return hash_regular(Path(path), size=size)


class HashingWriter:
    """A write-only file wrapper that hashes every byte it writes (sha256, and optionally git's sha1).

    It tolerates the one seek pattern downloaders use, rewinding to restart a download from zero.
    """

    def __init__(self, handle: BinaryIO, *, git_blob_size: int | None = None) -> None:
        self._handle = handle
        self._git_blob_size = git_blob_size
        self.size = 0
        self._reset()

    def _reset(self) -> None:
        self.sha256 = hashlib.sha256()
        # Git's blob id is sha1("blob <size>\0" + content); computing it lets us check non-LFS hub files.
        self.git_sha1 = git_blob_hasher(self._git_blob_size) if self._git_blob_size is not None else None
        self.size = 0

    def absorb_existing(self, path: Path) -> None:
        """Hash bytes already in the partial file (the resume case) without rewriting them."""
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                self._update(chunk)

    def _update(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.git_sha1 is not None:
            self.git_sha1.update(data)
        self.size += len(data)

    def write(self, data: bytes) -> int:  # noqa: D401 - file protocol
        self._handle.write(data)
        self._update(data)
        return len(data)

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._handle.seek(offset, whence)
        if position == 0:
            self._reset()
        elif position != self.size:
            raise OSError("HashingWriter only supports rewinding to the start")
        return position

    def truncate(self, size: int | None = None) -> int:
        result = self._handle.truncate(size)
        if (size if size is not None else self._handle.tell()) == 0:
            self._reset()
        return result

    def flush(self) -> None:
        self._handle.flush()


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    git_sha1: str | None = None


class BlobStore:
    """A directory of blobs named by sha256, plus a private temp area on the same filesystem."""

    def __init__(self, root: Path, *, check_dirs_once: bool = False) -> None:
        """`check_dirs_once`: for the download cache, this user's own directory on the networked side,
        whose two directories are checked once per store object (one per `Cache`) rather than before every blob (the confined
        check was 0.9 ms of a small file's 5); every store a bundle or a site hands in checks each time."""
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / ".tmp"
        self._check_dirs_once = check_dirs_once
        self._dirs_checked = False

    # -- lookup -----------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        if not SHA256_RE.fullmatch(sha256):  # not match: `$` also matches before a final newline
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.blobs_dir / sha256

    def has(self, sha256: str, size: int | None = None) -> bool:
        try:
            stat = self.blob_path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or stat.st_size == size

    def ensure_dirs(self) -> None:
        """Create blobs/sha256 and .tmp, refusing either when a symlink would take writes out of the root."""
        if self._dirs_checked:
            return
        root = ConfinedRoot(self.root)
        root.mkdirs("blobs/sha256")
        root.mkdirs(".tmp")
        self._dirs_checked = self._check_dirs_once

    # -- writing ----------------------------------------------------------------------------------
    def _new_tmp(self) -> tuple[int, str]:
        # host.pid in the name lets a later run sweep what a killed writer left, and only that.
        return tempfile.mkstemp(dir=self.tmp_dir, prefix=f"{_HOST}.{os.getpid()}.", suffix=".tmp")

    def _commit(self, tmp: Path, digest: str, *, mode: int = 0o444, sync_dir: bool = True) -> None:
        final = self.blob_path(digest)
        if final.exists():
            # Someone (another build, an earlier run) already stored the same content.
            os.unlink(tmp)
            return
        os.chmod(tmp, mode)
        os.replace(tmp, final)
        if sync_dir:
            fsync_dir(final.parent)

    def sync_names(self) -> None:
        """Make every blob name committed with `sync_dir=False` durable: one fsync of the blob directory.

        Their bytes were fsynced before the rename, so a crash before this call can only lose a name
        (the blob is fetched again), never leave a wrong one; callers call it before any record names
        those blobs.
        """
        fsync_dir(self.blobs_dir)

    @contextlib.contextmanager
    def partial(self, key: str, *, git_blob_size: int | None = None) -> Iterator[_Partial]:
        """Open (or resume) the partial download named `key`, locked against other processes."""
        self.ensure_dirs()
        path = self.tmp_dir / f"{key}.part"
        # A FileLock, not a bare flock: `airlift cache prune` may delete a dead writer's lock file.
        with FileLock(self.tmp_dir / f"{key}.lock"):
            handle = open(path, "ab")  # noqa: SIM115 - closed below
            try:
                writer = HashingWriter(handle, git_blob_size=git_blob_size)
                if handle.tell() > 0:
                    writer.absorb_existing(path)
                yield _Partial(self, path, writer)
            finally:
                handle.close()

    def put_stream(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, label: str = "", sync_dir: bool = True,
    ) -> StoredBlob:
        """Store a stream of bytes; the blob's name is the sha256 computed while writing.

        `sync_dir=False` leaves the new name's durability to one later `sync_names()` (many small blobs).
        """
        self.ensure_dirs()
        fd, tmp = self._new_tmp()
        try:
            with os.fdopen(fd, "wb") as handle:
                writer = HashingWriter(handle)
                for chunk in chunks:
                    writer.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            digest = writer.sha256.hexdigest()
            if expected_sha256 and digest != expected_sha256:
                raise IntegrityError(f"{label or 'blob'}: sha256 {digest} does not match expected {expected_sha256}")
            self._commit(Path(tmp), digest, sync_dir=sync_dir)
            return StoredBlob(digest, writer.size)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_bytes(self, data: bytes) -> StoredBlob:
        return self.put_stream([data])

    def add_file(self, path: Path, *, on_bytes: Callable[[int], None] | None = None) -> StoredBlob:
        """Copy a local file into the store, hashing each piece of the copy as it lands (see copy_hashing).

        Never a hard link: the source is the user's live file, and a blob that shares its inode would
        change (in the cache and every bundle built from it) when the user edits it in place. The
        file's (device, inode, size, mtime_ns) are taken before and after the copy; if they differ,
        the bytes may be torn, so the copy is tried once more and then refused.

        Args:
            path: The local file.
            on_bytes: Called with each chunk's length as it is written (progress).

        Returns:
            The stored blob (read-only, 0o444).

        Raises:
            WorkError: The file changed while it was being copied, in both attempts.
        """
        self.ensure_dirs()
        for _attempt in range(2):
            blob = self._copy_unchanged(Path(path), on_bytes)
            if blob is not None:
                return blob
        raise WorkError(f"{path}: changed while it was being copied (twice); stop writing to it, then build again")

    def add_open(self, fd: int, *, label: str) -> StoredBlob:
        """Copy a regular file the caller already opened (the guarded opener's descriptor, whose identity
        the caller checked) into the store, hashing each piece as it lands. Nothing is opened by name, so
        a file swapped for a symlink meanwhile cannot bring another file's bytes in.

        Raises:
            WorkError: The file changed (size, mtime or inode) while it was being copied; nothing is stored.
        """
        self.ensure_dirs()
        blob = self._copy_fd(fd, None, None)
        if blob is None:
            raise WorkError(f"{label}: changed while it was being copied; nothing was stored from it")
        return blob

    def _copy_unchanged(self, path: Path, on_bytes: Callable[[int], None] | None) -> StoredBlob | None:
        """One copy-while-hashing attempt; None (and nothing stored) when the source changed meanwhile."""
        with open(path, "rb") as fin:
            return self._copy_fd(fin.fileno(), on_bytes, lambda: _identity(os.stat(path)))

    def _copy_fd(
        self, src: int, on_bytes: Callable[[int], None] | None, by_name: Callable[[], tuple[int, int, int, int]] | None,
    ) -> StoredBlob | None:
        """Copy the open file `src`; None (nothing stored) when its identity (and that of `by_name()`, the
        name's, when given) after the copy is not the one before it."""
        fd, tmp = self._new_tmp()
        try:
            with os.fdopen(fd, "r+b") as fout:
                before = _identity(os.fstat(src))
                hasher = hashlib.sha256()
                # The digest is of the copy as written (read back from its page cache), see copy_hashing.
                size = copy_hashing(src, fout.fileno(), update=hasher.update, on_bytes=on_bytes)
                os.fsync(fout.fileno())
                # fstat catches an edit in place; stat of the name catches a replacement by rename.
                after = (_identity(os.fstat(src)), by_name() if by_name is not None else before)
            if after != (before, before) or size != before[2]:
                os.unlink(tmp)
                return None
            digest = hasher.hexdigest()
            final = self.blob_path(digest)
            with contextlib.suppress(FileNotFoundError):
                if _identity(os.stat(final))[:2] == before[:2]:
                    # An older airlift hard-linked this very file in: put an independent copy in its place.
                    os.chmod(tmp, 0o444)
                    os.replace(tmp, final)
                    fsync_dir(final.parent)
                    return StoredBlob(digest, size)
            self._commit(Path(tmp), digest)
            return StoredBlob(digest, size)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def link_blob_to(self, other: BlobStore, sha256: str, *, dirs_ready: bool = False) -> None:
        """Give `other` this store's blob, by hard link where the filesystem allows.

        `dirs_ready`: the caller has just run `other.ensure_dirs()` for a batch (the confined check
        per blob was a third of assembling 1,000 small files).
        """
        if other.has(sha256):
            return
        if not dirs_ready:
            other.ensure_dirs()
        link_or_copy(self.blob_path(sha256), other.blob_path(sha256))

    def copy_blob_to(self, other: BlobStore, sha256: str, size: int | None = None) -> int:
        """Copy one blob into `other`, re-hashing the bytes as they are written (used across machines/disks)."""
        other.ensure_dirs()
        src = self.blob_path(sha256)
        # The guarded opener: a blob planted as a symlink to /dev/zero or as a FIFO would otherwise
        # fill the destination disk (copy_hashing copies to EOF); it is refused before a byte is copied.
        src_fd = open_path(src, size=size)
        fd, tmp = other._new_tmp()
        try:
            with under_way("copy", sha256[:12]), os.fdopen(src_fd, "rb") as fin, os.fdopen(fd, "r+b") as fout:
                hasher = hashlib.sha256()
                copied = copy_hashing(fin.fileno(), fout.fileno(), update=hasher.update)
                os.fsync(fout.fileno())
            digest = hasher.hexdigest()
            if digest != sha256 or (size is not None and copied != size):
                raise IntegrityError(f"blob {sha256} is corrupt at the source (hashes to {digest})")
            other._commit(Path(tmp), digest)
            return copied
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def stale_tmp(self) -> list[Path]:
        """Temp files whose writer (a process on this host) is gone, e.g. after kill -9."""
        stale = []
        for tmp in self.tmp_dir.glob("*.tmp") if self.tmp_dir.is_dir() else []:
            host, _, rest = tmp.name.partition(".")
            pid = rest.partition(".")[0]
            if host == _HOST and pid.isdigit() and not _alive(int(pid)):
                stale.append(tmp)
        return stale

    def sweep_stale(self) -> int:
        """Delete temp files whose writer (a process on this host) is gone, e.g. after kill -9."""
        removed = 0
        for tmp in self.stale_tmp():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
        return removed

    def cleanup_tmp(self) -> None:
        """Sweep dead writers' temp files, then remove the temp area if nothing (no resumable partial) is left."""
        self.sweep_stale()
        with contextlib.suppress(OSError):
            for leftover in self.tmp_dir.glob("*.lock"):
                with try_lock(leftover) as lock:  # a lock someone holds is in use, partial or not
                    if lock is not None and not leftover.with_suffix(".part").exists():
                        lock.remove()
            self.tmp_dir.rmdir()


@dataclass
class _Partial:
    """A resumable partial download. `writer.size` is the offset to resume from."""

    store: BlobStore
    path: Path
    writer: HashingWriter

    @property
    def offset(self) -> int:
        return self.writer.size

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def commit(self, *, expected_sha256: str | None = None, expected_git_sha1: str | None = None, label: str = "") -> StoredBlob:
        self.writer.flush()
        with open(self.path, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = self.writer.sha256.hexdigest()
        git_sha1 = self.writer.git_sha1.hexdigest() if self.writer.git_sha1 is not None else None
        if expected_sha256 and digest != expected_sha256:
            self.discard()
            raise IntegrityError(f"sha256 {digest} does not match expected {expected_sha256}", artifact_id=label)
        if expected_git_sha1 and git_sha1 != expected_git_sha1:
            self.discard()
            raise IntegrityError(f"git blob id {git_sha1} does not match expected {expected_git_sha1}", artifact_id=label)
        size = self.writer.size
        self.store._commit(self.path, digest)
        return StoredBlob(digest, size, git_sha1)

"""Confined writes: every path airlift writes under a root it was given stays inside that root.

A manifest, a tar member, a volume index or a job that ran earlier can all try to steer a write
outside its place, with `..`, an absolute path, or a symlink planted inside the root that points
out of it. `ConfinedRoot` is the one helper every writer under `shared_root`, a blob store, a bundle
or an unpack target goes through: it validates the relative path, refuses any existing component
that is a symlink leaving the root, and lands files by unique temp name + fsync + rename.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from airlift.util.errors import InputError, IntegrityError, WorkError
from airlift.util.fs import CHUNK, atomic_writer, copy_hashing


class EscapeError(WorkError):
    """A write would have left its root (a hostile path or a planted symlink)."""


MAX_COMPONENT_BYTES = 255  # NAME_MAX on every filesystem airlift writes to (ext4, XFS, NTFS, FAT32 LFN)
MAX_PATH_BYTES = 4096  # PATH_MAX: a longer path cannot be opened in one call anywhere
MAX_UNDECLARED_BYTES = 64 << 20  # a file with no declared size (marker, index, receipt input) is read no further
MAX_BLOB_BYTES = 1 << 50  # 1 PiB: a blob with no declared size (an image layer) is never hashed past it


def path_problem(relative: str) -> str | None:
    """Why `relative` is not a plain relative POSIX path airlift may use as a file name, or None.

    Refused: empty, absolute, backslash, any control character (C0, DEL, C1: a newline splits error
    lines and receipts), an empty, '.' or '..' part, a part over 255 bytes or a whole over 4096 bytes
    (each fails mid-write with ENAMETOOLONG), and text that is not valid UTF-8 (a lone surrogate).
    """
    if not relative or relative.startswith("/") or "\\" in relative:
        return f"path {relative!r} must be a relative POSIX path"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in relative):
        return f"path {relative!r} has a control character"
    try:
        encoded = relative.encode()
    except UnicodeEncodeError:
        return f"path {relative!r} is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"path {relative[:40]!r}... is longer than {MAX_PATH_BYTES} bytes"
    parts = relative.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        return f"path {relative!r} has an empty, '.' or '..' component"
    if any(len(part.encode()) > MAX_COMPONENT_BYTES for part in parts):
        return f"path {relative[:40]!r}... has a component longer than {MAX_COMPONENT_BYTES} bytes"
    return None


def check_relative(relative: str) -> PurePosixPath:
    """A relative POSIX path that passes `path_problem`.

    Raises:
        InputError: The path is not a plain relative path.
    """
    problem = path_problem(relative)
    if problem:
        raise InputError(problem)
    return PurePosixPath(relative)


class ConfinedRoot:
    """A directory that writes may not leave.

    Args:
        root: The directory; it is created if missing, and resolved once (symlinks in the path *to*
            the root are the operator's choice and are allowed; symlinks *inside* it are not trusted).
    """

    def __init__(self, root: Path) -> None:
        Path(root).mkdir(parents=True, exist_ok=True)
        self.root = Path(root).resolve()

    def path(self, relative: str) -> Path:
        """The absolute path for `relative`, after checking that nothing on the way leaves the root.

        Every existing component below the root must be a real directory (or, for the last one, a
        regular file or a symlink that resolves inside the root).

        Raises:
            InputError: `relative` is not a plain relative path.
            EscapeError: An existing component is a symlink or special file leading outside the root.
        """
        parts = check_relative(relative).parts
        current = self.root
        for index, part in enumerate(parts):
            current = current / part
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                break
            last = index == len(parts) - 1
            if stat.S_ISLNK(info.st_mode):
                if not last or not self.contains(current.resolve()):
                    raise EscapeError(f"refusing to write through {current}: a symlink that leaves {self.root}")
            elif not last and not stat.S_ISDIR(info.st_mode):
                raise EscapeError(f"refusing to write below {current}: not a directory")
        return self.root.joinpath(*parts)

    def contains(self, candidate: Path) -> bool:
        """True when `candidate` (already resolved) is the root or below it."""
        return candidate == self.root or self.root in candidate.parents

    def mkdirs(self, relative: str) -> Path:
        """Create the directory `relative` (and its parents) inside the root, confined."""
        target = self.path(relative)
        target.mkdir(parents=True, exist_ok=True)
        if not self.contains(target.resolve()):
            raise EscapeError(f"refusing to use {target}: it resolves outside {self.root}")
        return target

    @contextlib.contextmanager
    def writer(self, relative: str, *, mode: int = 0o644) -> Iterator[BinaryIO]:
        """A file that becomes `relative` only if the block finishes: unique temp name, fsync, rename."""
        target = self.path(relative)
        if "/" in relative:
            self.mkdirs(str(PurePosixPath(relative).parent))
        # re-checked before the rename: a symlink planted meanwhile must not be replaced blindly
        with atomic_writer(target, mode, before_replace=lambda: self.path(relative)) as handle:
            yield handle

    def write_bytes(self, relative: str, data: bytes, *, mode: int = 0o644) -> Path:
        """Write `data` to `relative` atomically, confined."""
        with self.writer(relative, mode=mode) as handle:
            handle.write(data)
        return self.root / relative

    def write_chunks(self, relative: str, chunks: Iterable[bytes], *, mode: int = 0o644) -> Path:
        """Stream `chunks` to `relative` atomically, confined."""
        with self.writer(relative, mode=mode) as handle:
            for chunk in chunks:
                handle.write(chunk)
        return self.root / relative

    def copy_in(self, relative: str, source: Path, *, sha256: str, mode: int = 0o644, size: int | None = None) -> Path:
        """Copy the regular file `source` to `relative` (a copy, never a link), atomically and confined,
        hashing the bytes as the copy holds them: bytes that changed after verify never land.

        Raises:
            EscapeError: `source` is not a regular file (a symlink is not followed), or not `size` bytes.
            IntegrityError: The copied bytes do not hash to `sha256` (nothing is placed).
        """
        fd = open_path(source, size=size, max_bytes=None if size is not None else MAX_BLOB_BYTES)
        with os.fdopen(fd, "rb") as handle:
            digest = hashlib.sha256()
            with self.writer(relative, mode=mode) as out:
                copy_hashing(handle.fileno(), out.fileno(), update=digest.update)
                if digest.hexdigest() != sha256:
                    raise IntegrityError(f"{relative}: the bytes copied from {source} hash to {digest.hexdigest()}, expected {sha256}; not placed")
        return self.root / relative

    def _open_dir(self, relative: str | None) -> int:
        """A descriptor of the directory `relative` (created if missing), every component opened with
        O_NOFOLLOW from the root down: a symlink planted anywhere on the way is refused, not followed."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        for part in check_relative(relative).parts if relative else ():
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise EscapeError(f"refusing to write below {self.root / relative}: {part} is a symlink or not a directory") from None
                raise
            os.close(fd)
            fd = child
        return fd

    def move(self, source: str, target: str) -> Path:
        """Rename `source` to `target`, both inside the root, without following a link on either side.

        Used to put a corrupt blob aside: a planted `.corrupt -> /etc/cron.d` is refused, not written through.

        Raises:
            EscapeError: A directory on either path is a symlink or not a directory.
        """
        src_parent, src_name = str(PurePosixPath(source).parent), PurePosixPath(source).name
        dst_parent, dst_name = str(PurePosixPath(target).parent), PurePosixPath(target).name
        check_relative(source)
        check_relative(target)
        src_fd = self._open_dir(None if src_parent == "." else src_parent)
        try:
            dst_fd = self._open_dir(None if dst_parent == "." else dst_parent)
            try:
                os.replace(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                os.fsync(dst_fd)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
        return self.root / target

    def symlink(self, relative: str, target: str) -> Path:
        """Point the symlink `relative` at `target` (relative to the link's directory), confined.

        Raises:
            EscapeError: The link would resolve outside the root.
        """
        link = self.path(relative)
        parent = self.mkdirs(str(PurePosixPath(relative).parent)) if "/" in relative else self.root
        resolved = Path(os.path.normpath(parent / target))
        if not self.contains(resolved):
            raise EscapeError(f"refusing to link {link} to {target}: it points outside {self.root}")
        if link.is_symlink() and os.readlink(link) == target:
            return link
        tmp = parent / f".{link.name[:64]}.{os.getpid()}.{os.urandom(4).hex()}.tmp-link"
        os.symlink(target, tmp)
        try:
            os.replace(tmp, link)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return link


class SpecialFileError(EscapeError):
    """A file to be read is a symlink, a FIFO, a device or a directory, or larger than it may be.

    `wrong_size` is True when it is a regular file whose size is not the declared one.
    """

    def __init__(self, message: str, *, wrong_size: bool = False) -> None:
        super().__init__(message)
        self.wrong_size = wrong_size


def open_regular(root: Path, relative: str, *, size: int | None = None, max_bytes: int | None = None) -> int:
    """THE guarded opener: every read of a bundle, a volume set or a shared_root goes through it.

    Each directory from `root` down is opened relative to the one before with O_NOFOLLOW, so neither a
    symlink planted inside the root nor a directory swapped while the file is opened can lead outside;
    the file itself is opened with O_NOFOLLOW | O_NONBLOCK (a FIFO would otherwise block the open
    forever), then refused unless fstat says it is a regular file (not a FIFO, a socket or /dev/zero)
    of exactly `size` bytes when one is declared, and of at most `max_bytes` otherwise. Readers then
    read no more than that size (see `read_regular`, `hash_regular`): a file that grows meanwhile
    gives them nothing past it. `root` itself is the operator's (or the caller's trusted) directory.

    Returns:
        A file descriptor; the caller closes it.

    Raises:
        InputError: `relative` is not a plain relative path.
        EscapeError: A component is a symlink, or the file is not a regular file or has the wrong size.
        FileNotFoundError: Nothing is there.
    """
    parts = check_relative(relative).parts
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            except NotADirectoryError:
                raise EscapeError(f"{root}/{relative}: {part} is not a directory (or is a symlink)") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise EscapeError(f"{root}/{relative}: {part} is a symlink") from None
                raise
            os.close(directory)
            directory = child
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=directory)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                raise SpecialFileError(f"{root}/{relative}: is a symlink") from None
            if exc.errno == errno.ENXIO:  # a socket, or a FIFO with no writer on some systems
                raise SpecialFileError(f"{root}/{relative}: not a regular file") from None
            raise
    finally:
        os.close(directory)
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file"
    elif size is not None and info.st_size != size:
        problem = f"{info.st_size} bytes, the manifest says {size}"
    elif size is None and info.st_size > (MAX_UNDECLARED_BYTES if max_bytes is None else max_bytes):
        problem = f"larger than {MAX_UNDECLARED_BYTES if max_bytes is None else max_bytes} bytes"
    if problem:
        os.close(fd)
        raise SpecialFileError(f"{root}/{relative}: {problem}", wrong_size=stat.S_ISREG(info.st_mode))
    # Reads block from here on (a regular file never blocks; O_NONBLOCK was only for the open).
    os.set_blocking(fd, True)
    return fd


def open_path(path: Path, *, size: int | None = None, max_bytes: int | None = None) -> int:
    """`open_regular` for a path whose parent directory the caller chose (a blob path, a given file)."""
    path = Path(path)
    return open_regular(path.parent, path.name, size=size, max_bytes=max_bytes)


def read_regular(root: Path, relative: str, *, max_bytes: int = MAX_UNDECLARED_BYTES) -> bytes:
    """The bytes of a regular file under `root` (see `open_regular`), never more than `max_bytes`."""
    fd = open_regular(root, relative, max_bytes=max_bytes)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SpecialFileError(f"{root}/{relative}: grew beyond {max_bytes} bytes while read")
    return data


def read_path(path: Path, *, max_bytes: int = MAX_UNDECLARED_BYTES) -> bytes:
    """`read_regular` for a path whose parent directory the caller chose."""
    path = Path(path)
    return read_regular(path.parent, path.name, max_bytes=max_bytes)


class Stopped(WorkError):
    """Hashing was asked to stop (SIGTERM, another worker failed)."""


def hash_fd(fd: int, *, limit: int | None, stop: threading.Event | None = None) -> tuple[str, int]:
    """(sha256, bytes read) of an open file, reading no more than `limit` + 1 bytes (so a file that
    grew is seen as the wrong size, without reading the rest) and checking `stop` between chunks, so a
    SIGTERM that set it ends a many-GiB hash within one chunk."""
    digest = hashlib.sha256()
    total = 0
    while limit is None or total <= limit:
        if stop is not None and stop.is_set():
            raise Stopped("stopped while hashing")
        want = CHUNK if limit is None else min(CHUNK, limit + 1 - total)
        chunk = os.read(fd, want)
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
    return digest.hexdigest(), total


def hash_regular(path: Path, *, size: int | None, stop: threading.Event | None = None) -> str:
    """sha256 of the regular file `path` (guarded open, never more than its declared `size` + 1 bytes).

    Raises:
        EscapeError: A symlink, a special file, or not the declared size (also when it grows meanwhile).
        FileNotFoundError: Nothing is there.
    """
    fd = open_path(path, size=size, max_bytes=None if size is not None else MAX_BLOB_BYTES)
    try:
        digest, total = hash_fd(fd, limit=size, stop=stop)
    finally:
        os.close(fd)
    if size is not None and total != size:
        raise SpecialFileError(f"{path}: {total} bytes read, the manifest says {size}", wrong_size=True)
    return digest

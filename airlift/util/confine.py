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
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from airlift.util.errors import InputError, IntegrityError, WorkError
from airlift.util.fs import atomic_writer, copy_hashing


class EscapeError(WorkError):
    """A write would have left its root (a hostile path or a planted symlink)."""


def check_relative(relative: str) -> PurePosixPath:
    """A relative POSIX path with no empty, '.', '..' or absolute parts, no backslash and no NUL.

    Raises:
        InputError: The path is not a plain relative path.
    """
    if not relative or relative.startswith("/") or "\\" in relative or "\x00" in relative:
        raise InputError(f"path {relative!r} must be a relative POSIX path")
    parts = relative.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise InputError(f"path {relative!r} has an empty, '.' or '..' component")
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

    def copy_in(self, relative: str, source: Path, *, sha256: str, mode: int = 0o644) -> Path:
        """Copy the regular file `source` to `relative` (a copy, never a link), atomically and confined,
        hashing the bytes as the copy holds them: bytes that changed after verify never land.

        Raises:
            EscapeError: `source` is not a regular file (a symlink is not followed).
            IntegrityError: The copied bytes do not hash to `sha256` (nothing is placed).
        """
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise EscapeError(f"refusing to copy {source}: not a regular file")
            digest = hashlib.sha256()
            with self.writer(relative, mode=mode) as out:
                copy_hashing(handle.fileno(), out.fileno(), update=digest.update)
                if digest.hexdigest() != sha256:
                    raise IntegrityError(f"{relative}: the bytes copied from {source} hash to {digest.hexdigest()}, expected {sha256}; not placed")
        return self.root / relative

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
        tmp = parent / f".{link.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp-link"
        os.symlink(target, tmp)
        try:
            os.replace(tmp, link)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return link


def open_regular(root: Path, relative: str) -> int:
    """Open the regular file `relative` under `root` for reading without following any symlink.

    Each directory on the way is opened relative to the one before with O_NOFOLLOW, so neither a
    symlink planted inside the root nor a directory swapped while the file is opened can lead outside.

    Returns:
        A file descriptor; the caller closes it.

    Raises:
        InputError: `relative` is not a plain relative path.
        EscapeError: A component is a symlink, or the file is not a regular file.
        FileNotFoundError: Nothing is there.
    """
    parts = check_relative(relative).parts
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            except NotADirectoryError:
                raise EscapeError(f"{relative}: {part} is not a directory (or is a symlink)") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise EscapeError(f"{relative}: {part} is a symlink") from None
                raise
            os.close(directory)
            directory = child
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise EscapeError(f"{relative}: is a symlink") from None
            raise
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise EscapeError(f"{relative}: not a regular file")
    return fd

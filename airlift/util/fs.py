"""Atomic file writes and cheap copies.

Every final name in airlift is reached by rename(2) of an fsynced temp file in the same directory,
so a crash leaves either the old state or the new one, never a torn file under a final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so a rename in it survives a crash."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file that becomes `path` only if the block finishes without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically (temp file, fsync, rename)."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)


def clone_or_copy(src: Path, dst_tmp: Path) -> None:
    """Copy src to dst_tmp with copy_file_range, which reflinks on filesystems that can (XFS, Btrfs)."""
    with open(src, "rb") as fin, open(dst_tmp, "wb") as fout:
        remaining = os.fstat(fin.fileno()).st_size
        try:
            while remaining > 0:
                sent = os.copy_file_range(fin.fileno(), fout.fileno(), min(remaining, 1 << 30))
                if sent == 0:
                    break
                remaining -= sent
        except OSError:
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())


def link_or_copy(src: Path, dst: Path, *, allow_link: bool = True) -> None:
    """Place src's bytes at dst atomically: a hard link where allowed and possible, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.{id(dst)}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        if allow_link:
            try:
                os.link(src, tmp)
            except OSError:
                clone_or_copy(src, tmp)
        else:
            clone_or_copy(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_within(root: Path, candidate: Path) -> bool:
    """True when candidate (resolved) stays inside root (resolved): the guard against path escapes."""
    try:
        candidate.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


class IterReader:
    """A read()-able file over an iterator of byte chunks (docker-py's save stream, a zstd input)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

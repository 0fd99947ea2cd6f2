"""Atomic file writes and cheap copies.

Every final name in airlift is reached by rename(2) of an fsynced temp file in the same directory,
so a crash leaves either the old state or the new one, never a torn file under a final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from airlift.util.phase import progress

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
def atomic_writer(
    path: Path, mode: int = 0o644, *, before_replace: Callable[[], object] | None = None, durable: bool = True,
) -> Iterator[BinaryIO]:
    """Yield a file that becomes `path` only if the block finishes without error: the one
    temp-file, fsync, rename, fsync-the-directory sequence of the core.

    Args:
        path: The file to write.
        mode: Its permission bits.
        before_replace: Called just before the rename; may raise to refuse it (util/confine.py
            checks the path again there, so a symlink planted meanwhile is not replaced blindly).
        durable: False skips both fsyncs, for hints every reader checks before use (a crash may then
            leave the old file, the new one or an empty one, still never a torn one under the name).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")  # a long final name must still leave room
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Write `data` to `path` atomically (temp file, fsync, rename; see atomic_writer for `durable`)."""
    with atomic_writer(path, mode, durable=durable) as handle:
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


COPY_CHUNK = 4 * 1024 * 1024


def copy_hashing(
    src_fd: int, dst_fd: int, *, update: Callable[[memoryview], object], on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Copy src_fd to dst_fd from offset 0 to EOF, feeding `update` the bytes as the destination holds them.

    Each piece is copied in the kernel (copy_file_range: no trip through Python's buffers, a reflink
    where the filesystem can), then read back from the destination's page cache and hashed: the digest
    is of what was written, not of a buffer that was meant to be. Measured on the bench box (ext4,
    2 cores, 1 GiB in 8 files, 2 threads): 1.1-1.5 s against 1.6-2.7 s for read+write+hash. Where
    copy_file_range is refused (another filesystem on kernels >= 5.19, special files), it continues
    with pread/pwrite from the same offset. Memory: one 4 MiB buffer per call.

    Args:
        src_fd: Source, read with positional reads (its file offset is not moved).
        dst_fd: Destination, opened for reading and writing, empty.
        update: Called with each piece (e.g. a hashlib object's update).
        on_bytes: Called with each piece's length (progress).

    Returns:
        The number of bytes copied.
    """
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    offset = 0
    total = os.fstat(src_fd).st_size
    kernel_copy = True
    while True:
        if kernel_copy:
            try:
                count = os.copy_file_range(src_fd, dst_fd, COPY_CHUNK, offset, offset)
            except OSError:
                kernel_copy = False
                continue
            _read_exactly(dst_fd, view[:count], offset)
        else:
            count = os.preadv(src_fd, [view], offset)
            write_all(dst_fd, view[:count], offset)
        if count == 0:
            return offset
        update(view[:count])
        offset += count
        if on_bytes:
            on_bytes(count)
        progress(done=offset, total=total)


def _read_exactly(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise OSError(f"short read back of the copy at offset {offset + done}")
        done += got


def write_all(fd: int, view: memoryview | bytes | bytearray, offset: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


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
    """A read()-able file over an iterator of byte chunks (docker-py's save stream, a zstd input).

    `read(n)` returns exactly n bytes until the chunks run out (then fewer, then b""); `read()` returns
    everything left. Readers such as tarfile's stream mode ask for 10 KiB at a time from 2 MiB chunks:
    the pending bytes live in a bytearray, from whose front a read deletes in O(1) (CPython moves a start
    offset), so each byte is copied twice (into the buffer, out to the caller), not once per read.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._exhausted = False

    def _fill(self, size: int) -> None:
        while not self._exhausted and (size < 0 or len(self._buffer) < size):
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._exhausted = True
                break
            self._buffer += chunk

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all that is left when `size` is negative or None); b"" at the end."""
        if size is None or size < 0:
            self._fill(-1)
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        if not self._buffer and not self._exhausted:
            # Fast path: a chunk that is exactly what was asked for goes out without a copy.
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._exhausted = True
                return b""
            if len(chunk) == size:
                return bytes(chunk)
            self._buffer += chunk
        self._fill(size)
        with memoryview(self._buffer) as view:
            out = bytes(view[:size])
        del self._buffer[:size]
        return out

    def readable(self) -> bool:
        return True

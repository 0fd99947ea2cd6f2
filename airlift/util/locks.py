"""Lock files (fcntl.flock) whose holder may delete them safely.

A plain flock on a file that someone later unlinks is no lock at all: a process that opened the
old file before the unlink still gets "its" lock on the orphaned inode, while a newcomer creates a
fresh file at the same name and locks that. So every holder here checks, once it holds the lock,
that the name still points at the inode it locked, and starts over if not. With that, the holder
may remove the lock file (e.g. `airlift cache prune`, or an upload that finished) before releasing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class FileLock:
    """An exclusive flock on `path` (created if missing), held until `release`.

    Args:
        path: The lock file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; with `blocking=False`, return False at once if another process holds it.

        Returns:
            True once held (always, when blocking).
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return False
                raise
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                self._fd = fd
                return True
            os.close(fd)  # the holder before us removed it: lock the file now at that name

    def remove(self) -> None:
        """Delete the lock file while holding it (waiters then find it gone and start over)."""
        if self._fd is None:
            raise RuntimeError(f"{self.path}: removing a lock that is not held")
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def try_lock(path: Path) -> Iterator[FileLock | None]:
    """Hold `path`'s lock if nobody else does (yields the lock), else yield None at once."""
    lock = FileLock(path)
    if not lock.acquire(blocking=False):
        yield None
        return
    try:
        yield lock
    finally:
        lock.release()

"""copy_hashing: the kernel copy (copy_file_range) hashed from the destination, and its pread/pwrite
continuation where the kernel refuses (across filesystems), byte-exact at every chunk boundary."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from airlift.bundle.store import BlobStore
from airlift.util.fs import COPY_CHUNK, copy_hashing

SIZES = [0, 1, 4095, COPY_CHUNK - 1, COPY_CHUNK, COPY_CHUNK + 1, 2 * COPY_CHUNK + 12345]


def _copy(src: Path, dst: Path) -> tuple[int, str, list[int]]:
    hasher = hashlib.sha256()
    progress: list[int] = []
    fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with open(src, "rb") as fin:
            size = copy_hashing(fin.fileno(), fd, update=hasher.update, on_bytes=progress.append)
    finally:
        os.close(fd)
    return size, hasher.hexdigest(), progress


@pytest.mark.parametrize("size", SIZES)
def test_same_filesystem_copy_is_exact(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    copied, digest, progress = _copy(tmp_path / "src", tmp_path / "dst")
    assert (copied, digest, sum(progress)) == (size, hashlib.sha256(data).hexdigest(), size)
    assert (tmp_path / "dst").read_bytes() == data


def test_across_filesystems_falls_back_to_pread_pwrite(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the test's tmp dir")
    data = os.urandom(2 * COPY_CHUNK + 777)
    src = shm / f"airlift-copy-test-{os.getpid()}"
    src.write_bytes(data)
    try:
        # The kernel really refuses here, so the pread/pwrite continuation is what runs below.
        with pytest.raises(OSError), open(src, "rb") as fin, open(tmp_path / "probe", "wb") as probe:
            os.copy_file_range(fin.fileno(), probe.fileno(), 10, 0, 0)
        copied, digest, _ = _copy(src, tmp_path / "dst")
    finally:
        src.unlink()
    assert (copied, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert (tmp_path / "dst").read_bytes() == data


def test_store_copies_are_named_by_what_was_written(tmp_path: Path) -> None:
    data = os.urandom(COPY_CHUNK + 99)
    (tmp_path / "file.bin").write_bytes(data)
    first, second = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    blob = first.add_file(tmp_path / "file.bin")
    assert blob.sha256 == hashlib.sha256(data).hexdigest() and blob.size == len(data)
    assert first.copy_blob_to(second, blob.sha256) == len(data)
    assert second.blob_path(blob.sha256).read_bytes() == data
    assert oct(second.blob_path(blob.sha256).stat().st_mode & 0o777) == oct(0o444)

"""The content-addressed blob store: names are verified sha256s, partials resume, dead writers are swept."""

from __future__ import annotations

import os
import socket
import stat
import subprocess

import pytest

from airlift.bundle.store import BlobStore
from airlift.util.errors import IntegrityError
from tests.fast.conftest import sha256


def tmp_leftovers(store: BlobStore) -> list[str]:
    return sorted(p.name for p in store.tmp_dir.iterdir()) if store.tmp_dir.is_dir() else []


def test_put_stream_names_the_blob_by_its_sha256(store):
    chunks = [b"hello ", b"blob ", b"store"]
    blob = store.put_stream(chunks)
    data = b"".join(chunks)
    assert blob.sha256 == sha256(data) and blob.size == len(data)
    assert store.blob_path(blob.sha256) == store.root / "blobs" / "sha256" / sha256(data)
    assert store.blob_path(blob.sha256).read_bytes() == data
    assert store.has(blob.sha256) and store.has(blob.sha256, len(data)) and not store.has(blob.sha256, len(data) + 1)
    assert tmp_leftovers(store) == []


def test_same_content_is_stored_once(store):
    first = store.put_bytes(b"same bytes")
    second = store.put_stream([b"same ", b"bytes"])
    assert first == second
    assert [p.name for p in store.blobs_dir.iterdir()] == [first.sha256]


def test_expected_sha256_mismatch_raises_and_leaves_no_file(store):
    wrong = sha256(b"something else")
    with pytest.raises(IntegrityError, match=wrong):
        store.put_stream([b"actual bytes"], expected_sha256=wrong, label="files/x")
    assert not store.has(sha256(b"actual bytes")) and not store.has(wrong)
    assert list(store.blobs_dir.iterdir()) == []
    assert tmp_leftovers(store) == []


def test_expected_sha256_match_is_stored(store):
    blob = store.put_stream([b"pinned"], expected_sha256=sha256(b"pinned"))
    assert store.blob_path(blob.sha256).read_bytes() == b"pinned"


def test_blobs_are_read_only(store):
    blob = store.put_bytes(b"immutable")
    mode = stat.S_IMODE(store.blob_path(blob.sha256).stat().st_mode)
    assert mode & 0o222 == 0, oct(mode)


def test_blob_path_refuses_a_name_that_is_not_a_digest(store):
    for bad in ("../etc/passwd", "ABC", "0" * 63, "g" * 64):
        with pytest.raises(ValueError):
            store.blob_path(bad)


def test_partial_resumes_at_its_offset_and_commit_checks_the_digest(store):
    data = os.urandom(300_000)
    with store.partial("download-1") as part:
        assert part.offset == 0
        part.writer.write(data[:123_456])
    # A new process (or a retry) reopens the same partial and continues where the bytes end.
    with store.partial("download-1") as part:
        assert part.offset == 123_456
        part.writer.write(data[123_456:])
        blob = part.commit(expected_sha256=sha256(data), label="files/big")
    assert blob.sha256 == sha256(data) and blob.size == len(data)
    assert store.blob_path(blob.sha256).read_bytes() == data
    assert not (store.tmp_dir / "download-1.part").exists()


def test_partial_commit_with_a_wrong_digest_discards_the_bytes(store):
    with store.partial("download-2") as part:
        part.writer.write(b"corrupted download")
        with pytest.raises(IntegrityError):
            part.commit(expected_sha256=sha256(b"the real bytes"), label="files/x")
    assert list(store.blobs_dir.iterdir()) == []
    with store.partial("download-2") as part:
        assert part.offset == 0  # the next attempt starts over, not on top of bad bytes


def test_partial_rewind_restarts_the_hash(store):
    with store.partial("download-3") as part:
        part.writer.write(b"garbage that the server will resend")
        part.writer.seek(0)
        part.writer.truncate(0)
        part.writer.write(b"good")
        blob = part.commit(expected_sha256=sha256(b"good"))
    assert store.blob_path(blob.sha256).read_bytes() == b"good"


def test_sweep_stale_removes_a_dead_writers_temp_file_only(store):
    store.ensure_dirs()
    host = socket.gethostname().replace(".", "-")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = store.tmp_dir / f"{host}.{dead.pid}.abc123.tmp"
    live = store.tmp_dir / f"{host}.{os.getpid()}.def456.tmp"
    other_host = store.tmp_dir / f"elsewhere.{dead.pid}.ghi789.tmp"
    resumable = store.tmp_dir / "download-9.part"
    for path in (stale, live, other_host, resumable):
        path.write_bytes(b"partial")
    assert store.sweep_stale() == 1
    assert not stale.exists()
    assert live.exists() and other_host.exists() and resumable.exists()


def test_add_file_stores_a_local_file(store, tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"local file bytes")
    blob = store.add_file(source)
    assert blob.sha256 == sha256(b"local file bytes")
    assert store.blob_path(blob.sha256).read_bytes() == b"local file bytes"


def test_copy_blob_to_refuses_a_corrupt_source(store, tmp_path):
    blob = store.put_bytes(b"good bytes")
    path = store.blob_path(blob.sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"bad bytes!")
    other = BlobStore(tmp_path / "other")
    with pytest.raises(IntegrityError, match=blob.sha256):
        store.copy_blob_to(other, blob.sha256)
    assert not other.has(blob.sha256)

"""Content is the truth at every hop, in-process: copy-while-hashing of local files, verification stamps,
and what a directory transfer may count as already at DEST (the engine functions, without Prefect)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airlift.bundle import stamps
from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Lineage, Manifest, now_iso
from airlift.bundle.store import BlobStore
from airlift.transport.engine import transfer
from airlift.transport.local import DirEndpoint, check_dest
from airlift.transport.proof import prove_local
from airlift.util.errors import WorkError
from tests.fast.conftest import build_bundle, hf_model, make_writable, path_tree, sha256, url_file


def _rewrite_keeping_stamp(path: Path, data: bytes) -> None:
    """Change a file's bytes (same size) and put its mtime back: what bit rot or a careless tool looks like."""
    info = os.stat(path)
    make_writable(path)
    with open(path, "r+b") as handle:
        handle.write(data)
    os.chmod(path, info.st_mode & 0o777)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _transfer(src: Bundle, dest: Path, *, recheck: bool = False):
    return transfer(DirEndpoint(str(src.root)), DirEndpoint(str(dest)), recheck=recheck)


# -- add_file: a copy, hashed as it is written, refused when the source changes underneath ---------------
def test_add_file_copies_and_the_blob_is_independent_of_the_source(store, tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"A" * 300_000)
    blob = store.add_file(source)
    stored = store.blob_path(blob.sha256)
    assert os.stat(stored).st_ino != os.stat(source).st_ino
    assert stored.stat().st_mode & 0o777 == 0o444
    with open(source, "r+b") as handle:  # the user edits the live file in place
        handle.write(b"B" * 10)
    assert stored.read_bytes() == b"A" * 300_000 and blob.sha256 == sha256(b"A" * 300_000)


def test_add_file_replaces_a_blob_an_older_airlift_hard_linked_to_the_source(store, tmp_path):
    source = tmp_path / "data.bin"
    source.write_bytes(b"linked once\n")
    store.ensure_dirs()
    os.link(source, store.blob_path(sha256(b"linked once\n")))
    blob = store.add_file(source)
    assert os.stat(store.blob_path(blob.sha256)).st_ino != os.stat(source).st_ino


def test_add_file_retries_once_when_the_source_changes_during_the_copy(store, tmp_path):
    source = tmp_path / "growing.bin"
    source.write_bytes(b"x" * (3 << 20))
    edits = []

    def edit_once(_count: int) -> None:
        if not edits:  # the first chunk of the first attempt: someone appends to the file
            edits.append(1)
            with open(source, "ab") as handle:
                handle.write(b"tail")

    blob = store.add_file(source, on_bytes=edit_once)
    assert edits == [1]
    assert store.blob_path(blob.sha256).read_bytes() == b"x" * (3 << 20) + b"tail"
    assert not any(store.tmp_dir.glob("*.tmp"))


@pytest.mark.parametrize("change", ["touch", "rewrite in place", "replace by rename"])
def test_add_file_refuses_a_source_that_keeps_changing(store, tmp_path, change):
    source = tmp_path / "busy.bin"
    source.write_bytes(b"y" * (2 << 20))
    tick = [0]

    def meddle(_count: int) -> None:
        tick[0] += 1
        if change == "touch":
            os.utime(source, ns=(tick[0], tick[0]))
        elif change == "rewrite in place":
            with open(source, "r+b") as handle:
                handle.write(b"z")
            os.utime(source, ns=(tick[0], tick[0]))  # a distinct mtime even on a coarse clock
        else:
            fresh = tmp_path / f"fresh-{tick[0]}"
            fresh.write_bytes(b"y" * (2 << 20))
            os.replace(fresh, source)

    with pytest.raises(WorkError, match=r"busy\.bin: changed while it was being copied"):
        store.add_file(source, on_bytes=meddle)
    assert not any(store.blobs_dir.iterdir())
    assert not any(store.tmp_dir.glob("*.tmp"))


# -- stamps ------------------------------------------------------------------------------------------------
def test_stamps_record_only_what_still_matches_and_unreadable_files_count_as_empty(tmp_path):
    store = BlobStore(tmp_path / "b")
    one, two = store.put_bytes(b"one"), store.put_bytes(b"two")
    seen = stamps.snapshot(store.root, [one.sha256, two.sha256])
    os.utime(store.blob_path(two.sha256), ns=(1, 1))  # `two` changes after it was proven
    stamps.record(store.root, seen)
    assert set(stamps.read_stamps(store.root)) == {one.sha256}
    assert stamps.matching(store.root, [one.sha256, two.sha256]) == {one.sha256}
    stamp_file = store.root / stamps.STAMPS
    for junk in (b"not json", json.dumps({"schema_version": 1, "blobs": {"../x": [1, 2, 3, 4]}}).encode(), b"[]"):
        stamp_file.write_bytes(junk)
        assert stamps.read_stamps(store.root) == {}


def test_a_stamp_write_never_follows_a_symlink_out_of_the_bundle(tmp_path):
    store = BlobStore(tmp_path / "b")
    blob = store.put_bytes(b"content")
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / ".airlift").symlink_to(outside)
    stamps.record(store.root, stamps.snapshot(store.root, [blob.sha256]))  # best effort: refused quietly
    assert list(outside.iterdir()) == []


def test_a_matching_stamp_is_trusted_and_recheck_is_not_fooled(tmp_path):
    store = BlobStore(tmp_path / "dest")
    blob = store.put_bytes(b"good bytes")
    wanted = {blob.sha256: blob.size}
    first = prove_local(store.root, wanted)  # no stamp yet: rehashed, then stamped
    assert first.proven == {blob.sha256} and stamps.matching(store.root, [blob.sha256]) == {blob.sha256}
    _rewrite_keeping_stamp(store.blob_path(blob.sha256), b"evil bytes")
    assert prove_local(store.root, wanted).proven == {blob.sha256}  # the stamp vouches: no rehash
    rechecked = prove_local(store.root, wanted, recheck=True)
    assert rechecked.damaged == {blob.sha256} and not rechecked.proven
    assert (store.root / ".corrupt" / blob.sha256).read_bytes() == b"evil bytes"
    assert not store.has(blob.sha256)


def test_a_stamp_that_no_longer_matches_means_a_rehash(tmp_path):
    store = BlobStore(tmp_path / "dest")
    blob = store.put_bytes(b"0123456789")
    prove_local(store.root, {blob.sha256: blob.size})
    path = store.blob_path(blob.sha256)
    make_writable(path)
    path.write_bytes(b"9876543210")  # same size, new mtime
    proof = prove_local(store.root, {blob.sha256: blob.size})
    assert proof.damaged == {blob.sha256} and not proof.proven


# -- directory transfers -----------------------------------------------------------------------------------
def test_a_same_size_corruption_at_dest_is_resent_and_stamps_spare_the_rehash(tmp_path):
    src = build_bundle(tmp_path / "src", [hf_model(), url_file(), path_tree()])
    dest = tmp_path / "dest"
    first = _transfer(src.bundle, dest)
    assert first.blobs_sent == 6 and first.blobs_present == 0
    assert stamps.matching(dest, src.manifest.all_blobs()) == src.manifest.all_blobs()
    victim = Bundle(dest).store.blob_path(sha256(b"\x00weights" * 64))
    make_writable(victim)
    victim.write_bytes(b"\xff" * victim.stat().st_size)
    second = _transfer(src.bundle, dest)
    assert (second.blobs_sent, second.blobs_present, second.blobs_resent) == (1, 5, 1)
    assert "re-sent 1 damaged blobs" in second.summary()
    assert victim.read_bytes() == b"\x00weights" * 64
    _rewrite_keeping_stamp(victim, b"\xfe" * victim.stat().st_size)
    assert _transfer(src.bundle, dest).blobs_sent == 0  # a stamp is trusted until --recheck
    third = _transfer(src.bundle, dest, recheck=True)
    assert (third.blobs_sent, third.blobs_resent) == (1, 1) and victim.read_bytes() == b"\x00weights" * 64


def test_a_delta_transfers_to_a_fresh_directory_leaving_the_rest_to_its_lineage(tmp_path):
    drafts = [hf_model(), url_file(), path_tree()]
    old = build_bundle(tmp_path / "old", drafts, name="mirror")
    delta = build_bundle(tmp_path / "delta", drafts, name="mirror", store_only={"files/notes.txt"})
    lineage = Lineage(manifest_sha256=old.bundle.manifest_sha256(), name="mirror", created=old.manifest.created)
    delta.bundle.write_manifest(Manifest(name="mirror", created=now_iso(), since=lineage, artifacts=delta.manifest.artifacts))
    result = _transfer(delta.bundle, tmp_path / "dest")
    assert (result.blobs_sent, result.blobs_lent) == (1, 5)
    assert "5 blobs left to the lineage mirror" in result.summary()
    # The same bundle without its lineage recorded is incomplete, and DEST's check names what is missing.
    orphan = build_bundle(tmp_path / "orphan", drafts, store_only={"files/notes.txt"})
    with pytest.raises(WorkError, match=r"models/acme/tiny: config\.json: missing"):
        _transfer(orphan.bundle, tmp_path / "orphan-dest")
    with pytest.raises(WorkError, match="missing"):
        check_dest(Bundle(tmp_path / "dest"), proven=set(), lent=frozenset(), where="dest")

"""Hostile bundles, volume sets and shared_roots against the one guarded opener (util/confine.py).

Each test plants what issue 22 describes (a symlinked `.corrupt`, a FIFO blob, a blob linked to
/dev/zero, a FIFO marker or index.json, a swapped repos/x.git) and checks that the command finishes
within seconds, refuses it, and writes nothing outside. Special files are made for real.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import ManifestError
from airlift.bundle.receipt import write_receipt
from airlift.bundle.store import BlobStore
from airlift.bundle.verify import verify_bundle
from airlift.bundle.volumes import check_target_filesystem, pack, read_index, unpack
from airlift.ingest.sharedfs import materialize
from airlift.layouts.shared_root import load_marker, marker_path
from airlift.serve.catalog import Catalog
from airlift.serve.server import build_app
from airlift.transport.local import DirEndpoint
from airlift.util.confine import EscapeError, SpecialFileError, hash_regular, open_regular, read_regular
from airlift.util.errors import InputError, WorkError
from tests.fast.conftest import (
    build_bundle,
    git_repo_bundle,
    make_writable,
    serving,
    url_file,
)

DEADLINE = 10.0


def within(action: Callable[[], Any], seconds: float = DEADLINE) -> Any:
    """Run `action` in a thread; fail (instead of hanging the suite) if it has not finished in time."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = action()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: mkfifo is needed for the special-file tests")
        pytest.skip("no mkfifo here")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def replace_with(blob: Path, kind: str) -> None:
    """Swap a blob for a FIFO or a symlink to /dev/zero (what a hostile bundle can hold)."""
    make_writable(blob)
    blob.unlink()
    if kind == "fifo":
        fifo(blob)
    else:
        if not Path("/dev/zero").exists():
            pytest.fail("/dev/zero is needed for the special-file tests")
        blob.symlink_to("/dev/zero")


def one_file_bundle(tmp_path: Path, data: bytes = b"plain notes\n"):
    return build_bundle(tmp_path / "bundle", [url_file("notes.txt", data)])


# -- the opener itself ---------------------------------------------------------------------------
def test_the_opener_refuses_fifo_devices_symlinks_and_wrong_sizes_without_blocking(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok").write_bytes(b"12345")
    fifo(root / "pipe")
    (root / "zero").symlink_to("/dev/zero")
    (root / "sub").symlink_to(root)
    for name in ("pipe", "zero"):
        with pytest.raises(SpecialFileError):
            within(lambda name=name: open_regular(root, name))
    with pytest.raises(EscapeError):
        open_regular(root, "sub/ok")  # a symlinked directory on the way
    with pytest.raises(SpecialFileError) as info:
        open_regular(root, "ok", size=4)
    assert info.value.wrong_size
    with pytest.raises(SpecialFileError):
        read_regular(root, "ok", max_bytes=4)  # no declared size: the stated maximum applies
    assert read_regular(root, "ok", max_bytes=5) == b"12345"
    assert hash_regular(root / "ok", size=5) == "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5"


# -- 1. writes outside the bundle ----------------------------------------------------------------
def test_verify_does_not_move_a_corrupt_blob_through_a_planted_corrupt_symlink(tmp_path):
    built = one_file_bundle(tmp_path)
    outside = tmp_path / "cron.d"
    outside.mkdir()
    (built.root / ".corrupt").symlink_to(outside)
    blob = built.blob("files/notes.txt", "notes.txt")
    make_writable(blob)
    blob.write_bytes(b"Xlain notes\n")  # same size, attacker bytes
    report = within(lambda: verify_bundle(built.bundle))
    assert [p.reason for p in report.problems] == ["corrupt"]
    assert list(outside.iterdir()) == []  # nothing landed through the link
    assert report.quarantined == []


def test_receipts_do_not_follow_a_planted_receipts_symlink(tmp_path, monkeypatch):
    built = one_file_bundle(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (built.root / "receipts").symlink_to(outside)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    report = verify_bundle(built.bundle)
    json_path, _ = write_receipt(report)
    assert list(outside.iterdir()) == []
    assert json_path.parent == cwd.resolve()  # the next candidate, not the link


# -- 5. special files hang nothing and fill nothing ----------------------------------------------
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_verify_reports_a_special_blob_as_corrupt_within_seconds(tmp_path, kind):
    built = one_file_bundle(tmp_path)
    replace_with(built.blob("files/notes.txt", "notes.txt"), kind)
    report = within(lambda: verify_bundle(built.bundle))
    assert [(p.path, p.reason) for p in report.problems] == [("notes.txt", "corrupt")]


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_ingest_refuses_a_special_blob_within_seconds(tmp_path, kind):
    built = one_file_bundle(tmp_path)
    replace_with(built.blob("files/notes.txt", "notes.txt"), kind)
    artifact = built.manifest.artifacts[0]
    with pytest.raises(EscapeError):
        within(lambda: materialize(tmp_path / "shared", artifact, blob_path=built.bundle.store.blob_path))
    assert not (tmp_path / "shared" / "files" / "notes.txt").exists()


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_transfer_refuses_a_special_blob_instead_of_filling_the_disk(tmp_path, kind):
    built = one_file_bundle(tmp_path)
    blob = built.blob("files/notes.txt", "notes.txt")
    digest = blob.name
    replace_with(blob, kind)
    with pytest.raises(WorkError, match="refusing to send"):
        within(lambda: DirEndpoint(str(built.root)).list_blobs())
    with pytest.raises(EscapeError):
        within(lambda: DirEndpoint(str(tmp_path / "dest")).put_blobs(built.bundle, [digest]))
    assert not BlobStore(tmp_path / "dest").has(digest)


def test_a_blob_that_grows_is_never_copied_past_its_declared_size(tmp_path):
    built = one_file_bundle(tmp_path)
    blob = built.blob("files/notes.txt", "notes.txt")
    make_writable(blob)
    with open(blob, "ab") as handle:
        handle.write(b"\0" * (1 << 20))
    with pytest.raises(EscapeError):
        DirEndpoint(str(tmp_path / "dest")).put_blobs(built.bundle, [blob.name])
    with pytest.raises(EscapeError):
        materialize(tmp_path / "shared", built.manifest.artifacts[0], blob_path=built.bundle.store.blob_path)


def test_a_fifo_manifest_is_refused_not_waited_on(tmp_path):
    built = one_file_bundle(tmp_path)
    built.bundle.manifest_path.unlink()
    fifo(built.bundle.manifest_path)
    with pytest.raises(ManifestError, match="manifest.json"):
        within(lambda: Bundle(built.root).read_manifest())


def test_a_fifo_ingest_marker_does_not_stop_serve_from_opening(tmp_path):
    shared = tmp_path / "shared"
    built = one_file_bundle(tmp_path)
    artifact = built.manifest.artifacts[0]
    materialize(shared, artifact, blob_path=built.bundle.store.blob_path)
    planted = marker_path(shared, "files/planted")
    fifo(planted)
    assert within(lambda: load_marker(planted)) is None
    catalog = within(lambda: Catalog.open(shared))
    assert set(catalog.artifacts) == {"files/notes.txt"}


def test_unpack_refuses_a_fifo_index_and_a_special_volume_within_seconds(tmp_path):
    built = one_file_bundle(tmp_path, b"x" * 5000)
    volumes = tmp_path / "vols"
    pack(built.bundle, out=volumes, volume_size=4096)
    index = volumes / "index.json"
    saved = index.read_bytes()
    index.unlink()
    fifo(index)
    with pytest.raises(InputError, match="index.json"):
        within(lambda: read_index(volumes))
    index.unlink()
    index.write_bytes(saved)
    (volumes / "vol-00001.bin").unlink()
    (volumes / "vol-00001.bin").symlink_to("/dev/zero")
    result = within(lambda: unpack(volumes, tmp_path / "out"))
    assert result.corrupt_volumes == ["vol-00001.bin"] and result.lost_blobs


def test_pack_refuses_volumes_over_4_gib_on_fat_up_front(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sdb1 {tmp_path} vfat rw 0 0\n/dev/sda1 / ext4 rw 0 0\n")
    with pytest.raises(InputError, match="FAT"):
        check_target_filesystem(tmp_path / "out", 5 << 30, mounts)
    check_target_filesystem(tmp_path / "out", 4000 << 20, mounts)  # fits
    mounts.write_text(f"/dev/sdb1 {tmp_path} ext4 rw 0 0\n")
    check_target_filesystem(tmp_path / "out", 5 << 30, mounts)  # ext4 holds it


# -- 3. serve of a shared_root follows no link ----------------------------------------------------
def test_serve_does_not_follow_a_swapped_repos_symlink(tmp_path):
    shared = tmp_path / "shared"
    git, built = git_repo_bundle(tmp_path)
    materialize(shared, built.manifest.artifacts[0], blob_path=built.bundle.store.blob_path)
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "HEAD").write_text("outside the root\n")
    with serving(build_app(Catalog.open(shared))) as base:
        assert httpx.get(f"{base}/git/tool.git/HEAD").status_code == 200
        repo = shared / "repos" / "tool.git"
        shutil.rmtree(repo)
        repo.symlink_to(secret)
        response = httpx.get(f"{base}/git/tool.git/HEAD")
    assert response.status_code == 404 and b"outside" not in response.content


# -- 7. Range with huge numbers ---------------------------------------------------------------------
def test_a_range_of_5000_digits_is_416_not_500(tmp_path):
    built = one_file_bundle(tmp_path)
    with serving(build_app(Catalog.open(built.root))) as base:
        huge = httpx.get(f"{base}/files/files/notes.txt", headers={"Range": f"bytes={'9' * 5000}-"})
        tail = httpx.get(f"{base}/files/files/notes.txt", headers={"Range": f"bytes=-{'9' * 5000}"})
        fine = httpx.get(f"{base}/files/files/notes.txt", headers={"Range": "bytes=0-4"})
    assert huge.status_code == 416 and tail.status_code == 416
    assert fine.status_code == 206 and fine.content == b"plain"

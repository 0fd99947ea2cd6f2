"""Fixed-size volumes for removable media: round trips, and a lost or damaged volume costs only its blobs."""

from __future__ import annotations

import os

import pytest

from airlift.bundle.layout import Bundle
from airlift.bundle.verify import verify_bundle
from airlift.bundle.volumes import pack, parse_size, unpack
from airlift.util.errors import InputError
from tests.fast.conftest import build_bundle, path_tree, run, url_file

VOLUME = 64 * 1024


def blob_bytes(bundle: Bundle) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in bundle.store.blobs_dir.iterdir()}


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GiB", 4 << 30), ("700MB", 700_000_000), ("3MiB", 3 << 20), ("1.5GiB", 3 << 29), ("65536", 65536), ("64kib", 65536), ("2 TB", 2 * 10**12)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "big", "4 GiBs", "-1GiB", "1KiB", "4XB"])
def test_parse_size_refuses_nonsense_and_tiny_volumes(text):
    with pytest.raises(InputError, match="--volume-size"):
        parse_size(text)


def test_pack_unpack_round_trip_raw(tmp_path):
    big = os.urandom(200_000)  # spans several volumes
    built = build_bundle(tmp_path / "bundle", [url_file("big.bin", big), path_tree()])
    result = pack(built.bundle, out=tmp_path / "vols", volume_size=VOLUME)
    assert result.volumes == -(-result.bytes_out // VOLUME) and result.volumes >= 4
    assert result.compressed_blobs == 0 and result.bytes_in == result.bytes_out
    assert all((tmp_path / "vols" / f"vol-{n:05d}.bin").stat().st_size <= VOLUME for n in range(1, result.volumes + 1))
    run(["sha256sum", "-c", "--strict", "VOLUMES.SHA256SUMS"], cwd=tmp_path / "vols")

    restored = unpack(tmp_path / "vols", tmp_path / "restored")
    assert restored.ok and restored.recovered == len(built.manifest.all_blobs())
    again = Bundle(tmp_path / "restored")
    assert blob_bytes(again) == blob_bytes(built.bundle)
    assert verify_bundle(again).ok
    run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=tmp_path / "restored")


def test_pack_unpack_round_trip_zstd(tmp_path):
    text = b"the same line over and over\n" * 20_000
    noise = os.urandom(100_000)  # incompressible: stays raw
    built = build_bundle(tmp_path / "bundle", [url_file("log.txt", text), url_file("noise.bin", noise)])
    result = pack(built.bundle, out=tmp_path / "vols", volume_size=VOLUME, zstd=True)
    assert result.compressed_blobs == 1
    assert result.bytes_out < result.bytes_in // 2
    restored = unpack(tmp_path / "vols", tmp_path / "restored")
    assert restored.ok
    assert blob_bytes(Bundle(tmp_path / "restored")) == blob_bytes(built.bundle)


def test_unpack_again_is_a_no_op(tmp_path):
    built = build_bundle(tmp_path / "bundle", [path_tree()])
    pack(built.bundle, out=tmp_path / "vols", volume_size=VOLUME)
    unpack(tmp_path / "vols", tmp_path / "restored")
    second = unpack(tmp_path / "vols", tmp_path / "restored")
    assert second.ok and second.recovered == 0 and second.already == len(built.manifest.all_blobs())


def one_blob_per_volume(tmp_path):
    """Four artifacts of exactly one volume each (raw), so a volume holds exactly one blob."""
    drafts = [url_file(f"part{n}.bin", os.urandom(VOLUME)) for n in range(4)]
    built = build_bundle(tmp_path / "bundle", drafts)
    result = pack(built.bundle, out=tmp_path / "vols", volume_size=VOLUME)
    assert result.volumes == 4
    return built


def check_one_lost(tmp_path, built, result) -> None:
    """Exactly one artifact lost, named with its file; every other blob recovered intact."""
    assert not result.ok
    assert len(result.lost_blobs) == 1 and result.recovered == 3
    (lost_id, lost_paths), = result.lost_artifacts.items()
    assert lost_paths == [lost_id.removeprefix("files/")]
    restored = Bundle(tmp_path / "restored")
    report = verify_bundle(restored)
    assert {(p.artifact_id, p.path, p.reason) for p in report.problems} == {(lost_id, lost_paths[0], "missing")}
    for draft in built.drafts:
        if draft.id != lost_id:
            assert (restored.store.blob_path(built.blob(draft.id, draft.id.removeprefix("files/")).name).read_bytes()
                    == draft.files[draft.id.removeprefix("files/")])


def test_a_deleted_volume_is_named_and_the_rest_recovered(tmp_path):
    built = one_blob_per_volume(tmp_path)
    (tmp_path / "vols" / "vol-00002.bin").unlink()
    result = unpack(tmp_path / "vols", tmp_path / "restored")
    assert result.missing_volumes == ["vol-00002.bin"] and result.corrupt_volumes == []
    check_one_lost(tmp_path, built, result)


def test_a_corrupted_volume_is_named_and_the_rest_recovered(tmp_path):
    built = one_blob_per_volume(tmp_path)
    volume = tmp_path / "vols" / "vol-00003.bin"
    data = bytearray(volume.read_bytes())
    data[1000] ^= 0xFF
    volume.write_bytes(bytes(data))
    result = unpack(tmp_path / "vols", tmp_path / "restored")
    assert result.corrupt_volumes == ["vol-00003.bin"] and result.missing_volumes == []
    check_one_lost(tmp_path, built, result)


def test_unpack_of_a_directory_without_an_index_is_input_error(tmp_path):
    (tmp_path / "vols").mkdir()
    with pytest.raises(InputError, match="not a packed bundle"):
        unpack(tmp_path / "vols", tmp_path / "restored")

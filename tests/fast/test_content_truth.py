"""Content is the truth at every hop, in-process: copy-while-hashing of local files, verification stamps,
and what a directory transfer may count as already at DEST (the engine functions, without Prefect)."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from airlift.bundle import stamps
from airlift.bundle.checked import verify_and_stamp
from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Lineage, Manifest, now_iso
from airlift.bundle.store import BlobStore
from airlift.fetch.cache import Cache
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


# -- moved from tests/test_content_truth.py: they need no service, only the core's build and transfer ----------
def _core_build(spec: Path, out: Path, cache: Cache, *, since: Path | None = None) -> Bundle:
    """`airlift build SPEC --out OUT [--since OLD]` as the core calls the flow's tasks make, in a row."""
    from airlift.fetch.base import FetchContext
    from airlift.fetch.bundle_writer import assemble_bundle
    from airlift.fetch.kinds import fetch_resolved, resolve_entry
    from airlift.fetch.prepare import prepare_build

    parsed = prepare_build(spec, since)
    ctx = FetchContext(cache=cache)
    ids = parsed.artifact_ids()
    resolved = [resolve_entry(e, artifact_id=i, ctx=ctx) for i, (_, e) in zip(ids, parsed.entries(), strict=True)]
    artifacts = [fetch_resolved(r, ctx) for r in resolved]
    assemble_bundle(spec=parsed, artifacts=artifacts, out=out, cache=cache, since=since)
    return Bundle(out)


def _damage(path: Path, *, keep_mtime: bool = False) -> None:
    """Overwrite a blob's bytes in place, same size; optionally put its mtime back (what bit rot looks like)."""
    info = path.stat()
    make_writable(path)
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    os.chmod(path, info.st_mode & 0o777)
    if keep_mtime:
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _delta_pair(tmp_path: Path, name: str, *, seed: int) -> dict[str, bytes]:
    """Bundles v1 and v2 (a delta since v1 carrying only the changed config.json); returns v2's files."""
    base = {"config.json": b'{"v": 1}\n', "model.safetensors": random.Random(seed).randbytes(900_000), "tokenizer.json": b"{}\n"}
    source = tmp_path / name
    source.mkdir()
    for path, data in base.items():
        (source / path).write_bytes(data)
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"name: {name}\ndatasets:\n  - path: {source}\n")
    cache = Cache(tmp_path / "cache")
    _core_build(spec, tmp_path / "v1", cache)
    changed = {**base, "config.json": b'{"v": 2}\n'}
    (source / "config.json").write_bytes(changed["config.json"])
    _core_build(spec, tmp_path / "v2", cache, since=tmp_path / "v1")
    evidence = json.loads((tmp_path / "v2" / "manifest.json").read_text())["evidence"]  # the delta's own SBOM and provenance
    carried = [p for p in (tmp_path / "v2" / "blobs" / "sha256").iterdir() if p.name not in (evidence["sbom_sha256"], evidence["provenance_sha256"])]
    assert len(carried) == 1
    return changed


def _verified(bundle: Path, *, store: Path | None = None, ok: bool = True) -> str:
    """`airlift verify` as its core call; the BROKEN lines it would print."""
    report = verify_and_stamp(bundle, store=store)
    assert report.ok is ok, [p.describe() for p in report.problems]
    return "\n".join(p.describe() for p in report.problems)


def test_editing_a_path_source_after_the_build_leaves_the_bundle_whole(tmp_path):
    src = tmp_path / "run7"
    src.mkdir()
    original = random.Random(901).randbytes(700_000)
    (src / "weights.bin").write_bytes(original)
    (src / "notes.txt").write_text("epoch 7\n")
    (tmp_path / "p.yaml").write_text(f"name: p\ndatasets:\n  - path: {src}\n")
    _core_build(tmp_path / "p.yaml", tmp_path / "bundle", Cache(tmp_path / "cache"))
    with open(src / "weights.bin", "r+b") as handle:  # the user keeps working on the live file
        handle.seek(1000)
        handle.write(b"\x00" * 64)
    _verified(tmp_path / "bundle")
    # verify stamped what it rehashed, so a transfer into this directory need not hash it again.
    assert sha256(original) in stamps.matching(tmp_path / "bundle", [sha256(original)])
    for store in (tmp_path / "cache", tmp_path / "bundle"):
        blob = store / "blobs" / "sha256" / sha256(original)
        assert blob.read_bytes() == original
        assert blob.stat().st_mode & 0o777 == 0o444
        assert blob.stat().st_ino != (src / "weights.bin").stat().st_ino


def test_a_same_size_corruption_at_a_dir_dest_is_repaired(tmp_path):
    model = hf_model("acme/truth-model", {
        "config.json": b'{"architectures": ["TinyForCausalLM"], "hidden_size": 64}\n', "tokenizer.json": b'{"version": "1.0"}\n',
        "model.safetensors": random.Random(911).randbytes(1_200_000), "nested/dir/notes.txt": b"generated for airlift tests\n",
    })
    src = build_bundle(tmp_path / "bundle", [model])
    _transfer(src.bundle, tmp_path / "dest")
    victim = max((tmp_path / "dest" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    good = victim.read_bytes()

    _damage(victim)
    repaired = _transfer(src.bundle, tmp_path / "dest")
    assert (repaired.blobs_sent, repaired.blobs_present, repaired.blobs_resent) == (1, 3, 1), repaired
    assert victim.read_bytes() == good
    assert (tmp_path / "dest" / ".corrupt" / victim.name).exists()

    # Bytes changed behind the filesystem's back (mtime put back) escape the stamp: --recheck rehashes all.
    _damage(victim, keep_mtime=True)
    rechecked = _transfer(src.bundle, tmp_path / "dest", recheck=True)
    assert rechecked.blobs_resent == 1, rechecked
    assert victim.read_bytes() == good
    sums = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=tmp_path / "dest", capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    _verified(tmp_path / "dest")


def test_a_delta_transfers_to_a_fresh_directory(tmp_path):  # 3 sent: config.json and the delta's own SBOM and provenance
    _delta_pair(tmp_path, "truth-delta", seed=921)
    out = _transfer(Bundle(tmp_path / "v2"), tmp_path / "fresh")
    assert (out.blobs_sent, out.blobs_lent) == (3, 2) and out.lineage and out.lineage.startswith("truth-delta"), out
    assert "2 blobs left to the lineage truth-delta" in out.summary()
    _verified(tmp_path / "fresh", store=tmp_path / "v1")
    alone = _verified(tmp_path / "fresh", ok=False)
    assert "model.safetensors: missing" in alone and "tokenizer.json: missing" in alone


def test_transfer_sends_only_missing_blobs_and_verifies(tmp_path):
    """Moved from tests/test_transfer_ingest.py (a directory DEST needs no service); fields as `--json` prints them."""
    model = hf_model("acme/xfer-model", {
        "config.json": b'{"architectures": ["TinyForCausalLM"]}\n', "tokenizer.json": b'{"version": "1.0"}\n',
        "model.safetensors": random.Random(21).randbytes(800_000), "nested/dir/notes.txt": b"generated\n",
    })
    src = build_bundle(tmp_path / "bundle", [model])
    first = _transfer(src.bundle, tmp_path / "dest").model_dump(mode="json")
    assert first["blobs_sent"] == 4  # returned only once DEST verified
    sums = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=tmp_path / "dest", capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert (tmp_path / "dest" / "manifest.json").read_bytes() == (tmp_path / "bundle" / "manifest.json").read_bytes()

    second = _transfer(src.bundle, tmp_path / "dest").model_dump(mode="json")
    assert (second["blobs_sent"], second["bytes_sent"], second["blobs_present"]) == (0, 0, 4)

    # A blob lost at DEST is the only one sent again.
    victim = next((tmp_path / "dest" / "blobs" / "sha256").iterdir())
    victim_size = victim.stat().st_size
    victim.unlink()
    third = _transfer(src.bundle, tmp_path / "dest").model_dump(mode="json")
    assert (third["blobs_sent"], third["blobs_present"]) == (1, 3)
    assert third["bytes_sent"] == victim_size and sum(a["blobs_sent"] for a in third["artifacts"].values()) == 1
    _verified(tmp_path / "dest")

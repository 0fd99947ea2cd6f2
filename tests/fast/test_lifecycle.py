"""A bundle's life after the build, in-process: volumes for removable media, deltas, signatures and receipts.

Moved from tests/test_transport.py and tests/test_reliability.py (they need no service): the core calls
the flows make, and the CLI in-process where it refuses input before any flow.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path

import pytest

from airlift.bundle.checked import verify_and_stamp
from airlift.bundle.layout import Bundle
from airlift.bundle.receipt import write_receipt
from airlift.bundle.signing import keygen, sign, trusted_manifest
from airlift.bundle.volumes import pack, unpack
from airlift.util.errors import WorkError
from tests.fast.conftest import build_bundle, hf_model, path_tree, run_cli


def _random(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _problems(report) -> str:  # noqa: ANN001 - a VerifyReport
    return "\n".join(p.describe() for p in report.problems)


def test_pack_unpack_names_damage_and_recovers_the_rest(tmp_path: Path) -> None:
    text = b"the quick brown fox jumps over the lazy dog\n" * 60_000
    model = hf_model("acme/pack-model", {"config.json": b'{"a": 1}\n', "model.safetensors": _random(7_000_000, 121), "tokenizer.json": b"{}\n"})
    data = path_tree("pack-text", {"corpus.txt": text, "more.bin": _random(2_500_000, 122)})
    built = build_bundle(tmp_path / "bundle", [model, data])
    result = pack(built.bundle, out=tmp_path / "vols", volume_size=3 << 20, zstd=True)
    assert result.compressed_blobs == 1, result  # the text compresses; weights and random data are left alone
    vols = sorted((tmp_path / "vols").glob("vol-*.bin"))
    assert len(vols) >= 3 and all(v.stat().st_size <= 3 << 20 for v in vols)
    check = subprocess.run(["sha256sum", "--quiet", "-c", "VOLUMES.SHA256SUMS"], cwd=tmp_path / "vols", capture_output=True)
    assert check.returncode == 0

    assert unpack(tmp_path / "vols", tmp_path / "whole").ok
    assert verify_and_stamp(tmp_path / "whole").ok

    index = json.loads((tmp_path / "vols" / "index.json").read_text())
    volumes = [v["name"] for v in index["volumes"]]

    def survivors(pair: tuple[int, int]) -> int:
        return sum(1 for b in index["blobs"].values() if not any(v in pair for v, _, _ in b["segments"]))

    # Damage two volumes that leave some blobs whole, so recovery of the rest is what is tested.
    pair = next((i, j) for i in range(len(volumes)) for j in range(len(volumes)) if i != j and survivors((i, j)))
    deleted, corrupted = volumes[pair[0]], volumes[pair[1]]
    (tmp_path / "vols" / deleted).unlink()
    with open(tmp_path / "vols" / corrupted, "r+b") as handle:
        handle.seek(10)
        handle.write(b"\xff\xfe")
    damaged = unpack(tmp_path / "vols", tmp_path / "damaged")
    assert not damaged.ok and damaged.missing_volumes == [deleted] and damaged.corrupt_volumes == [corrupted]
    touched = {d for d, b in index["blobs"].items() if any(volumes[v] in (deleted, corrupted) for v, _, _ in b["segments"])}
    intact = set(index["blobs"]) - touched
    assert intact, "the damage should leave some blobs whole"
    store = tmp_path / "damaged" / "blobs" / "sha256"
    assert {p.name for p in store.iterdir()} == intact
    assert damaged.recovered == len(intact)
    assert damaged.lost_blobs and damaged.lost_artifacts  # what `unpack` prints as LOST


def test_delta_bundle_holds_only_changed_blobs(tmp_path: Path) -> None:
    from airlift.fetch.cache import Cache
    from tests.fast.test_content_truth import _core_build

    base = {"config.json": b'{"v": 1}\n', "model.safetensors": _random(1_500_000, 131), "tokenizer.json": b"{}\n"}
    source = tmp_path / "delta-model"
    source.mkdir()
    for name, data in base.items():
        (source / name).write_bytes(data)
    spec = tmp_path / "delta.yaml"
    spec.write_text(f"name: delta\ndatasets:\n  - path: {source}\n")
    cache = Cache(tmp_path / "cache")
    _core_build(spec, tmp_path / "v1", cache)
    (source / "config.json").write_bytes(b'{"v": 2}\n')
    _core_build(spec, tmp_path / "v2", cache, since=tmp_path / "v1")
    manifest = json.loads((tmp_path / "v2" / "manifest.json").read_text())
    evidence = {manifest["evidence"]["sbom_sha256"], manifest["evidence"]["provenance_sha256"]}  # each bundle's own
    new_blobs = [p for p in (tmp_path / "v2" / "blobs" / "sha256").iterdir() if p.name not in evidence]
    assert len(new_blobs) == 1 and new_blobs[0].read_bytes() == b'{"v": 2}\n'
    assert manifest["since"]["manifest_sha256"] == hashlib.sha256((tmp_path / "v1" / "manifest.json").read_bytes()).hexdigest()
    assert manifest["since"]["name"] == "delta"
    assert len(manifest["artifacts"][0]["files"]) == 3  # the manifest is complete
    missing = _problems(verify_and_stamp(tmp_path / "v2"))
    assert "model.safetensors: missing" in missing and "tokenizer.json: missing" in missing
    assert verify_and_stamp(tmp_path / "v2", store=tmp_path / "v1").ok


def test_signature_refuses_a_tampered_manifest_and_receipt_records_the_check(tmp_path: Path, cli_env: None) -> None:
    model = hf_model("acme/signed-model", {"config.json": b'{"a": 1}\n', "model.safetensors": _random(200_000, 141)})
    data = path_tree("signed-data", {"train.bin": _random(50_000, 142)})
    built = build_bundle(tmp_path / "bundle", [model, data], name="signed")
    (tmp_path / "keys").mkdir()
    keygen(tmp_path / "keys" / "site")
    assert oct((tmp_path / "keys" / "site.key").stat().st_mode & 0o777) == "0o600"
    sign(built.bundle, tmp_path / "keys" / "site.key")
    report = verify_and_stamp(built.root, opened=trusted_manifest(built.bundle, [tmp_path / "keys" / "site.pub"]))
    assert report.signature.startswith("valid")
    report.receipt = [str(p) for p in write_receipt(report, tmp_path / "receipts")]
    receipt = json.loads(next((tmp_path / "receipts").glob("*.json")).read_text())
    assert receipt["ok"] is True and receipt["signature"].startswith("valid")
    assert {a["id"] for a in receipt["artifacts"]} == {"models/acme/signed-model", "files/signed-data"}
    assert all(a["files"] > 0 and a["bytes"] > 0 for a in receipt["artifacts"])
    assert receipt["host"] and receipt["checked_at"] and len(receipt["manifest_sha256"]) == 64
    assert next((tmp_path / "receipts").glob("*.md")).read_text().startswith("# Verification receipt: PASSED")

    keygen(tmp_path / "keys" / "other")
    wrong = run_cli("verify", "bundle", "--pubkey", "keys/other.pub")  # refused before any flow: in-process
    assert wrong.returncode == 1 and "does not match its signature" in wrong.stderr
    manifest = tmp_path / "bundle" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"name": "signed"', '"name": "evil"'))
    tampered = run_cli("verify", "bundle", "--pubkey", "keys/site.pub")
    assert tampered.returncode == 1
    assert "does not match its signature" in tampered.stderr and "Traceback" not in tampered.stderr
    with pytest.raises(WorkError, match="does not match its signature"):
        trusted_manifest(Bundle(tmp_path / "bundle"), [tmp_path / "keys" / "site.pub"])


def test_hostile_volume_index_and_symlinked_blob(tmp_path: Path, cli_env: None) -> None:
    model = hf_model("acme/hostile-model", {"config.json": b'{"a": 1}\n', "model.safetensors": _random(200_000, 801)})
    built = build_bundle(tmp_path / "bundle", [model])
    pack(built.bundle, out=tmp_path / "vols", volume_size=64 << 10)
    index_path = tmp_path / "vols" / "index.json"
    original = index_path.read_text()
    for mutate in (
        lambda i: i["volumes"][0].update(name="../../escape.bin"),
        lambda i: next(iter(i["blobs"].values()))["segments"][0].__setitem__(2, 1 << 40),
        lambda i: i["blobs"].update({"../../etc": {"size": 1, "codec": "raw", "segments": [[0, 0, 1]]}}),
    ):
        index = json.loads(original)
        mutate(index)
        index_path.write_text(json.dumps(index))
        result = run_cli("unpack", "vols", "--out", "out")  # refused before any flow: in-process
        assert result.returncode == 2, result.stderr
        assert "invalid index" in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape.bin").exists()
    outside = tmp_path / "outside-secret.txt"
    outside.write_text("not a blob")
    victim = next((tmp_path / "bundle" / "blobs" / "sha256").iterdir())
    victim.unlink()
    victim.symlink_to(outside)
    report = verify_and_stamp(tmp_path / "bundle")
    printed = _problems(report) + "\n" + "\n".join(report.quarantined)  # what `airlift verify` prints: BROKEN and moved-aside lines
    assert not report.ok and "corrupt" in printed
    assert outside.read_text() == "not a blob", "verify must never write through a symlink"

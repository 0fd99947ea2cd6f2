"""Transfer over S3 and ssh, volumes for removable media, delta bundles, signatures and receipts."""

from __future__ import annotations

import json
import signal
import time
import uuid

import boto3

from tests.conftest import sha256sum_check
from tests.fixtures import add_dataset, add_model, pseudo_random
from tests.proxy import CountingProxy

SSH_OPTS = ("--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null", "--ssh-option", "LogLevel=ERROR")


def _bundle(ws, hub, name: str, *, seed: int, weights: int = 1_000_000) -> str:
    add_model(hub, f"acme/{name}-model", weights_size=weights, seed=seed)
    add_dataset(hub, f"acme/{name}-data", seed=seed + 1)
    spec = ws.write(f"{name}.yaml", f"name: {name}\nmodels:\n  - hf: acme/{name}-model\ndatasets:\n  - hf: acme/{name}-data\n")
    ws.run("build", str(spec), "--out", "bundle")
    return str(spec)


def test_s3_round_trip_and_second_transfer_sends_nothing(ws, hub, s3_endpoint):
    _bundle(ws, hub, "s3rt", seed=101)
    proxy = CountingProxy(s3_endpoint.removeprefix("http://")).start()
    dest = f"s3://airlift-{uuid.uuid4().hex[:10]}/drop/bundle"
    try:
        ws.run("transfer", "bundle", "--to", dest, "--s3-endpoint", f"http://{proxy.address}")
        puts = sum(n for k, n in proxy.requests.items() if k.startswith("PUT"))
        assert puts >= 8 + 2, proxy.requests  # 8 blobs + SHA256SUMS + manifest.json (+ bucket creation)
        proxy.reset()
        again = ws.run("transfer", "bundle", "--to", dest, "--s3-endpoint", f"http://{proxy.address}").stdout
        assert "0 blobs (0 B) sent" in again
        assert sum(n for k, n in proxy.requests.items() if k.startswith(("PUT", "POST"))) == 0, proxy.requests
        assert proxy.bytes_in == 0
    finally:
        proxy.stop()
    # An air-gapped site pulls from its S3 drop zone into a directory.
    ws.run("transfer", dest, "--to", "pulled", "--s3-endpoint", s3_endpoint)
    assert (ws.root / "pulled" / "manifest.json").read_bytes() == (ws.root / "bundle" / "manifest.json").read_bytes()
    ws.run("verify", "pulled")
    assert sha256sum_check(ws.root / "pulled").returncode == 0


def test_s3_transfer_killed_midway_resumes_without_resending(ws, hub, s3_endpoint):
    files = {f"shard-{i:02d}.bin": pseudo_random(700_000, 300 + i) for i in range(12)}
    hub.add_repo("dataset", "acme/kill-s3", files=files)
    spec = ws.write("ks3.yaml", "name: ks3\ndatasets:\n  - hf: acme/kill-s3\n")
    ws.run("build", str(spec), "--out", "bundle")
    bucket = f"airlift-{uuid.uuid4().hex[:10]}"
    proxy = CountingProxy(s3_endpoint.removeprefix("http://")).start()
    proxy.bytes_per_second = 1_500_000
    try:
        proc = ws.popen("transfer", "bundle", "--to", f"s3://{bucket}/b", "--s3-endpoint", f"http://{proxy.address}")
        deadline = time.monotonic() + 120
        while proxy.bytes_in < 4_000_000 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(1)
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
        done = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
        assert 0 < len(done) < 14, f"kill point missed: {len(done)} objects"  # 12 shards + the SBOM and provenance blobs
        proxy.bytes_per_second = None
        proxy.reset()
        ws.run("transfer", "bundle", "--to", f"s3://{bucket}/b", "--s3-endpoint", f"http://{proxy.address}")
        blob_puts = proxy.requests["PUT blob"] + proxy.requests["PUT other"] - 4  # minus SHA256SUMS, manifest, oci-layout, index.json
        assert blob_puts <= 14 - len(done), f"re-sent completed blobs: {proxy.requests} with {len(done)} already there"
    finally:
        proxy.stop()
    ws.run("transfer", f"s3://{bucket}/b", "--to", "back", "--s3-endpoint", s3_endpoint)
    ws.run("verify", "back")


def test_ssh_round_trip(ws, hub, services):
    _bundle(ws, hub, "sshrt", seed=111)
    url, key = services.get("AIRLIFT_SSH_URL"), services.get("AIRLIFT_SSH_KEY")
    if not url:
        from tests.conftest import need

        need("sshd", "no endpoint recorded")
    remote = f"{url}{ws.root}/remote-bundle"
    first = ws.run("transfer", "bundle", "--to", remote, "--ssh-key", key, *SSH_OPTS).stdout
    assert "10 blobs" in first and "verified" in first  # 8 of the artifacts + the SBOM and provenance blobs
    assert sha256sum_check(ws.root / "remote-bundle").returncode == 0
    second = ws.run("transfer", "bundle", "--to", remote, "--ssh-key", key, *SSH_OPTS).stdout
    assert "0 blobs (0 B) sent, 10 already there" in second
    ws.run("transfer", remote, "--to", "back", "--ssh-key", key, *SSH_OPTS)
    ws.run("verify", "back")


def test_pack_unpack_names_damage_and_recovers_the_rest(ws, hub):
    add_model(hub, "acme/pack-model", weights_size=7_000_000, seed=121)
    text = ("the quick brown fox jumps over the lazy dog\n" * 60_000).encode()
    hub.add_repo("dataset", "acme/pack-text", files={"corpus.txt": text, "more.bin": pseudo_random(2_500_000, 122)}, lfs={"corpus.txt", "more.bin"})
    spec = ws.write("pack.yaml", "name: pack\nmodels:\n  - hf: acme/pack-model\ndatasets:\n  - hf: acme/pack-text\n")
    ws.run("build", str(spec), "--out", "bundle")
    out = ws.run("pack", "bundle", "--out", "vols", "--volume-size", "3MiB", "--zstd").stdout
    assert "2 blobs compressed" in out, out  # the text and the SBOM compress; weights and random data are left alone
    vols = sorted((ws.root / "vols").glob("vol-*.bin"))
    assert len(vols) >= 3 and all(v.stat().st_size <= 3 << 20 for v in vols)
    check = __import__("subprocess").run(["sha256sum", "--quiet", "-c", "VOLUMES.SHA256SUMS"], cwd=ws.root / "vols", capture_output=True)
    assert check.returncode == 0

    ws.run("unpack", "vols", "--out", "whole")
    ws.run("verify", "whole")

    index = json.loads((ws.root / "vols" / "index.json").read_text())
    volumes = [v["name"] for v in index["volumes"]]

    def survivors(pair: tuple[int, int]) -> int:
        return sum(1 for b in index["blobs"].values() if not any(v in pair for v, _, _ in b["segments"]))

    # Damage two volumes that leave some blobs whole, so recovery of the rest is what is tested.
    pair = next((i, j) for i in range(len(volumes)) for j in range(len(volumes)) if i != j and survivors((i, j)))
    deleted, corrupted = volumes[pair[0]], volumes[pair[1]]
    (ws.root / "vols" / deleted).unlink()
    with open(ws.root / "vols" / corrupted, "r+b") as handle:
        handle.seek(10)
        handle.write(b"\xff\xfe")
    result = ws.run("unpack", "vols", "--out", "damaged", expect=1)
    assert f"MISSING volume {deleted}" in result.stdout and f"CORRUPT volume {corrupted}" in result.stdout
    touched = {d for d, b in index["blobs"].items() if any(volumes[v] in (deleted, corrupted) for v, _, _ in b["segments"])}
    intact = set(index["blobs"]) - touched
    assert intact, "the damage should leave some blobs whole"
    store = ws.root / "damaged" / "blobs" / "sha256"
    assert {p.name for p in store.iterdir()} == intact
    assert f"{len(intact)} blobs recovered" in result.stdout
    assert "LOST" in result.stdout


def test_delta_bundle_holds_only_changed_blobs(ws, hub):
    base = {"config.json": b'{"v": 1}\n', "model.safetensors": pseudo_random(1_500_000, 131), "tokenizer.json": b"{}\n"}
    hub.add_repo("model", "acme/delta-model", files=base)
    spec = ws.write("delta.yaml", "name: delta\nmodels:\n  - hf: acme/delta-model\n")
    ws.run("build", str(spec), "--out", "v1")
    hub.add_repo("model", "acme/delta-model", files={**base, "config.json": b'{"v": 2}\n'})
    out = ws.run("build", str(spec), "--out", "v2", "--since", "v1").stdout
    assert "delta since v1" in out
    manifest = json.loads((ws.root / "v2" / "manifest.json").read_text())
    evidence = {manifest["evidence"]["sbom_sha256"], manifest["evidence"]["provenance_sha256"]}  # each bundle's own
    new_blobs = [p for p in (ws.root / "v2" / "blobs" / "sha256").iterdir() if p.name not in evidence]
    assert len(new_blobs) == 1 and new_blobs[0].read_bytes() == b'{"v": 2}\n'
    import hashlib

    assert manifest["since"]["manifest_sha256"] == hashlib.sha256((ws.root / "v1" / "manifest.json").read_bytes()).hexdigest()
    assert len(manifest["artifacts"][0]["files"]) == 3  # the manifest is complete
    missing = ws.run("verify", "v2", expect=1).stdout
    assert "model.safetensors: missing" in missing and "tokenizer.json: missing" in missing
    assert "OK" in ws.run("verify", "v2", "--store", "v1").stdout


def test_signature_refuses_a_tampered_manifest_and_receipt_records_the_check(ws, hub):
    _bundle(ws, hub, "signed", seed=141, weights=200_000)
    ws.run("keygen", "--out", "keys/site")
    assert oct((ws.root / "keys" / "site.key").stat().st_mode & 0o777) == "0o600"
    ws.run("sign", "bundle", "--key", "keys/site.key")
    ok = ws.run("verify", "bundle", "--pubkey", "keys/site.pub", "--receipt", "receipts").stdout
    assert "signature: valid" in ok
    receipt = json.loads(next((ws.root / "receipts").glob("*.json")).read_text())
    assert receipt["ok"] is True and receipt["signature"].startswith("valid")
    assert {a["id"] for a in receipt["artifacts"]} == {"models/acme/signed-model", "datasets/acme/signed-data"}
    assert all(a["files"] > 0 and a["bytes"] > 0 for a in receipt["artifacts"])
    assert receipt["host"] and receipt["checked_at"] and len(receipt["manifest_sha256"]) == 64
    assert next((ws.root / "receipts").glob("*.md")).read_text().startswith("# Verification receipt: PASSED")

    ws.run("keygen", "--out", "keys/other")
    wrong = ws.run("verify", "bundle", "--pubkey", "keys/other.pub", expect=1)
    assert "does not match its signature" in wrong.stderr
    manifest = ws.root / "bundle" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"name": "signed"', '"name": "evil"'))
    tampered = ws.run("verify", "bundle", "--pubkey", "keys/site.pub", expect=1)
    assert "does not match its signature" in tampered.stderr and "Traceback" not in tampered.stderr

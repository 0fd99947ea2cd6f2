"""Transfer over S3 and ssh against the real services. (Volumes, deltas, signatures and receipts need no service: tests/fast/test_lifecycle.py.)"""

from __future__ import annotations

import signal
import time
import uuid

import boto3

from tests.conftest import sha256sum_check, verified
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
        assert puts >= 10 + 6, proxy.requests  # 8 content + 2 evidence blobs + 6 top-level files (+ bucket creation)
        proxy.reset()
        again = ws.json("transfer", "bundle", "--to", dest, "--s3-endpoint", f"http://{proxy.address}")
        assert (again["blobs_sent"], again["bytes_sent"]) == (0, 0), again
        assert sum(n for k, n in proxy.requests.items() if k.startswith(("PUT", "POST"))) == 0, proxy.requests
        assert proxy.bytes_in == 0
    finally:
        proxy.stop()
    # An air-gapped site pulls from its S3 drop zone into a directory.
    ws.run("transfer", dest, "--to", "pulled", "--s3-endpoint", s3_endpoint)
    assert (ws.root / "pulled" / "manifest.json").read_bytes() == (ws.root / "bundle" / "manifest.json").read_bytes()
    verified(ws.root / "pulled")
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
        blob_puts = proxy.requests["PUT blob"] + proxy.requests["PUT other"] - 6  # minus SHA256SUMS, manifest, oci-layout, index.json, sbom.cdx.json, provenance.json
        assert blob_puts <= 14 - len(done), f"re-sent completed blobs: {proxy.requests} with {len(done)} already there"
    finally:
        proxy.stop()
    ws.run("transfer", f"s3://{bucket}/b", "--to", "back", "--s3-endpoint", s3_endpoint)
    verified(ws.root / "back")


def test_ssh_round_trip(ws, hub, services):
    _bundle(ws, hub, "sshrt", seed=111)
    url, key = services.get("AIRLIFT_SSH_URL"), services.get("AIRLIFT_SSH_KEY")
    if not url:
        from tests.conftest import need

        need("sshd", "no endpoint recorded")
    remote = f"{url}{ws.root}/remote-bundle"
    first = ws.json("transfer", "bundle", "--to", remote, "--ssh-key", key, *SSH_OPTS)
    assert first["blobs_sent"] == 10 and first["ok"] is True, first
    assert sha256sum_check(ws.root / "remote-bundle").returncode == 0
    second = ws.json("transfer", "bundle", "--to", remote, "--ssh-key", key, *SSH_OPTS)
    assert (second["blobs_sent"], second["bytes_sent"], second["blobs_present"]) == (0, 0, 10), second
    ws.run("transfer", remote, "--to", "back", "--ssh-key", key, *SSH_OPTS)
    verified(ws.root / "back")

"""Container images end to end against the real engine and both registries, checked with skopeo."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import uuid

import pytest

from tests.conftest import resumable_bytes, verified
from tests.images import build, docker, skopeo_digest, skopeo_inspect
from tests.proxy import CountingProxy


@pytest.fixture(scope="session")
def big_image(upstream, tmp_path_factory):
    """An image with one 40 MiB incompressible layer, for kill-mid-layer tests."""
    tag = f"{upstream.registry}/airlift-fixtures/big:1"
    build(upstream.docker_host, tag, "FROM airlift-test/busybox:base\nCOPY big.bin /big.bin\n",
          {"big.bin": random.Random(5).randbytes(40 << 20)}, tmp_path_factory.mktemp("big"))
    docker(upstream.docker_host, "push", tag)
    return tag


def _env(upstream) -> dict[str, str]:
    return {"DOCKER_HOST": upstream.docker_host}


def _manifest(ws, bundle: str = "bundle") -> dict:
    return json.loads((ws.root / bundle / "manifest.json").read_text())


def test_registry_images_keep_digests_and_share_layers(ws, upstream):
    spec = ws.write("img.yaml", f"name: img\nimages:\n  - {upstream.app_a}\n  - {upstream.app_b}\n")
    ws.run("build", str(spec), "--out", "bundle", extra_env=_env(upstream))
    images = {a["id"]: a["image"] for a in _manifest(ws)["artifacts"]}
    a, b = images[f"images/{upstream.app_a}"], images[f"images/{upstream.app_b}"]
    assert a["digest"] == skopeo_digest(upstream.app_a)
    assert b["digest"] == skopeo_digest(upstream.app_b)
    shared = set(a["layers"]) & set(b["layers"])
    assert shared, "the two images should share their base layers"
    blob_dir = ws.root / "bundle" / "blobs" / "sha256"
    for layer in shared:
        assert (blob_dir / layer.removeprefix("sha256:")).exists()
    bundle_bytes = sum(p.stat().st_size for p in blob_dir.iterdir())
    saved = sum(len(subprocess.run(["docker", "-H", upstream.docker_host, "save", ref], capture_output=True, check=True).stdout)
                for ref in (upstream.app_a, upstream.app_b))
    assert bundle_bytes < 0.75 * saved, f"bundle {bundle_bytes} B vs docker save {saved} B"
    verified(ws.root / "bundle")
    site = ws.write("site.yaml", "registry: {url: registry.internal:5000/mirror}\n")
    listing = ws.run("inspect", "bundle", "--site", str(site)).stdout
    assert a["digest"] in listing
    assert f"{upstream.app_a} -> registry.internal:5000/mirror/airlift-fixtures/app-a:1" in listing


def test_index_platform_choice_yields_arm64(ws, upstream):
    spec = ws.write("arm.yaml", f"name: arm\nimages:\n  - ref: {upstream.multi}\n    platform: linux/arm64\n")
    ws.run("build", str(spec), "--out", "bundle", extra_env=_env(upstream))
    image = _manifest(ws)["artifacts"][0]["image"]
    index = skopeo_inspect(upstream.multi, "--raw")
    arm = next(m for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
    assert image["digest"] == arm["digest"]
    assert image["platform"] == "linux/arm64"
    assert image["index_digest"] == skopeo_digest(upstream.multi)

    missing = ws.write("s390.yaml", f"name: s390\nimages:\n  - ref: {upstream.multi}\n    platform: linux/s390x\n")
    result = ws.run("build", str(missing), "--out", "b2", expect=1, extra_env=_env(upstream))
    assert "no linux/s390x manifest" in result.stderr and "linux/arm64" in result.stderr


def test_ingest_pushes_with_same_digest_loads_docker_and_runs(ws, upstream, services):
    spec = ws.write("ing.yaml", f"""name: ing
images:
  - {upstream.app_a}
  - {upstream.app_b}
  - ref: {upstream.local_only}
    from: docker
""")
    ws.run("build", str(spec), "--out", "bundle", extra_env=_env(upstream))
    proxy = CountingProxy(services["AIRLIFT_AIRGAP_REGISTRY"]).start()
    prefix = f"mirror-{uuid.uuid4().hex[:8]}"
    site = ws.write("site.yaml", f"registry: {{url: {proxy.address}/{prefix}, insecure: true}}\ndocker: {{host: '{upstream.docker_host}'}}\n")
    try:
        out = ws.run("ingest", "bundle", "--site", str(site)).stdout
        assert "3 pushed" in out and "3 loaded into Docker" in out, out
        assert proxy.requests["POST upload"] > 0
        airgap = services["AIRLIFT_AIRGAP_REGISTRY"]
        for ref in (upstream.app_a, upstream.app_b):
            path = ref.split("/", 1)[1]
            assert skopeo_digest(f"{airgap}/{prefix}/{path}") == skopeo_digest(ref)
        run = subprocess.run(["docker", "-H", upstream.docker_host, "run", "--rm", "--network", "none", f"{proxy.address}/{prefix}/airlift-fixtures/app-b:1"],
                             capture_output=True, text=True, timeout=120)
        assert run.stdout == "hello from app-b\n", run.stderr
        run = subprocess.run(["docker", "-H", upstream.docker_host, "run", "--rm", "--network", "none", upstream.app_a], capture_output=True, text=True, timeout=120)
        assert run.stdout == "hello from app-a\n", run.stderr

        proxy.reset()
        again = ws.run("ingest", "bundle", "--site", str(site)).stdout
        assert "0 pushed, 3 already in the registry" in again, again
        assert proxy.requests["POST upload"] == 0 and proxy.requests["PATCH upload"] == 0 and proxy.bytes_in == 0, proxy.requests
    finally:
        proxy.stop()


def _kill_when(proc, condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be killed: {proc.stderr.read()}")
        time.sleep(0.05)
    assert condition(), "never reached the kill point"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)


def test_pull_killed_mid_layer_resumes(ws, upstream, big_image):
    proxy = CountingProxy(upstream.registry).start()
    try:
        ref = big_image.replace(upstream.registry, proxy.address)
        spec = ws.write("big.yaml", f"name: big\nimages:\n  - {ref}\n")
        proxy.bytes_per_second = 2 << 20  # per connection: eight 4 MiB ranges at once take ~2 s a round
        proc = ws.popen("build", str(spec), "--out", "bundle", extra_env=_env(upstream))
        parts = ws.root / "cache" / ".tmp"  # the 40 MiB layer comes over parallel ranges (util/ranged.py)
        _kill_when(proc, lambda: resumable_bytes(parts) > 12 << 20)
        on_disk = resumable_bytes(parts)
        assert 12 << 20 < on_disk < 40 << 20, f"the kill must land mid-layer: {on_disk} bytes kept"
        proxy.bytes_per_second = None
        proxy.reset()
        ws.run("build", str(spec), "--out", "bundle", extra_env=_env(upstream))
        layer = 40 << 20
        # The ranges not recorded done, plus the small blobs and one range of slack: one run here refetched
        # 4.2 MB more than that and we did not find why (the exact per-range bound is held on the Hub
        # stand-in by tests/test_kill_trials.py; issue 24 allows "the bytes left plus one range per connection").
        assert proxy.bytes_out <= layer - on_disk + (6 << 20), f"refetched {proxy.bytes_out} with {on_disk} on disk"
        verified(ws.root / "bundle")
    finally:
        proxy.stop()


def test_push_killed_mid_layer_resumes(ws, upstream, big_image, services):
    spec = ws.write("bigpush.yaml", f"name: bigpush\nimages:\n  - {big_image}\n")
    ws.run("build", str(spec), "--out", "bundle", extra_env=_env(upstream))
    proxy = CountingProxy(services["AIRLIFT_AIRGAP_REGISTRY"]).start()
    prefix = f"resume-{uuid.uuid4().hex[:8]}"
    site = ws.write("site.yaml", f"registry: {{url: {proxy.address}/{prefix}, insecure: true}}\n")
    try:
        proxy.bytes_per_second = 8 << 20
        proc = ws.popen("ingest", "bundle", "--site", str(site))
        _kill_when(proc, lambda: proxy.bytes_in > 20 << 20)  # the first 16 MiB chunk is committed
        proxy.bytes_per_second = None
        proxy.reset()
        ws.run("ingest", "bundle", "--site", str(site))
        assert proxy.bytes_in <= (40 << 20) - (16 << 20) + (2 << 20), f"re-sent {proxy.bytes_in} bytes"
        path = big_image.split("/", 1)[1]
        assert skopeo_digest(f"{services['AIRLIFT_AIRGAP_REGISTRY']}/{prefix}/{path}") == skopeo_digest(big_image)
    finally:
        proxy.stop()

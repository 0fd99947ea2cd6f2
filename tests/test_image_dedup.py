"""Engine images share their registry base by content; the bundle is an OCI layout skopeo reads.

One engine image is built (classic builder) FROM a registry fixture image, adding a small file. The
bundle with both images must be larger than the registry-only bundle by no more than the engine
image's own layer, config and manifest; skopeo reads each image from `oci:BUNDLE:REF` and copies it
to the air-gapped registry; ingest pushes and `docker load`s it (gzip layers, base blobs borrowed
from the registry image), and the result runs with `--network none`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import sha256sum_check, verified
from tests.images import build, docker


@pytest.fixture
def engine_image(upstream, tmp_path):
    """`FROM app-a` + one small file, built in the engine with the legacy builder (DOCKER_BUILDKIT=0)."""
    tag = f"airlift-local/dedup:{uuid.uuid4().hex[:8]}"
    docker(upstream.docker_host, "pull", upstream.app_a)  # the registry image, pulled into the engine
    build(upstream.docker_host, tag, f'FROM {upstream.app_a}\nCOPY extra.txt /extra.txt\nCMD ["cat", "/extra.txt"]\n',
          {"extra.txt": f"engine layer {tag}\n".encode()}, tmp_path / "ctx")
    yield tag
    subprocess.run(["docker", "-H", upstream.docker_host, "rmi", "-f", tag], capture_output=True)


def _blob_bytes(bundle: Path) -> dict[str, int]:
    """Content blobs by size: each bundle's own SBOM and provenance (its evidence) left out."""
    evidence = json.loads((bundle / "manifest.json").read_text()).get("evidence") or {}
    own = {evidence.get("sbom_sha256"), evidence.get("provenance_sha256")}
    return {p.name: p.stat().st_size for p in (bundle / "blobs" / "sha256").iterdir() if p.name not in own}


def _images(bundle: Path) -> dict[str, dict]:
    return {a["image"]["ref"]: a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"] if a["kind"] == "image"}


def _skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/skopeo", *args], capture_output=True, text=True, timeout=120)


def _saves(host: str, since: float, ref: str) -> int:
    """How many times the engine saved `ref`'s image since `since` (the engine's own `save` events)."""
    out = subprocess.run(["docker", "-H", host, "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                          "--filter", "type=image", "--filter", "event=save", "--format", "{{json .}}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def test_engine_image_shares_registry_base_and_bundle_is_oci_layout(ws, upstream, services, engine_image):
    started = time.time() - 1  # docker events are stamped by the engine's clock: a second's slack
    env = {"DOCKER_HOST": upstream.docker_host}
    reg_spec = ws.write("reg.yaml", f"name: reg\nimages:\n  - {upstream.app_a}\n")
    both_spec = ws.write("both.yaml", f"name: both\nimages:\n  - {upstream.app_a}\n  - ref: {engine_image}\n    from: docker\n")
    ws.run("build", str(reg_spec), "--out", "reg", extra_env=env)
    # A fresh cache: one build fetches both, so the engine image must wait for the registry pull to dedup.
    ws.run("build", str(both_spec), "--out", "both", extra_env={**env, "AIRLIFT_CACHE": str(ws.root / "cache2")})

    reg, both = ws.root / "reg", ws.root / "both"
    images = _images(both)
    registry_image, engine = images[upstream.app_a]["image"], images[engine_image]["image"]
    shared = set(registry_image["layers"]) & set(engine["layers"])
    assert shared == set(registry_image["layers"]), "every base layer of the engine image is the registry image's blob"
    own = [d for d in [engine["digest"], engine["config"], *engine["layers"]] if d not in set(registry_image["layers"])]
    assert len(own) == 3, own  # the new layer, the config and the synthesized manifest
    reg_blobs, both_blobs = _blob_bytes(reg), _blob_bytes(both)
    own_bytes = sum(both_blobs[d.removeprefix("sha256:")] for d in own)
    growth = sum(both_blobs.values()) - sum(reg_blobs.values())
    assert 0 < growth <= own_bytes, f"bundle grew by {growth} B; the engine image's own blobs are {own_bytes} B"
    synthesized = json.loads((both / "blobs" / "sha256" / engine["digest"].removeprefix("sha256:")).read_bytes())
    new_layer = synthesized["layers"][-1]
    assert new_layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert (both / "blobs" / "sha256" / new_layer["digest"].removeprefix("sha256:")).read_bytes()[:2] == b"\x1f\x8b"

    # The OCI layout: pinned by SHA256SUMS, verified, and read by skopeo under each image's ref.
    assert json.loads((both / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert sha256sum_check(both).returncode == 0
    sums = (both / "SHA256SUMS").read_text()
    assert "  index.json\n" in sums and "  oci-layout\n" in sums
    verified(ws.root / "both")
    index = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in json.loads((both / "index.json").read_text())["manifests"]}
    assert set(index) == set(images)
    for ref, artifact in images.items():
        inspected = _skopeo("inspect", f"oci:{both}:{ref}")
        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)["Layers"] == artifact["image"]["layers"]
        raw = _skopeo("inspect", "--raw", f"oci:{both}:{ref}").stdout.encode()
        # The engine image's own manifest; for the Docker v2 registry image, its OCI form (carried and pinned).
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == index[ref]["digest"]
        assert index[ref]["digest"] in [artifact["image"]["digest"], *artifact["blobs"]]
        assert json.loads(raw)["mediaType"] == index[ref]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"

    # skopeo copies the engine image out of the bundle into the air-gapped registry.
    airgap = services["AIRLIFT_AIRGAP_REGISTRY"]
    prefix = f"oci-{uuid.uuid4().hex[:8]}"
    copied = _skopeo("copy", "--dest-tls-verify=false", f"oci:{both}:{engine_image}", f"docker://{airgap}/{prefix}/copied:1")
    assert copied.returncode == 0, copied.stderr
    remote = _skopeo("inspect", "--tls-verify=false", f"docker://{airgap}/{prefix}/copied:1")
    assert remote.returncode == 0 and json.loads(remote.stdout)["Layers"] == engine["layers"], remote.stderr

    # A rebuild of the unchanged engine image reads nothing from the engine (no `docker save`). Counted from
    # the test's start, less what the builds above saved: a window opened "a second before the rebuilds"
    # also caught the first build's save whenever the checks above took under a second.
    saved_before = _saves(upstream.docker_host, started, engine_image)
    ws.run("build", str(both_spec), "--out", "again", extra_env=env)
    ws.run("build", str(both_spec), "--out", "again2", extra_env=env)
    assert _images(ws.root / "again2")[engine_image]["image"]["digest"] == engine["digest"]
    time.sleep(1)
    saved = _saves(upstream.docker_host, started, engine_image) - saved_before
    assert saved == 1, f"only the first build in this cache may save the image: {saved} saves by the two rebuilds"

    # Ingest: push (digest kept) and docker load (gzip layers, base blobs borrowed); it runs offline.
    subprocess.run(["docker", "-H", upstream.docker_host, "rmi", "-f", engine_image], capture_output=True, check=True)
    site = ws.write("site.yaml", f"registry: {{url: {airgap}/{prefix}, insecure: true}}\ndocker: {{host: '{upstream.docker_host}'}}\n")
    out = ws.run("ingest", "both", "--site", str(site)).stdout
    assert "2 pushed" in out and "2 loaded into Docker" in out, out
    pushed = f"{airgap}/{prefix}/{engine_image.split(':')[0]}:{engine_image.split(':')[1]}"
    inspected = _skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{pushed}")
    assert json.loads(inspected.stdout)["layers"] == synthesized["layers"]
    for ref in (engine_image, pushed):
        run = subprocess.run(["docker", "-H", upstream.docker_host, "run", "--rm", "--network", "none", ref], capture_output=True, text=True, timeout=120)
        assert run.stdout == f"engine layer {engine_image}\n", run.stderr


def test_delta_index_lists_only_whole_images(ws, upstream, engine_image):
    env = {"DOCKER_HOST": upstream.docker_host}
    ws.run("build", str(ws.write("reg.yaml", f"name: d\nimages:\n  - {upstream.app_a}\n")), "--out", "old", extra_env=env)
    spec = ws.write("both.yaml", f"name: d\nimages:\n  - {upstream.app_a}\n  - ref: {engine_image}\n    from: docker\n")
    ws.run("build", str(spec), "--out", "delta", "--since", "old", extra_env=env)
    delta = ws.root / "delta"
    index = json.loads((delta / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == [], "a delta holds no image whole here: the engine image borrows the old bundle's base layers"
    assert _skopeo("inspect", f"oci:{delta}:{engine_image}").returncode != 0
    verified(ws.root / "delta", store=ws.root / "old")
    # The inspect listing names what each image shares with the others.
    listing = ws.run("inspect", "delta").stdout
    assert "shares" in listing, listing
    shared = json.loads(ws.run("inspect", "delta", "--json").stdout)["image_sharing"]
    a = shared[f"images/{upstream.app_a}"]
    assert a["shared_bytes"] > 0 and a["shared_with"] == [f"images/{engine_image}"], a

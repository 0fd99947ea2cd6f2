"""Image referrers cross the gap: a cosign-style signature (tag schema) and an OCI 1.1 `subject` SBOM.

The upstream and air-gapped registries are Debian's distribution 2.8 (no referrers API): the test
pushes its own image and referrers with the distribution API, then build, transfer, ingest, and checks
the air-gapped registry holds each referrer with its digest unchanged.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _blob(base: str, registry: str, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = httpx.post(f"{base}/blobs/uploads/").headers["location"]
    location = location if location.startswith("http") else f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    assert httpx.put(f"{location}{sep}digest={digest}", content=data).status_code == 201
    return {"digest": digest, "size": len(data)}


def _manifest(base: str, reference: str, doc: dict, media_type: str = OCI_MANIFEST) -> str:
    raw = json.dumps(doc).encode()
    response = httpx.put(f"{base}/manifests/{reference}", content=raw, headers={"Content-Type": media_type})
    assert response.status_code == 201, response.text
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def push_signed_image(registry: str, repository: str) -> tuple[str, str, str]:
    """An image, a cosign signature at `sha256-<hex>.sig`, and an SBOM naming it as `subject` (OCI fallback tag).

    Returns (image digest, signature digest, SBOM digest).
    """
    base = f"http://{registry}/v2/{repository}"
    config = _blob(base, registry, json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    layer = _blob(base, registry, b"not really a tar, but a layer's bytes " + uuid.uuid4().bytes)
    image = _manifest(base, "1", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
    })
    # cosign's signature layout: a simple-signing payload layer, the signature in its annotation.
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": image}, "type": "cosign container image signature"}}).encode()
    sig_config = _blob(base, registry, b"{}")
    sig_layer = _blob(base, registry, payload)
    signature = _manifest(base, f"{image.replace(':', '-')}.sig", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **sig_config},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", **sig_layer,
                    "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDtest"}}],
    })
    # An OCI 1.1 artifact with `subject`, listed in the fallback tag's index as `oras attach` does on 2.8.
    sbom_layer = _blob(base, registry, b'{"bomFormat": "CycloneDX", "specVersion": "1.6"}')
    empty = _blob(base, registry, b"{}")
    sbom_doc = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cyclonedx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
        "layers": [{"mediaType": "application/vnd.cyclonedx+json", **sbom_layer}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image, "size": len(httpx.get(f"{base}/manifests/{image}", headers={"Accept": OCI_MANIFEST}).content)},
    }
    sbom = _manifest(base, "sha256:" + hashlib.sha256(json.dumps(sbom_doc).encode()).hexdigest(), sbom_doc)
    _manifest(base, image.replace(":", "-"), {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sbom, "size": len(json.dumps(sbom_doc).encode()), "artifactType": "application/vnd.cyclonedx+json"}],
    }, OCI_INDEX)
    return image, signature, sbom


def _head(registry: str, repository: str, reference: str) -> str | None:
    accept = ", ".join([OCI_MANIFEST, OCI_INDEX])
    response = httpx.head(f"http://{registry}/v2/{repository}/manifests/{reference}", headers={"Accept": accept})
    return response.headers.get("docker-content-digest") if response.status_code == 200 else None


def test_a_signed_image_carries_its_referrers_across(ws, services):
    upstream = services["AIRLIFT_UPSTREAM_REGISTRY"]
    airgap = services["AIRLIFT_AIRGAP_REGISTRY"]
    unique = uuid.uuid4().hex[:8]
    repository, plain = f"airlift-ref-{unique}/signed", f"airlift-ref-{unique}/optout"
    image, signature, sbom = push_signed_image(upstream, repository)
    plain_image, plain_signature, _ = push_signed_image(upstream, plain)
    spec = ws.write("signed.yaml", f"name: signed\nimages:\n  - {upstream}/{repository}:1\n  - ref: {upstream}/{plain}:1\n    referrers: false\n")
    ws.run("build", str(spec), "--out", "bundle")

    manifest = json.loads((ws.root / "bundle" / "manifest.json").read_text())
    by_id = {a["id"]: a for a in manifest["artifacts"]}
    carried = by_id[f"images/{upstream}/{repository}:1"]["image"]["referrers"]
    assert {(r["digest"], r.get("tag")) for r in carried} == {(signature, f"{image.replace(':', '-')}.sig"), (sbom, None)}
    assert "referrers" not in by_id[f"images/{upstream}/{plain}:1"]["image"]  # opted out
    listing = ws.run("inspect", "bundle").stdout
    assert f"referrer {signature}" in listing and f"referrer {sbom}" in listing, listing

    ws.run("transfer", "bundle", "--to", "inside")
    prefix = f"mirror-{unique}"
    site = ws.write("site.yaml", f"registry: {{url: {airgap}/{prefix}, insecure: true}}\n")
    ws.run("ingest", "inside", "--site", str(site))

    target = f"{prefix}/{repository}"
    assert _head(airgap, target, "1") == image
    assert _head(airgap, target, f"{image.replace(':', '-')}.sig") == signature  # the same tag, the same digest
    assert _head(airgap, target, sbom) == sbom
    index = httpx.get(f"http://{airgap}/v2/{target}/manifests/{image.replace(':', '-')}", headers={"Accept": OCI_INDEX}).json()
    assert [m["digest"] for m in index["manifests"]] == [sbom]  # a 1.1 client finds the SBOM through the fallback tag
    assert _head(airgap, f"{prefix}/{plain}", "1") == plain_image
    assert _head(airgap, f"{prefix}/{plain}", f"{plain_image.replace(':', '-')}.sig") is None

    # The signature's blobs were verified with the bundle: a damaged one is named by verify.
    sig_blob = next(r for r in carried if r["digest"] == signature)["blobs"][-1].removeprefix("sha256:")
    path = ws.root / "inside" / "blobs" / "sha256" / sig_blob
    path.chmod(0o644)
    path.write_bytes(b"x" * path.stat().st_size)
    broken = ws.run("verify", "inside", expect=1).stdout
    assert f"images/{upstream}/{repository}:1: blob {sig_blob[:12]}: corrupt" in broken, broken

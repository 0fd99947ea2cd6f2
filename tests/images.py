"""Fixture images built locally from Debian's busybox-static, pushed to the upstream registry.

- a shared base (busybox + 3 MiB of incompressible data, so layer dedup is what is measured),
- two images on top of it, each adding a file and a default command,
- a two-platform OCI index (amd64 and arm64 manifests over the same layers; only configs differ).
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from airlift.testing.images import docker
from tests.conftest import busybox_image


@dataclass
class UpstreamImages:
    registry: str
    app_a: str
    app_b: str
    multi: str
    local_only: str
    docker_host: str


def build(host: str, tag: str, dockerfile: str, files: dict[str, bytes], workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Dockerfile").write_text(dockerfile)
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    docker(host, "build", "-q", "-t", tag, str(workdir))


def make_index(registry: str, repository: str, source_tag: str, index_tag: str) -> None:
    """Push an arm64 twin of an amd64 image and an OCI index naming both platforms."""
    base = f"http://{registry}/v2/{repository}"
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"}
    manifest_raw = httpx.get(f"{base}/manifests/{source_tag}", headers=accept).content
    manifest = json.loads(manifest_raw)
    config = json.loads(httpx.get(f"{base}/blobs/{manifest['config']['digest']}").content)
    config["architecture"] = "arm64"
    config_raw = json.dumps(config).encode()
    config_digest = "sha256:" + hashlib.sha256(config_raw).hexdigest()
    location = httpx.post(f"{base}/blobs/uploads/").headers["location"]
    location = location if location.startswith("http") else f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    assert httpx.put(f"{location}{sep}digest={config_digest}", content=config_raw).status_code == 201
    arm = dict(manifest, config=dict(manifest["config"], digest=config_digest, size=len(config_raw)))
    arm_raw = json.dumps(arm).encode()
    arm_digest = "sha256:" + hashlib.sha256(arm_raw).hexdigest()
    media_type = manifest["mediaType"]
    assert httpx.put(f"{base}/manifests/{arm_digest}", content=arm_raw, headers={"Content-Type": media_type}).status_code == 201
    amd_digest = "sha256:" + hashlib.sha256(manifest_raw).hexdigest()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": media_type, "digest": amd_digest, "size": len(manifest_raw), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": media_type, "digest": arm_digest, "size": len(arm_raw), "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }
    response = httpx.put(f"{base}/manifests/{index_tag}", content=json.dumps(index).encode(), headers={"Content-Type": index["mediaType"]})
    assert response.status_code == 201, response.text


def prepare(services: dict[str, str], workdir: Path) -> UpstreamImages:
    host = services["AIRLIFT_DOCKER_HOST"]
    registry = services["AIRLIFT_UPSTREAM_REGISTRY"]
    busybox = busybox_image(host)
    base = f"{registry}/airlift-fixtures/base:1"
    build(host, base, f"FROM {busybox}\nCOPY payload.bin /opt/base/payload.bin\n",
          {"payload.bin": random.Random(11).randbytes(3 << 20)}, workdir / "base")
    app_a = f"{registry}/airlift-fixtures/app-a:1"
    app_b = f"{registry}/airlift-fixtures/app-b:1"
    build(host, app_a, f'FROM {base}\nCOPY message.txt /message.txt\nCMD ["cat", "/message.txt"]\n', {"message.txt": b"hello from app-a\n"}, workdir / "a")
    build(host, app_b, f'FROM {base}\nCOPY message.txt /message.txt\nCMD ["cat", "/message.txt"]\n', {"message.txt": b"hello from app-b\n"}, workdir / "b")
    for tag in (base, app_a, app_b):
        docker(host, "push", tag)
    multi_repo = "airlift-fixtures/multi"
    docker(host, "tag", app_a, f"{registry}/{multi_repo}:amd64-only")
    docker(host, "push", f"{registry}/{multi_repo}:amd64-only")
    make_index(registry, multi_repo, "amd64-only", "1")
    local_only = "airlift-local/trainer:dev"
    build(host, local_only, f'FROM {busybox}\nCOPY train.sh /train.sh\nCMD ["sh", "/train.sh"]\n', {"train.sh": b"echo training locally\n"}, workdir / "local")
    return UpstreamImages(registry, app_a, app_b, f"{registry}/{multi_repo}:1", local_only, host)


def skopeo_digest(ref: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"], capture_output=True, check=True).stdout
    return "sha256:" + hashlib.sha256(out).hexdigest()


def skopeo_inspect(ref: str, *extra: str) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{ref}"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)

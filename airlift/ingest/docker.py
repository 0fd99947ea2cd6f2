"""`docker load` bundled images into an engine through the docker SDK.

The docker-archive is assembled on the fly from the blobs (tar headers around the blob files), so
no second copy of a multi-GB image is written to disk. It is tagged with the original reference
and the air-gapped one.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from airlift.bundle.manifest import ImageArtifact
from airlift.util.errors import WorkError
from airlift.util.fs import CHUNK

BLOCK = 512


@dataclass
class LoadReport:
    image: str
    tags: list[str]
    loaded: bool
    bytes: int = 0


def _member(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * ((BLOCK - size % BLOCK) % BLOCK)


def docker_archive(artifact: ImageArtifact, *, blob_path: Callable[[str], Path], tags: list[str]) -> Iterator[bytes]:
    """Yield a docker-archive (manifest.json + config + layer tars) streamed from the blob files."""
    image = artifact.image
    config_hex = image.config.hex
    layer_names = [f"{layer.hex}/layer.tar" for layer in image.layers]
    for layer, name in zip(image.layers, layer_names, strict=True):
        path = blob_path(layer.hex)
        size = path.stat().st_size
        yield _member(name, size)
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
        yield _padding(size)
    config = blob_path(config_hex).read_bytes()
    yield _member(f"{config_hex}.json", len(config)) + config + _padding(len(config))
    manifest = json.dumps([{"Config": f"{config_hex}.json", "RepoTags": tags, "Layers": layer_names}]).encode()
    yield _member("manifest.json", len(manifest)) + manifest + _padding(len(manifest))
    yield b"\0" * (BLOCK * 2)


def load_image(artifact: ImageArtifact, *, docker_host: str, blob_path: Callable[[str], Path], tags: list[str]) -> LoadReport:
    """Stream the image into the Docker engine as a docker-archive and tag it; skip it when already there."""
    import docker

    image = artifact.image
    client = docker.DockerClient(base_url=docker_host)
    try:
        try:
            existing = client.images.get(tags[-1])
            if existing.id == image.config and all(t in existing.tags for t in tags):
                return LoadReport(image.ref, tags, loaded=False)
        except docker.errors.ImageNotFound:
            pass
        for event in client.api.load_image(docker_archive(artifact, blob_path=blob_path, tags=tags)):
            if isinstance(event, dict) and event.get("error"):
                raise WorkError(f"docker load failed: {event['error']}", artifact_id=artifact.id)
        loaded = client.images.get(tags[-1])
        if loaded.id != image.config:
            raise WorkError(f"docker load produced {loaded.id}, expected {image.config}", artifact_id=artifact.id)
        return LoadReport(image.ref, tags, loaded=True, bytes=image.size)
    finally:
        client.close()

"""Container image references, normalized the way Docker names them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from airlift.util.errors import InputError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_REF_RE = re.compile(r"^(?P<name>[a-z0-9]+(?:[._/:-][a-z0-9A-Z_.-]+)*?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class ImageName:
    registry: str  # host[:port], "docker.io" for Docker Hub
    repository: str  # path without the registry; Docker Hub official images gain "library/"
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_image(ref: str) -> ImageName:
    """Split `ref` into registry, repository, tag and digest; `busybox` becomes docker.io/library/busybox:latest."""
    match = _REF_RE.match(ref)
    if not match or ".." in ref or "//" in ref:
        raise InputError(f"image {ref!r}: not a valid image reference")
    name, tag, digest = match["name"], match["tag"], match["digest"]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if ":" in repository:
        raise InputError(f"image {ref!r}: not a valid image reference")
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if tag is None and digest is None:
        tag = "latest"
    return ImageName(registry, repository, tag, digest)


def airgap_reference(target_url: str, image: ImageName) -> str:
    """`<url>/<repository path>:<tag>` per the contract (digest-only refs keep their digest)."""
    base = f"{target_url.rstrip('/')}/{image.repository}"
    return f"{base}:{image.tag}" if image.tag else f"{base}@{image.digest}"


def split_target(url: str) -> tuple[str, str]:
    """A site registry `host[:port][/prefix]` as (host, prefix)."""
    host, _, prefix = url.partition("/")
    return host, prefix.strip("/")

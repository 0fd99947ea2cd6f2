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


# The OCI distribution spec's repository name and tag grammars: no '..', no leading separator, no '/'
# at the ends, so a repository can never climb out of the registry prefix it is pushed under.
REPOSITORY_RE = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def push_target(target_url: str, *, repository: str, tag: str | None) -> tuple[str, str, str | None]:
    """(host, repository under the site prefix, tag) for a push; refuses anything outside the grammar.

    Args:
        target_url: The site registry, `host[:port][/prefix]`.
        repository: The image's repository path (from the manifest: untrusted until checked here).
        tag: The image's tag, or None for a digest-only reference.

    Raises:
        InputError: The repository or tag does not follow the OCI grammar.
    """
    if not REPOSITORY_RE.match(repository) or len(repository) > 255:
        raise InputError(f"image repository {repository!r} is not a valid OCI repository name")
    if tag is not None and not TAG_RE.match(tag):
        raise InputError(f"image tag {tag!r} is not a valid OCI tag")
    host, prefix = split_target(target_url)
    return host, f"{prefix}/{repository}" if prefix else repository, tag

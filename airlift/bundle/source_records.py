"""Where each artifact came from, resolved: one typed record per artifact kind.

A manifest's `source` is read through these models (chosen by the artifact's `kind`), so every field is
validated on read: a commit is 40 hex, a digest `sha256:` + 64 hex, repositories and tags follow the
OCI grammar, refs and names have no `..` or leading `-`, URLs carry no credentials. Each record says
what pins it (`pinned`), so plan, inspect and the contents table need no switch on kind.

Adding a source kind: a record here (and its entry in SOURCE_BY_KIND), its kind in `FileKind`
(airlift/bundle/manifest.py), and a module in airlift/fetch registered in airlift/fetch/kinds.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airlift.util.names import (
    COMMIT,
    DIGEST,
    HEX64,
    HF_REPO,
    OCI_REPOSITORY,
    OCI_TAG,
    PLATFORM,
    REGISTRY_HOST,
    SAFE_NAME,
    no_control,
    ref_name,
)

Commit = Annotated[str, Field(pattern=COMMIT)]
Digest = Annotated[str, Field(pattern=DIGEST)]
Hex64 = Annotated[str, Field(pattern=HEX64)]


def _clean_url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    parts = urlsplit(no_control(value, "url"))
    if parts.scheme not in schemes:
        raise ValueError(f"URL scheme must be one of {', '.join(schemes)}")
    if parts.username or parts.password or parts.query:
        raise ValueError("a recorded URL must carry no credentials (userinfo or query string)")
    return value


class SourceRecord(BaseModel):
    """Common to every source record: strict (unknown keys are refused) and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    @property
    def pinned(self) -> str:
        """The value that pins the content (a commit, a digest, a sha256, a listing stamp)."""
        raise NotImplementedError


class HfSource(SourceRecord):
    """A Hugging Face repository at a commit (the revision it was resolved from is kept for refs/)."""

    repo: str = Field(pattern=HF_REPO)
    repo_type: Literal["model", "dataset"]
    revision: str
    commit: Commit
    allow: list[str] | None = None
    ignore: list[str] | None = None

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        return ref_name(value)

    @property
    def pinned(self) -> str:
        return self.commit


class UrlSource(SourceRecord):
    """A URL's file: the redacted URL, and what pins it (the sha256 pin, or the ETag and size seen)."""

    url: str
    final_url: str | None = None
    sha256: Hex64 | None = None
    etag: str | None = Field(default=None, max_length=512)
    last_modified: str | None = Field(default=None, max_length=128)
    size: int | None = Field(default=None, ge=0)

    @field_validator("url", "final_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _clean_url(value)

    @field_validator("etag", "last_modified")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else no_control(value, "header value")

    @property
    def pinned(self) -> str:
        return self.sha256 or self.etag or ""


class PathSource(SourceRecord):
    """A local file or directory, stamped by its sizes, mtimes and inodes when it was read."""

    path: str = Field(min_length=1, max_length=4096)
    stamp: Hex64 | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return no_control(value, "path")

    @property
    def pinned(self) -> str:
        return self.stamp or ""


class S3Source(SourceRecord):
    """Every object under an S3 prefix, stamped by the listing (keys, sizes, ETags)."""

    url: str = Field(pattern=r"^s3://[a-z0-9.-]{3,63}(/.*)?$")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = ""
    listing: Hex64

    @field_validator("url", "prefix")
    @classmethod
    def _text(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError("must not have '..' parts")
        return no_control(value, "s3 location")

    @property
    def pinned(self) -> str:
        return self.listing


class NgcSource(SourceRecord):
    """An NGC model at a version."""

    target: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*){1,2}:[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    org: str = Field(pattern=SAFE_NAME)
    team: str | None = Field(default=None, pattern=SAFE_NAME)
    name: str = Field(pattern=SAFE_NAME)
    version: str = Field(pattern=SAFE_NAME)
    allow: list[str] | None = None

    @property
    def pinned(self) -> str:
        return self.target


class NgcCatalogSource(SourceRecord):
    """(v1.1) Several models of one NGC org/team (discovery), each pinned to a concrete version."""

    org: str = Field(pattern=SAFE_NAME)
    team: str = Field(pattern=SAFE_NAME)
    models: dict[Annotated[str, Field(pattern=SAFE_NAME)], Annotated[str, Field(pattern=SAFE_NAME)]] = Field(min_length=1)
    allow: list[str] | None = None

    @property
    def pinned(self) -> str:
        return " ".join(f"{name}:{version}" for name, version in sorted(self.models.items()))


class GitSource(SourceRecord):
    """A git repository at a commit (the ref it was resolved from, and its full name)."""

    url: str = Field(min_length=1, max_length=4096)
    ref: str
    full_ref: str | None = None
    commit: Commit

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value.startswith("/"):
            return no_control(value, "url")
        return _clean_url(value, ("https", "ssh", "git", "file"))

    @field_validator("ref", "full_ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return value if value in (None, "HEAD") else ref_name(value)

    @property
    def pinned(self) -> str:
        return self.commit


class WheelTarget(SourceRecord):
    """The Python version, platform and implementation wheels were resolved for."""

    python: str = Field(pattern=r"^3\.\d+$")
    platform: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    implementation: Literal["cp", "pp", "py"]


class WheelPin(SourceRecord):
    """Where one wheel came from (credential-free) and pip's sha256 of it."""

    url: str
    sha256: Hex64 | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _clean_url(value, ("http", "https", "file"))


class WheelsSource(SourceRecord):
    """The wheels pip resolved for every target, by file name."""

    targets: list[WheelTarget] = Field(default_factory=list)
    wheels: dict[Annotated[str, Field(pattern=SAFE_NAME)], WheelPin] = Field(default_factory=dict)

    @property
    def pinned(self) -> str:
        return " ".join(sorted(self.wheels))


class InstallerSource(SourceRecord):
    """airlift itself (`tools/airlift`): the target, the airlift version built, and every dependency wheel pip pinned.

    airlift's own wheel is built by the airlift that runs the build (never fetched), so it has no URL:
    `built_from` says whether it came from a checkout or was recreated from an installed distribution.
    """

    python: str = Field(pattern=r"^3\.\d+$")
    platform: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    implementation: Literal["cp"] = "cp"
    airlift_version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$", max_length=64)
    airlift_wheel: str = Field(pattern=SAFE_NAME)
    airlift_sha256: Hex64
    built_from: Literal["checkout", "installed"]
    wheels: dict[Annotated[str, Field(pattern=SAFE_NAME)], WheelPin] = Field(default_factory=dict)

    @property
    def pinned(self) -> str:
        return f"airlift {self.airlift_version} + {len(self.wheels)} wheels for cp{self.python} {self.platform}"


class ImageSource(SourceRecord):
    """An image: its reference as written, and what pins it (the manifest digest, or the engine's image id)."""

    ref: str = Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
    from_: Literal["registry", "docker"] = Field(alias="from")
    registry: str | None = Field(default=None, pattern=REGISTRY_HOST)
    repository: str = Field(pattern=OCI_REPOSITORY, max_length=255)
    tag: str | None = Field(default=None, pattern=OCI_TAG)
    digest: Digest | None = None
    index_digest: Digest | None = None
    platform: str = Field(pattern=PLATFORM)
    image_id: Digest | None = None
    referrers: Literal[False] | None = None  # v1.1: False when the spec opted out (`referrers: false`)

    @property
    def pinned(self) -> str:
        return self.digest or self.image_id or ""


class OutputSource(SourceRecord):
    """(v1.1) A finished job run's declared outputs, carried out by `airlift export`."""

    spec: str = Field(pattern=SAFE_NAME)
    job: str = Field(pattern=SAFE_NAME)
    run_id: str = Field(pattern=SAFE_NAME)
    outputs: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._+/-]*$")]] = Field(default_factory=list)
    exit_code: int = 0
    submitted_at: str = Field(default="", max_length=64)

    @property
    def pinned(self) -> str:
        return f"{self.job}/{self.run_id}"


Source = HfSource | UrlSource | PathSource | S3Source | NgcSource | NgcCatalogSource | GitSource | WheelsSource | ImageSource | InstallerSource | OutputSource

SOURCE_BY_KIND: dict[str, type[SourceRecord]] = {
    "hf-model": HfSource,
    "hf-dataset": HfSource,
    "url": UrlSource,
    "path": PathSource,
    "s3": S3Source,
    "ngc-model": NgcSource,
    "ngc-catalog": NgcCatalogSource,
    "git": GitSource,
    "wheels": WheelsSource,
    "image": ImageSource,
    "installer": InstallerSource,
    "output": OutputSource,
}


def source_record(kind: str, value: Any) -> SourceRecord:
    """The typed record for an artifact of `kind` (a dict is validated; a record is checked for its kind).

    Raises:
        ValueError: `kind` is unknown, or the value is not a valid record of that kind.
    """
    model = SOURCE_BY_KIND.get(kind)
    if model is None:
        raise ValueError(f"unknown artifact kind {kind!r}")
    if isinstance(value, model):
        return value
    if isinstance(value, SourceRecord):
        value = value.model_dump(by_alias=True)
    return model.model_validate(value)

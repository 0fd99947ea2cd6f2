"""The bundle manifest: what each artifact is, where it came from (resolved), and the blobs that hold it.

A manifest is untrusted input on the air-gapped side, so every path and id is checked before use:
relative POSIX only, no `..`, no absolute paths, sane sizes.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from airlift.bundle.sources import Source, source_record
from airlift.util.errors import InputError
from airlift.util.names import DIGEST, MEDIA_TYPE, OCI_REPOSITORY, OCI_TAG, PLATFORM

SCHEMA_VERSION = 1
MAX_FILE_SIZE = 1 << 50  # 1 PiB: anything larger in a manifest is hostile or broken
MAX_MANIFEST_BYTES = 256 << 20
ARTIFACT_ID_RE = re.compile(r"^(models|datasets|files|repos|images|outputs)/[A-Za-z0-9._:@/+-]+$|^wheels$")


class ManifestError(InputError):
    """A manifest that cannot be trusted: malformed, or with paths that escape.

    Exit 2, like any invalid input: a hostile manifest is input, not a failure of the work. (Bytes that do
    not match a valid manifest are corruption, exit 1, reported by verify.)
    """


def check_relative_path(value: str) -> str:
    """The value, if it is a relative POSIX path with no empty, '.' or '..' part; else ValueError."""
    if not value or value.startswith("/") or "\\" in value or "\x00" in value:
        raise ValueError(f"path {value!r} must be a relative POSIX path")
    if any(part in {"", ".", ".."} for part in value.split("/")):
        raise ValueError(f"path {value!r} has an empty, '.' or '..' component")
    return value


class Model(BaseModel):
    """Manifest records: strict (unknown keys are refused) and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(Model):
    """One file of an artifact: its relative path, size and sha256 (and the hub's ETag)."""

    path: str
    size: int = Field(ge=0, le=MAX_FILE_SIZE)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    executable: bool = False
    etag: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_relative_path(value)


class ImageInfo(Model):
    """An image artifact: manifest digest, platform, config and layers (each a blob), repository and tag."""

    ref: str = Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
    digest: str = Field(pattern=DIGEST)
    platform: str = Field(pattern=PLATFORM)
    media_type: str = Field(pattern=MEDIA_TYPE, max_length=255)
    size: int = Field(ge=0, le=MAX_FILE_SIZE)
    config: str = Field(pattern=DIGEST)
    layers: list[Annotated[str, Field(pattern=DIGEST)]] = Field(default_factory=list)
    index_digest: str | None = Field(default=None, pattern=DIGEST)
    repository: str = Field(pattern=OCI_REPOSITORY, max_length=255)
    tag: str | None = Field(default=None, pattern=OCI_TAG)


class Artifact(Model):
    """One artifact of a bundle: id, kind, typed source, and the blobs that hold it."""

    id: str
    kind: Literal["hf-model", "hf-dataset", "url", "path", "s3", "ngc-model", "ngc-catalog", "git", "wheels", "image", "output"]
    # `file`: a single plain file that *is* the artifact (files/<name>); `tree`: files below the artifact id.
    layout: Literal["tree", "file"] = "tree"
    source: Source
    files: list[FileEntry] = Field(default_factory=list)
    image: ImageInfo | None = None
    blobs: list[Annotated[str, Field(pattern=DIGEST)]] = Field(default_factory=list, description="extra blobs (image manifests, configs, layers), as sha256:<hex>")

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any, info: ValidationInfo) -> Any:
        # The record's type follows the artifact's kind (validated first, as it is declared first).
        kind = info.data.get("kind")
        if kind is None:
            return value
        try:
            return source_record(kind, value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "(record)"
            raise ValueError(f"{where}: {error['msg']}") from None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ARTIFACT_ID_RE.match(value) or any(part in {"", ".", ".."} for part in value.split("/")):
            raise ValueError(f"artifact id {value!r} is not valid")
        return value

    def all_blobs(self) -> set[str]:
        return {f.sha256 for f in self.files} | {b.removeprefix("sha256:") for b in self.blobs}

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def content_digest(self) -> str:
        """A digest of what this artifact is: used to tell whether a destination already has it."""
        payload = json.dumps(self.model_dump(mode="json", exclude={"source"}), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()


class Lineage(Model):
    """The bundle a delta was built against."""

    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str
    created: str


class Manifest(Model):
    """manifest.json: schema version, name, lineage, the resolution digest, the artifacts and the (redacted) spec."""

    schema_version: int = SCHEMA_VERSION
    name: str
    created: str
    tool: str = "airlift"
    since: Lineage | None = None
    # sha256 over every resolved reference (commit, digest, ETag...): equal means nothing changed upstream.
    resolution: str | None = None
    artifacts: list[Artifact]
    spec: dict[str, Any] | None = None  # the spec, redacted; semi-trusted, so validated as a Spec on read

    @field_validator("spec")
    @classmethod
    def _spec(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        from airlift.config.spec import Spec

        try:
            Spec.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and ":" in p))
            raise ValueError(f"{where}: {error['msg']}") from None
        return value

    def artifact(self, artifact_id: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.id == artifact_id), None)

    def all_blobs(self) -> set[str]:
        blobs: set[str] = set()
        for artifact in self.artifacts:
            blobs |= artifact.all_blobs()
        return blobs

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, *, origin: str) -> Manifest:
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{origin}: manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{origin}: not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"{origin}: expected a JSON object")
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise ManifestError(f"{origin}: schema_version {raw.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})")
        try:
            manifest = cls.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = ".".join(str(p) for p in error["loc"])
            raise ManifestError(f"{origin}: {loc}: {error['msg']}") from None
        ids = [a.id for a in manifest.artifacts]
        if len(ids) != len(set(ids)):
            raise ManifestError(f"{origin}: duplicate artifact ids")
        return manifest


def now_iso() -> str:
    """The current UTC time, to the second, as `YYYY-MM-DDTHH:MM:SSZ`."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

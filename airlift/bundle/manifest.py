"""The bundle manifest: what each artifact is, where it came from (resolved), and the blobs that hold it.

A manifest is untrusted input on the air-gapped side, so every path and id is checked before use:
relative POSIX only, no `..`, no absolute paths, sane sizes.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from airlift import __version__
from airlift.bundle.source_records import Source, source_record
from airlift.util.confine import MAX_COMPONENT_BYTES, MAX_PATH_BYTES, path_problem
from airlift.util.errors import InputError
from airlift.util.names import MEDIA_TYPE, OCI_REPOSITORY, OCI_TAG, PLATFORM, Digest

REFERRER_TAG = r"^sha256-[0-9a-f]{64}\.(sig|att|sbom)$"  # cosign's tag schema

SCHEMA_VERSION = 1
MAX_FILE_SIZE = 1 << 50  # 1 PiB: anything larger in a manifest is hostile or broken
MAX_MANIFEST_BYTES = 256 << 20
VERSION_RE = r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$"
ARTIFACT_ID_RE = re.compile(r"^(models|datasets|files|repos|images|outputs)/[A-Za-z0-9._:@/+-]+$|^wheels$|^tools/airlift$")


class ManifestError(InputError):
    """A manifest that cannot be trusted: malformed, or with paths that escape.

    Exit 2, like any invalid input: a hostile manifest is input, not a failure of the work. (Bytes that do
    not match a valid manifest are corruption, exit 1, reported by verify.)
    """


def check_relative_path(value: str) -> str:
    """The value, if it is a relative POSIX path airlift may write (util/confine.py path_problem: no
    empty, '.' or '..' part, no control character, each part <= 255 bytes); else ValueError."""
    problem = path_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def check_artifact_id(value: str) -> str:
    """The id, if it is valid and short enough for every name built from it; else ValueError.

    Checked when the manifest is read, so ingest never fails with ENAMETOOLONG after writing other
    artifacts: the id is a path under shared_root (each part <= 255 bytes) and, quoted, the name of
    its ingest marker (`<quoted id>.json` <= 255 bytes).
    """
    if not ARTIFACT_ID_RE.match(value) or path_problem(value):
        raise ValueError(f"artifact id {value[:80]!r} is not valid" + (f": {path_problem(value)}" if path_problem(value) else ""))
    if len(quote(value, safe="")) + len(".json") > MAX_COMPONENT_BYTES:
        raise ValueError(f"artifact id {value[:40]!r}... is too long ({len(value)} characters; its marker name must fit in {MAX_COMPONENT_BYTES} bytes)")
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


class Referrer(Model):
    """(v1.1) An artifact that refers to an image: a cosign signature, an attestation, an SBOM.

    Found by the OCI 1.1 referrers API (`subject`) or by cosign's tag schema (`tag`, e.g.
    `sha256-<hex>.sig`); its manifest and blobs travel as ordinary blobs of the image artifact.
    """

    digest: Digest
    media_type: str = Field(pattern=MEDIA_TYPE, max_length=255)
    size: int = Field(ge=0, le=MAX_FILE_SIZE)
    subject: Digest
    tag: str | None = Field(default=None, pattern=REFERRER_TAG)
    artifact_type: str | None = Field(default=None, pattern=MEDIA_TYPE, max_length=255)
    blobs: list[Digest] = Field(default_factory=list)


class ImageInfo(Model):
    """An image artifact: manifest digest, platform, config and layers (each a blob), repository and tag."""

    ref: str = Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
    digest: Digest
    platform: str = Field(pattern=PLATFORM)
    media_type: str = Field(pattern=MEDIA_TYPE, max_length=255)
    size: int = Field(ge=0, le=MAX_FILE_SIZE)
    config: Digest
    layers: list[Digest] = Field(default_factory=list)
    index_digest: Digest | None = None
    repository: str = Field(pattern=OCI_REPOSITORY, max_length=255)
    tag: str | None = Field(default=None, pattern=OCI_TAG)
    referrers: list[Referrer] | None = None  # v1.1; None (not []) keeps older manifests byte-identical


class ModelSignature(Model):
    """(v1.1) The OpenSSF model-signing check made at build time (airlift/bundle/modelsig.py)."""

    method: Literal["key", "certificate"]
    signature: str  # the signature file's path among the artifact's files
    trust: list[Digest] = Field(min_length=1)  # the trust material, as blobs
    verified: Literal[True] = True  # a build whose check failed writes no manifest
    files: int = Field(ge=0)  # how many files the signature covers

    @field_validator("signature")
    @classmethod
    def _signature(cls, value: str) -> str:
        return check_relative_path(value)


FileKind = Literal["hf-model", "hf-dataset", "url", "path", "s3", "ngc-model", "ngc-catalog", "git", "wheels", "installer", "output"]
ARTIFACT_KINDS: tuple[str, ...] = (*get_args(FileKind), "image")


class _ArtifactRecord(Model):
    """What every artifact has: id, kind, typed source, its files and extra blobs.

    Two record types share it, chosen by `kind` (a discriminated union, `Artifact`): an image has an
    `ImageInfo` and a file artifact has none, so code that holds one never asks which it has.
    """

    id: str
    kind: str  # narrowed by each record type; declared here so it is validated before `source`
    # `file`: a single plain file that *is* the artifact (files/<name>); `tree`: files below the artifact id.
    layout: Literal["tree", "file"] = "tree"
    source: Source
    files: list[FileEntry] = Field(default_factory=list)
    if TYPE_CHECKING:  # declared by each record type, after `image` (see below); named here for the methods
        blobs: list[Digest]
        signature: ModelSignature | None

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
        return check_artifact_id(value)

    @model_validator(mode="after")
    def _unique_paths(self) -> _ArtifactRecord:
        # Two entries for one path: a reviewer signing the manifest cannot tell which bytes a job gets.
        # Case-folded too: `Config.json` and `config.json` collide on case-insensitive media (FAT32, NTFS, APFS).
        seen: dict[str, str] = {}
        for entry in self.files:
            folded = entry.path.casefold()
            if folded in seen:
                raise ValueError(f"path {entry.path!r} appears twice (as {seen[folded]!r}; also case-folded)")
            seen[folded] = entry.path
            if len(self.id) + 1 + len(entry.path.encode()) > MAX_PATH_BYTES:
                raise ValueError(f"path {entry.path[:40]!r}... under {self.id[:40]!r} is longer than {MAX_PATH_BYTES} bytes")
        return self

    def all_blobs(self) -> set[str]:
        return {f.sha256 for f in self.files} | {b.hex for b in self.blobs}

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def content_bytes(self) -> int:
        """What the artifact weighs in progress and summaries: its files (an image says its own size)."""
        return self.total_bytes

    def content_digest(self) -> str:
        """A digest of what this artifact is: used to tell whether a destination already has it.

        Over the record as one artifact type used to dump it, `"image": null` included for a file
        artifact: ingest markers and inventories written before the split name these digests, and a
        changed digest would make every site re-ingest and every preflight refuse.
        """
        payload = {"image": None, **self.model_dump(mode="json", exclude={"source"})}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# `blobs` and `signature` are declared per record type, after `image`: a manifest keeps its keys' order.
_BLOBS_DESCRIPTION = "extra blobs (image manifests, configs, layers), as sha256:<hex>"


class FileArtifact(_ArtifactRecord):
    """A model, dataset, file, repository, wheel set, installer or job output: files, each a blob."""

    kind: FileKind
    blobs: list[Digest] = Field(default_factory=list, description=_BLOBS_DESCRIPTION)
    signature: ModelSignature | None = None  # v1.1: a model-signing signature checked at build

    @model_validator(mode="before")
    @classmethod
    def _no_image(cls, value: Any) -> Any:
        # Cache records and ingest markers written before the split carry `"image": null` for every file
        # artifact; null is no image, so they still read. An image here (not null) is refused.
        if isinstance(value, dict) and "image" in value and value["image"] is None:
            return {k: v for k, v in value.items() if k != "image"}
        return value


class ImageArtifact(_ArtifactRecord):
    """A container image: its manifest, config and layers (and any referrers), each a blob."""

    kind: Literal["image"]
    image: ImageInfo
    blobs: list[Digest] = Field(default_factory=list, description=_BLOBS_DESCRIPTION)
    signature: ModelSignature | None = None  # never set for an image (older records carry `null`)

    @property
    def referrers(self) -> list[Referrer]:
        return list(self.image.referrers or [])

    @property
    def content_bytes(self) -> int:
        return self.total_bytes or self.image.size


Artifact = Annotated[ImageArtifact | FileArtifact, Field(discriminator="kind")]
"""One artifact of a bundle: an `ImageArtifact` or a `FileArtifact`, told apart by `kind`."""

_ARTIFACT = TypeAdapter(Artifact)


def field_path(error: ErrorDetails) -> str:
    """`artifacts.1.files.0.path`, the field a validation error names, as the manifest spells it.

    pydantic puts the union's tag (the artifact's kind) after an artifact's index; it is not a key of
    the manifest, so it is left out. A kind that is no record type's is named as the `kind` field.
    """
    parts = list(error["loc"])
    if len(parts) >= 3 and parts[0] == "artifacts" and isinstance(parts[1], int) and parts[2] in ARTIFACT_KINDS:
        del parts[2]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("kind")
    return ".".join(str(p) for p in parts)


def error_message(error: ErrorDetails) -> str:
    """pydantic's message, but for a missing or unknown kind the one a plain field gives (as before the union)."""
    if error["type"] == "union_tag_not_found":
        return "Field required"
    if error["type"] == "union_tag_invalid":
        return "Input should be " + ", ".join(repr(k) for k in ARTIFACT_KINDS[:-1]) + f" or {ARTIFACT_KINDS[-1]!r}"
    return error["msg"]


def parse_artifact(value: Any) -> ImageArtifact | FileArtifact:
    """An artifact record from its JSON form (a dict, or bytes/str of JSON); pydantic.ValidationError if invalid."""
    if isinstance(value, (bytes, str)):
        return _ARTIFACT.validate_json(value)
    return _ARTIFACT.validate_python(value)


class Lineage(Model):
    """The bundle a delta was built against."""

    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str
    created: str


class Evidence(Model):
    """(v1.1) The supply-chain documents beside the manifest, pinned by it (see docs/security.md).

    `artifacts_sha256` is the digest of the artifact list (`artifacts_digest`): it is the provenance's
    subject, so the provenance names what this manifest carries without naming the manifest's own bytes,
    which pin the provenance (a digest cannot name a file that contains it).
    """

    artifacts_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    sbom_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    provenance_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def artifacts_digest(artifacts: list[ImageArtifact | FileArtifact]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace, no nulls) of an artifact list."""
    payload = [a.model_dump(mode="json", exclude_none=True) for a in artifacts]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Manifest(Model):
    """manifest.json: schema version, name, lineage, the resolution digest, the artifacts and the (redacted) spec."""

    schema_version: int = SCHEMA_VERSION
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f/\\]+$")
    created: str = Field(max_length=64)
    tool: str = "airlift"
    # The airlift that wrote it (absent in bundles older than the field): the far side names it when it
    # cannot read the schema, so the operator knows which airlift to install.
    airlift_version: str | None = Field(default=None, max_length=64, pattern=VERSION_RE)
    since: Lineage | None = None
    # sha256 over every resolved reference (commit, digest, ETag...): equal means nothing changed upstream.
    resolution: str | None = None
    artifacts: list[Artifact]
    spec: dict[str, Any] | None = None  # the spec, redacted; semi-trusted, so validated as a Spec on read
    evidence: Evidence | None = None  # v1.1: absent in older manifests, which still verify

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

    def artifact(self, artifact_id: str) -> ImageArtifact | FileArtifact | None:
        return next((a for a in self.artifacts if a.id == artifact_id), None)

    def all_blobs(self) -> set[str]:
        blobs: set[str] = set()
        for artifact in self.artifacts:
            blobs |= artifact.all_blobs()
        if self.evidence is not None:  # the SBOM and provenance travel as blobs too
            blobs |= {self.evidence.sbom_sha256, self.evidence.provenance_sha256}
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
        version = raw.get("schema_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            built_by = raw.get("airlift_version")
            by = f" (written by airlift {built_by})" if isinstance(built_by, str) and len(built_by) <= 64 and re.match(VERSION_RE, built_by) else ""
            raise ManifestError(
                f"{origin}: schema_version {version}{by} is newer than this airlift {__version__} reads "
                f"(schema_version {SCHEMA_VERSION}); install the airlift the bundle carries (sh install.sh) or a newer one"
            )
        if version != SCHEMA_VERSION:
            raise ManifestError(f"{origin}: schema_version {raw.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})")
        try:
            manifest = cls.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise ManifestError(f"{origin}: {field_path(error)}: {error_message(error)}") from None
        ids = [a.id for a in manifest.artifacts]
        if len(ids) != len(set(ids)):
            raise ManifestError(f"{origin}: duplicate artifact ids")
        return manifest


def now_iso() -> str:
    """The current UTC time, to the second, as `YYYY-MM-DDTHH:MM:SSZ`."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

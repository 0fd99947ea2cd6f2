"""The spec (`airgap.yaml`): what to carry across the gap. Unknown keys are errors."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from airlift.config.installer import Installer
from airlift.config.jobspec import NAME_RE, Job, Strict
from airlift.config.mounts import mount_problems
from airlift.config.ngcspec import NGC_TARGET, NgcCatalog, ngc_artifact_id
from airlift.config.yamlload import format_loc, read_located_yaml, validate_located
from airlift.util.errors import InputError
from airlift.util.names import no_control, ref_name

HF_REPO_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
PLATFORM_RE = r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$"
SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


# A git ref or hub revision as a name: util/names.py `ref_name` (git check-ref-format's rules, minus the rare ones).
GIT_SCHEMES = {"https", "ssh", "git", "file"}


_ref_name, _no_control = ref_name, no_control  # the one definition of each, shared with the manifest records


def requirement(line: str) -> str:
    """One PEP 508 requirement (`name[extras] specifier ; marker`); pip options and URLs are refused."""
    from packaging.requirements import InvalidRequirement, Requirement

    text = line.strip()
    if text.startswith("-"):
        raise ValueError(f"{text!r}: pip options are not allowed, only PEP 508 requirements")
    try:
        parsed = Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(f"{text!r} is not a PEP 508 requirement: {str(exc).splitlines()[0]}") from None
    if parsed.url:
        raise ValueError(f"{text!r}: direct URL requirements are not allowed (pin a version from the index)")
    return str(parsed)


def _safe_name(value: str) -> str:
    if not SAFE_NAME_RE.match(value) or value in {".", ".."}:
        raise ValueError(f"{value!r} is not a safe file name (letters, digits, . _ + -)")
    return value


class SignatureTrust(Strict):
    """Trust material for an OpenSSF model-signing signature the repository carries (airlift/bundle/modelsig.py).

    Exactly one of `key` (an elliptic-curve public key, PEM) or `certificate_chain` (PEM certificates the
    signing certificate must chain to). The files are read at build time and travel in the bundle, pinned
    by the manifest, so `verify --model-signatures` can check again on the far side with no network.
    """

    key: str | None = Field(default=None, min_length=1)
    certificate_chain: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    signature: str = Field(default="model.sig", description="the signature file's path inside the repository")

    @field_validator("signature")
    @classmethod
    def _signature(cls, value: str) -> str:
        if value.startswith("/") or any(part in {"", ".", ".."} for part in value.split("/")):
            raise ValueError(f"{value!r} must be a relative path inside the repository")
        return _no_control(value, "signature")

    @model_validator(mode="after")
    def _one_kind(self) -> SignatureTrust:
        if (self.key is None) == (self.certificate_chain is None):
            raise ValueError("give exactly one of key or certificate_chain")
        return self

    @property
    def trust_files(self) -> list[str]:
        return [self.key] if self.key is not None else list(self.certificate_chain or [])


class HfRepo(Strict):
    """A Hugging Face model or dataset repository."""

    hf: str = Field(pattern=HF_REPO_RE, description="Repository id, org/name")
    revision: str = Field(default="main", min_length=1, description="Branch, tag or commit")
    allow: list[str] | None = Field(default=None, description="Only files matching these globs")
    ignore: list[str] | None = Field(default=None, description="Skip files matching these globs")
    verify_signature: SignatureTrust | None = None  # v1.1: check the repo's model-signing signature at build

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        return _ref_name(value)


class NgcModel(Strict):
    """An NVIDIA NGC model, `org/[team/]name[:version]`."""

    ngc: Annotated[str, Field(pattern=NGC_TARGET)] | NgcCatalog  # v1.1: `org/team/*` or a catalog (config/ngcspec.py)
    allow: list[str] | None = None
    verify_signature: SignatureTrust | None = None  # v1.1: check the model's model-signing signature at build


def _optional_safe_name(value: str | None) -> str | None:
    """A file name the spec gives (`name:`), checked as `_safe_name` does: the validator of each kind with one."""
    return None if value is None else _safe_name(value)


class UrlFile(Strict):
    """One file over HTTP(S), optionally pinned by sha256."""

    url: str
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    name: str | None = None

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return _no_control(value, "url")

    _name = field_validator("name")(_optional_safe_name)

    @property
    def file_name(self) -> str:
        return self.name or _safe_name(posixpath.basename(urlparse(self.url).path) or "download")


class LocalPath(Strict):
    """A local file or directory."""

    path: str = Field(min_length=1)
    name: str | None = None

    _name = field_validator("name")(_optional_safe_name)

    @property
    def file_name(self) -> str:
        return self.name or _safe_name(Path(self.path.rstrip("/")).name)


class S3Prefix(Strict):
    """Every object under an S3 prefix."""

    s3: str = Field(pattern=r"^s3://[a-z0-9.-]{3,63}(/.*)?$")
    name: str | None = None

    @property
    def file_name(self) -> str:
        return self.name or _safe_name(self.s3.rstrip("/").rsplit("/", 1)[-1])


class ImageRef(Strict):
    """A container image: from a registry (default) or saved from the local Docker engine."""

    ref: str = Field(min_length=1)
    platform: str | None = Field(default=None, pattern=PLATFORM_RE)
    from_: Literal["registry", "docker"] = Field(default="registry", alias="from")
    referrers: bool = Field(default=True, description="carry the image's referrers (signatures, attestations, SBOMs)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GitRepo(Strict):
    """A git repository, pinned to the commit its ref resolves to."""

    git: str = Field(min_length=1)
    ref: str = Field(default="HEAD", min_length=1)
    name: str | None = None

    @field_validator("git")
    @classmethod
    def _git_url(cls, value: str) -> str:
        # Only real transports: `ext::` and friends run commands, and a leading '-' reads as an option.
        scheme = urlparse(value).scheme
        local = value.startswith("/")  # an absolute path: git's local transport, never an option
        if not local and (scheme not in GIT_SCHEMES or "::" in value.split("/", 1)[0]):
            raise ValueError(f"{value!r}: only https://, ssh://, git://, file:// URLs and absolute paths are allowed")
        return _no_control(value, "git")

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        return value if value == "HEAD" else _ref_name(value)

    _name = field_validator("name")(_optional_safe_name)

    @property
    def repo_name(self) -> str:
        base = self.git.rstrip("/").rsplit("/", 1)[-1]
        return self.name or _safe_name(base.removesuffix(".git"))


class Wheels(Strict):
    """Python wheels for a target Python and platform, resolved by pip."""

    requirements: list[str] | str = Field(description="PEP 508 requirements, or the path of a requirements file of them")
    python: str = Field(default="3.11", pattern=r"^3\.\d+$")
    platform: str = Field(default="manylinux_2_28_x86_64", pattern=r"^[a-z0-9][a-z0-9_]*$")
    implementation: Literal["cp", "pp", "py"] = "cp"

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str):
            if value.startswith("-") or not value.strip():
                raise ValueError(f"{value!r} is not a requirements file path")
            return _no_control(value, "requirements")
        if not value:
            raise ValueError("give at least one requirement")
        return [requirement(item) for item in value]

    def requirement_lines(self) -> list[str]:
        """The validated PEP 508 requirements, reading the requirements file if one was named.

        Raises:
            InputError: The file is missing, or one of its lines is not a PEP 508 requirement.
        """
        if not isinstance(self.requirements, str):
            return list(self.requirements)
        path = Path(self.requirements)
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise InputError(f"wheels.requirements: {path}: cannot read requirements file: {exc.strerror or exc}") from None
        out = []
        for number, line in enumerate(lines, 1):
            text = line.split(" #", 1)[0].strip()
            if not text or text.startswith("#"):
                continue
            try:
                out.append(requirement(text))
            except ValueError as exc:
                raise InputError(f"{path}:{number}: {exc}") from None
        return out


def _tagger(*keys: str):
    def pick(value: Any) -> str | None:
        if isinstance(value, str):
            return "kind:string"
        for key in keys:
            if (isinstance(value, dict) and key in value) or (isinstance(value, BaseModel) and key in type(value).model_fields):
                return f"kind:{key}"
        return None

    return pick


ModelEntry = Annotated[
    Annotated[HfRepo, Tag("kind:hf")] | Annotated[NgcModel, Tag("kind:ngc")],
    Discriminator(_tagger("hf", "ngc"), custom_error_type="source_kind", custom_error_message="expected a mapping with one of: hf, ngc"),
]
DatasetEntry = Annotated[
    Annotated[HfRepo, Tag("kind:hf")]
    | Annotated[UrlFile, Tag("kind:url")]
    | Annotated[LocalPath, Tag("kind:path")]
    | Annotated[S3Prefix, Tag("kind:s3")],
    Discriminator(_tagger("hf", "url", "path", "s3"), custom_error_type="source_kind", custom_error_message="expected a mapping with one of: hf, url, path, s3"),
]
ImageEntry = Annotated[
    Annotated[str, Tag("kind:string")] | Annotated[ImageRef, Tag("kind:ref")],
    Discriminator(_tagger("ref"), custom_error_type="image_kind", custom_error_message="expected an image reference or a mapping with ref"),
]


class Spec(Strict):
    """Everything one workload needs on the far side of the gap."""

    name: str = Field(pattern=NAME_RE)
    platform: str = Field(default="linux/amd64", pattern=PLATFORM_RE)
    models: list[ModelEntry] = Field(default_factory=list)
    datasets: list[DatasetEntry] = Field(default_factory=list)
    images: list[ImageEntry] = Field(default_factory=list)
    repos: list[GitRepo] = Field(default_factory=list)
    wheels: list[Wheels] = Field(default_factory=list)
    jobs: list[Job] = Field(default_factory=list)
    installer: Installer | None = None

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-field checks pydantic cannot express per field: (location, problem) pairs."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: dict[str, tuple[str | int, ...]] = {}
        for loc, artifact_id in self.located_artifact_ids():
            if artifact_id in seen:
                problems.append((loc, f"artifact id {artifact_id!r} is already used; give one of them a name"))
            seen.setdefault(artifact_id, loc)
        image_refs = {image_ref(entry).ref for entry in self.images}
        job_names = [job.name for job in self.jobs]
        for index, job in enumerate(self.jobs):
            if job_names.count(job.name) > 1:
                problems.append((("jobs", index, "name"), f"job name {job.name!r} is used twice"))
            if job.image not in image_refs:
                problems.append((("jobs", index, "image"), f"{job.image!r} is not listed under images"))
            for used_index, used in enumerate(job.uses):
                if used not in seen:
                    problems.append((("jobs", index, "uses", used_index), f"{used!r} is not an artifact id of this spec"))
            for needed_index, needed in enumerate(job.needs):
                if needed not in job_names or needed == job.name:
                    problems.append((("jobs", index, "needs", needed_index), f"{needed!r} is not another job of this spec"))
        return problems + mount_problems(self.jobs, set(seen))

    def located_artifact_ids(self) -> list[tuple[tuple[str | int, ...], str]]:
        return [(loc, artifact_id) for loc, artifact_id, _ in self._artifacts()]

    def artifacts(self) -> list[tuple[str, Any]]:
        """(artifact id, entry) for every artifact, paired where they are made (never zipped by index);
        all `wheels` entries form one artifact, a tuple."""
        return [(artifact_id, entry) for _, artifact_id, entry in self._artifacts()]

    def _artifacts(self) -> list[tuple[tuple[str | int, ...], str, Any]]:
        out: list[tuple[tuple[str | int, ...], str, Any]] = []
        for section in ("models", "datasets", "images", "repos"):
            for index, entry in enumerate(getattr(self, section)):
                out.append(((section, index), artifact_id_of(entry, section), entry))
        if self.wheels:
            out.append((("wheels",), "wheels", tuple(self.wheels)))
        if self.installer is not None:
            out.append((("installer",), "tools/airlift", self.installer))
        return out

    def redacted(self) -> Spec:
        """This spec with URL credentials (userinfo, query strings) removed: what a manifest may carry."""
        from airlift.util.redact import redact_url

        datasets = [e.model_copy(update={"url": redact_url(e.url)}) if isinstance(e, UrlFile) else e for e in self.datasets]
        repos = [r.model_copy(update={"git": redact_url(r.git)}) if "://" in r.git else r for r in self.repos]
        return self.model_copy(update={"datasets": datasets, "repos": repos})

    def artifact_ids(self) -> list[str]:
        return [artifact_id for _, artifact_id in self.located_artifact_ids()]

    def entries(self) -> list[tuple[str, Any]]:
        """(section, entry) for every artifact; all `wheels` entries form one artifact, a tuple."""
        return [(str(loc[0]), entry) for loc, _, entry in self._artifacts()]


def image_ref(entry: str | ImageRef) -> ImageRef:
    """The ImageRef of an `images:` entry (a string is a registry reference)."""
    return ImageRef(ref=entry) if isinstance(entry, str) else entry


def artifact_id_of(entry: Any, section: str) -> str:
    """The artifact id of the contract: where the artifact lives in manifests, on S3 and under shared_root."""
    if isinstance(entry, HfRepo):
        return f"{'models' if section == 'models' else 'datasets'}/{entry.hf}"
    if isinstance(entry, NgcModel):
        return ngc_artifact_id(entry.ngc)
    if isinstance(entry, (UrlFile, LocalPath, S3Prefix)):
        return f"files/{entry.file_name}"
    if isinstance(entry, (str, ImageRef)):
        return f"images/{image_ref(entry).ref}"
    if isinstance(entry, GitRepo):
        return f"repos/{entry.repo_name}"
    if isinstance(entry, (Wheels, tuple)):
        return "wheels"
    if isinstance(entry, Installer):
        return "tools/airlift"
    raise TypeError(f"unknown spec entry {entry!r}")


def load_spec(path: str | Path) -> Spec:
    """Parse and validate a spec file, or raise InputError with `file:line: field: problem`."""
    doc = read_located_yaml(Path(path), "spec")
    spec: Spec = validate_located(Spec, doc)
    for loc, problem in spec.reference_problems():
        line = doc.line_of(loc)
        where = f"{doc.path}:{line}" if line else str(doc.path)
        raise InputError(f"{where}: {format_loc(loc)}: {problem}")
    for index, entry in enumerate(spec.datasets):  # checked here, not after a flow run has started
        if isinstance(entry, LocalPath) and not Path(entry.path).expanduser().exists():
            raise InputError(f"{doc.path}:{doc.line_of(('datasets', index, 'path'))}: datasets[{index}].path: {entry.path} does not exist")
    for wheels in spec.wheels:
        wheels.requirement_lines()  # a requirements file's lines are spec input too: refuse them now
    return spec

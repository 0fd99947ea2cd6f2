"""The site profile (`site.yaml`): where things go inside the air gap. `extends` merges a base profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from airlift.config.yamlload import LocatedYaml, input_error_from, read_located_yaml
from airlift.util.errors import InputError


class Strict(BaseModel):
    """Site models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistryTarget(Strict):
    """The air-gapped registry images are pushed to (digests unchanged)."""

    url: str = Field(min_length=1, description="host[:port][/prefix]; images pushed as <url>/<repository path>:<tag>")
    insecure: bool = False

    @field_validator("url")
    @classmethod
    def _no_scheme(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("give host[:port][/prefix] without a scheme (use insecure: true for plain HTTP)")
        return value.rstrip("/")


class DockerTarget(Strict):
    """A Docker engine images are also loaded into."""

    host: str = Field(min_length=1)


class S3Target(Strict):
    """S3-compatible storage artifacts are uploaded to."""

    endpoint_url: str | None = None
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = ""
    region: str | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if any(part in {"", ".", ".."} for part in value.split("/")) and value:
            raise ValueError("prefix must be a relative key prefix without empty, '.' or '..' parts")
        return value


class SlurmSsh(Strict):
    """(v1.1) Run sbatch/squeue/scontrol/scancel on a login node over ssh (NeMo-Run's tunnel).

    The scripts, logs and checkouts stay on the shared filesystem this host mounts; only the Slurm
    commands travel, every word shell-quoted for the remote shell.
    """

    host: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$|^\[[0-9A-Fa-f:.]+\]$")
    user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    port: int = Field(default=22, ge=1, le=65535)
    identity: Path | None = None
    options: dict[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$")], Annotated[str, Field(pattern=r"^[^\s\x00-\x1f]+$")]] = Field(
        default_factory=dict, description="ssh -o KEY=VALUE (e.g. UserKnownHostsFile)",
    )
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict, description="variables the remote Slurm commands need (e.g. SLURM_CONF)",
    )

    @field_validator("identity")
    @classmethod
    def _identity(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()


class SlurmTarget(Strict):
    """The Slurm partition and account jobs go to, and how their containers run."""

    partition: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    account: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    container_runtime: Literal["pyxis", "docker", "apptainer", "none"] = "pyxis"
    extra_args: list[str] = Field(default_factory=list)
    ssh: SlurmSsh | None = None  # v1.1: submit through a login node


class PrefectJobsTarget(Strict):
    """For sites whose scheduler is Prefect: jobs run as flow runs of this deployment (see flows/job.py)."""

    deployment: str = Field(default="run-job/run-job", pattern=r"^[^/]+/[^/]+$")
    container_runtime: Literal["docker", "none"] = "docker"


class TrustConfig(Strict):
    """The public keys this site accepts bundles from: ingest, submit and serve refuse any other bundle."""

    keys: list[Path] = Field(min_length=1, description="Ed25519 public keys (PEM); relative paths are relative to the profile")


class Site(Strict):
    """Where things go inside the air gap (the site profile)."""

    registry: RegistryTarget | None = None
    docker: DockerTarget | None = None
    s3: S3Target | None = None
    shared_root: Path | None = None
    store: Path | None = None
    slurm: SlurmTarget | None = None
    prefect: PrefectJobsTarget | None = None
    trust: TrustConfig | None = None

    def trusted_keys(self, *, extra: list[str] | None = None) -> list[str]:
        """The public keys a bundle may be signed by: `extra` (e.g. `--pubkey`) plus `trust.keys`.

        Args:
            extra: Keys given for this one command, listed first.

        Returns:
            Paths of Ed25519 public keys; empty when signatures are not required.
        """
        return [*(extra or []), *(str(k) for k in (self.trust.keys if self.trust else []))]

    def required_shared_root(self, *, source: str) -> Path:
        """The shared_root, for a command that cannot work without one (export, inventory).

        Raises:
            InputError: The profile (`source`) has no shared_root.
        """
        if self.shared_root is None:
            raise InputError(f"{source}: shared_root: is required here")
        return self.shared_root

    @field_validator("shared_root", "store")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        # It appears in #SBATCH lines and container mount options, which no quoting can protect.
        if value is not None and any(c.isspace() or c in ",:" or ord(c) < 32 for c in str(value)):
            raise ValueError("must not contain whitespace, ',' , ':' or control characters")
        return value


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_chain(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], list[LocatedYaml]]:
    doc = read_located_yaml(path, "site profile")
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    data = dict(data)
    trust = data.get("trust")
    if isinstance(trust, dict) and isinstance(trust.get("keys"), list):
        # Key paths are relative to the profile that names them, wherever the command runs.
        data["trust"] = {**trust, "keys": [str(path.parent / k) if isinstance(k, str) else k for k in trust["keys"]]}
    parent = data.pop("extends", None)
    if parent is None:
        return data, [doc]
    if not isinstance(parent, str):
        raise InputError(f"{path}:{doc.line_of(['extends'])}: extends: must be a file path")
    parent_path = (path.parent / parent).resolve()
    if parent_path in seen:
        raise InputError(f"{path}:{doc.line_of(['extends'])}: extends: {parent} makes a cycle")
    base, docs = _load_chain(parent_path, (*seen, parent_path))
    return _merge(base, data), [*docs, doc]


def load_site(path: str | Path) -> Site:
    """Parse and validate a site profile (following `extends`), or raise InputError naming file and field."""
    path = Path(path)
    data, docs = _load_chain(path.resolve(), (path.resolve(),))
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        raise input_error_from(exc, docs, Site) from None

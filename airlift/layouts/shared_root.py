"""Where things live under `shared_root` (the contract's air-gapped layouts), and the ingest markers.

Ingest writes these paths; `serve` and job preflight read them. Keeping the conventions here lets the
air-gapped side's packages share them without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from airlift.bundle.manifest import Artifact
from airlift.config.mounts import output_path
from airlift.util.confine import EscapeError, read_path

MARKER_DIR = ".airlift/ingested"
MAX_MARKER_BYTES = 64 << 20  # a marker holds one artifact's file list: 64 MiB is ~300k files


class SharedRootLayout:
    """Every path of the contract's layout under `shared_root`, named here once (as huggingface_hub's
    `repo_folder_name` names its cache folders). The `*_relative` forms are for `ConfinedRoot`."""

    HF_HOME = "hf"  # HF_HOME=<root>/hf: the hub cache is its hub/ folder
    LOGS = "logs"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def git_repo_relative(name: str) -> str:
        """`repos/<name>.git`: the bare repository of the `repos/<name>` artifact."""
        return f"repos/{name}.git"

    def git_repo(self, name: str) -> Path:
        return self.root / self.git_repo_relative(name)

    @staticmethod
    def hf_repo_relative(kind: str, repo: str) -> str:
        """`hf/hub/<models|datasets>--<org>--<name>`: a hub repository's folder in the HF cache."""
        return f"{SharedRootLayout.HF_HOME}/hub/{kind}--{repo.replace('/', '--')}"

    @staticmethod
    def hf_artifact_relative(artifact: Artifact) -> str:
        """The HF cache folder of an `hf-model` or `hf-dataset` artifact."""
        return SharedRootLayout.hf_repo_relative("models" if artifact.kind == "hf-model" else "datasets", artifact.source.repo)

    @property
    def hf_home(self) -> Path:
        return self.root / self.HF_HOME

    @property
    def logs(self) -> Path:
        """Where job output goes (`<job>-<id>.out`)."""
        return self.root / self.LOGS

    def marker(self, artifact_id: str) -> Path:
        """Where the ingest marker of `artifact_id` lives."""
        return self.root / MARKER_DIR / f"{quote(artifact_id, safe='')}.json"


def marker_path(root: Path, artifact_id: str) -> Path:
    """Where the ingest marker of `artifact_id` lives under `root`."""
    return SharedRootLayout(root).marker(artifact_id)


class IngestMarker(BaseModel):
    """Written last when an artifact is materialized: what is there, where, and the artifact itself
    (so `serve` and job preflight work from the root alone). A job can write under shared_root, so a
    marker is validated when read, and one that does not validate counts as absent."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str
    content_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    files: int = Field(ge=0)
    bytes: int = Field(ge=0)
    location: str
    ingested_at: str
    artifact: Artifact

    def matches(self, artifact: Artifact) -> bool:
        """True when this marker records exactly `artifact` (same content) and its location still exists."""
        return self.id == artifact.id and self.content_digest == artifact.content_digest() and Path(self.location).exists()


def read_marker(root: Path, artifact_id: str) -> IngestMarker | None:
    """The marker of `artifact_id` under `root`, or None when there is none (or it does not validate)."""
    return load_marker(marker_path(root, artifact_id))


def load_marker(path: Path) -> IngestMarker | None:
    """The marker in `path`, or None when it is missing or does not validate."""
    # A job can plant a FIFO (which would stop `serve` from ever listening) or /dev/zero here: the
    # guarded opener refuses both without blocking, and no marker is read past MAX_MARKER_BYTES.
    try:
        return IngestMarker.model_validate_json(read_path(path, max_bytes=MAX_MARKER_BYTES))
    except (OSError, ValueError, EscapeError):
        return None


# -- v1.1: a job's pinned checkouts (read-only) and its writable output directory, and the run records
def checkout_path(root: Path, name: str, commit: str) -> Path:
    """`checkouts/<name>/<commit>/`: a read-only working tree of bundled repo `name` at `commit`."""
    return root / "checkouts" / name / commit


def output_dir(root: Path, job: str, run_id: str) -> Path:
    """`outputs/<job>/<run id>/`: the job's `$AIRLIFT_OUTPUT` for one run."""
    return root / "outputs" / job / run_id


def run_record_path(root: Path, job: str, run_id: str) -> Path:
    """Where submit records one run of a job (what export reads to tell a finished run from one in progress)."""
    return root / ".airlift" / "runs" / job / f"{run_id}.json"


class RunRecord(BaseModel):
    """One submitted run of a job: written by submit, read by export. Jobs can write under shared_root,
    so a record is validated when read, and its exit file is only believed when it is inside the root."""

    model_config = ConfigDict(extra="forbid")

    spec: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    job: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    run_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    backend: str
    scheduler_id: str
    exit_file: str = ""
    log: str = ""
    outputs: list[Annotated[str, AfterValidator(output_path)]] = Field(default_factory=list)  # never `..` or absolute
    submitted_at: str

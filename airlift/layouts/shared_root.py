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

MARKER_DIR = ".airlift/ingested"


def marker_path(root: Path, artifact_id: str) -> Path:
    """Where the ingest marker of `artifact_id` lives under `root`."""
    return root / MARKER_DIR / f"{quote(artifact_id, safe='')}.json"


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
    try:
        return IngestMarker.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
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

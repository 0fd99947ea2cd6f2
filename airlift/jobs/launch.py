"""One run of a job, decided before it is submitted: its run id, its output directory and its mounts.

- `AIRLIFT_OUTPUT=<shared_root>/outputs/<job>/<run id>` is created (writable) before the job starts, and
  `WANDB_DIR` points there, so W&B's offline runs land where `airlift export` finds them.
- shared_root is bound read-only at its own path and `$AIRLIFT_OUTPUT` read-write at its own
  path (`container_binds`): a job writes only its run's output, never `.airlift/` or another artifact.
- Each `mounts:` entry becomes a read-only bind of a place under shared_root: a git repo's checkout at
  exactly the pinned commit (`checkouts/<name>/<commit>/`, made here on the shared filesystem this host
  mounts), a plain `files/...` or NGC model directory, or a read-only view of a Hugging Face snapshot.
- Preflight refuses a job whose mount source is missing or whose checkout is not at the pinned commit.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airlift.bundle.manifest import Manifest
from airlift.config.spec import Job, Spec
from airlift.layouts.checkout import checkout_state, make_checkout, make_view
from airlift.layouts.shared_root import (
    RunRecord,
    SharedRootLayout,
    checkout_path,
    output_dir,
    read_marker,
    run_record_path,
)
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import is_within, write_bytes_atomic

# Artifacts sharedfs materializes as `<root>/<artifact id>`.
FILE_KINDS = ("url", "path", "s3", "ngc-model", "ngc-catalog", "wheels", "output")


@dataclass(frozen=True)
class BoundMount:
    """A mount as the runtime sees it: a source path under shared_root, read-only at `target`."""

    source: str
    target: str
    env_name: str


@dataclass
class Launch:
    """One run of one job: its id, its `$AIRLIFT_OUTPUT` and its resolved mounts (and what stops them)."""

    run_id: str
    output: str
    mounts: list[BoundMount] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def new_run_id() -> str:
    """A run id that sorts by time and never collides: `20261203T084000Z-1a2b3c`."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _source(root: Path, manifest: Manifest, job: Job, index: int, *, materialize: bool) -> tuple[Path | None, str | None]:
    """Where mount `index` of `job` comes from under `root`, or why it cannot be mounted."""
    mount = job.mounts[index]
    artifact = manifest.artifact(mount.from_)
    if artifact is None:
        raise InputError(f"manifest.json: spec.jobs[{job.name}].mounts[{index}].from: {mount.from_} is not in the bundle")
    marker = read_marker(root, artifact.id)
    if marker is None or marker.content_digest != artifact.content_digest():
        return None, f"job {job.name}: mount {mount.from_} is not ingested under {root}; run airlift ingest"
    if artifact.kind == "git":
        name, commit = artifact.id.removeprefix("repos/"), artifact.source.commit
        path = checkout_path(root, name, commit)
        unsafe = _unsafe_source(root, path)
        if unsafe:
            return None, f"job {job.name}: mount {mount.from_}: {unsafe}"
        if materialize:
            try:
                make_checkout(root, name, commit)
            except WorkError as exc:
                return None, f"job {job.name}: mount {mount.from_}: {exc}"
        problem = checkout_state(path, commit) if materialize or path.exists() else None
        return path, (f"job {job.name}: mount {mount.from_}: {problem}" if problem else None)
    # The source comes from the artifact id through the layout ingest writes (sharedfs), never from the
    # marker's `location`: a job can forge a marker, and that text would reach a runtime's mount list.
    if artifact.kind in ("hf-model", "hf-dataset"):
        relative = f"checkouts/{artifact.id}/{artifact.source.commit}"
        snapshot = root / SharedRootLayout.hf_artifact_relative(artifact) / "snapshots" / artifact.source.commit
        problem = _unsafe_source(root, snapshot)
        if problem:
            return None, f"job {job.name}: mount {mount.from_}: {problem}"
        if materialize:
            make_view(root, relative, [(f.path, snapshot / f.path) for f in artifact.files])
        return root / relative, None
    if artifact.kind not in FILE_KINDS:
        return None, f"job {job.name}: mount {mount.from_}: a {artifact.kind} artifact has no place under {root} to mount"
    location = root / artifact.id  # files/<name>, models/..., datasets/...: as sharedfs materializes them
    problem = _unsafe_source(root, location)
    if problem:
        return None, f"job {job.name}: mount {mount.from_}: {problem}"
    if not location.exists():
        return None, f"job {job.name}: mount {mount.from_}: {location} is missing; run airlift ingest"
    return location, None


def _unsafe_source(root: Path, source: Path) -> str | None:
    """Why `source` may not be bound: it leaves shared_root (a planted symlink) or a runtime would split it."""
    if not is_within(root, source):  # a job may have planted a symlink: never bind what lies outside shared_root
        return f"{source} leads outside {root}; run airlift ingest"
    return mount_path_problem(str(source))


# Container runtimes split mount lists on ',' (pyxis, apptainer) and each entry on ':' (all three).
_UNSAFE_MOUNT_CHARACTERS = re.compile(r"[,:\x00-\x1f\x7f]")


def mount_path_problem(path: str) -> str | None:
    """Why `path` cannot be a mount's source or target, or None: it must be absolute, without ',' ':' or control characters."""
    if not path.startswith("/"):
        return f"mount path {path!r} is not absolute"
    if _UNSAFE_MOUNT_CHARACTERS.search(path):
        return f"mount path {path!r} holds ',' ':' or a control character, which a container runtime would split on"
    return None


def container_binds(root: Path | str, launch: Launch | None) -> list[tuple[str, str, bool]]:
    """Every bind of a containerised run, as (source, target, read_only), each path checked.

    shared_root is read-only at its own path; only the run's `$AIRLIFT_OUTPUT` is writable (at its own
    path, below it), then each mount, read-only. A run-less job gets shared_root read-only alone.

    Raises:
        WorkError: A source or target is not absolute or holds ',' ':' or a control character.
    """
    binds = [(str(root), str(root), True)]
    if launch is not None:
        if launch.output:
            binds.append((launch.output, launch.output, False))
        binds += [(m.source, m.target, True) for m in launch.mounts]
    for source, target, _ in binds:
        problem = mount_path_problem(source) or mount_path_problem(target)
        if problem:
            raise WorkError(f"refusing to render the job's mounts: {problem}")
    return binds


def plan_launch(manifest: Manifest, root: Path, job: Job, *, materialize: bool, run_id: str | None = None) -> Launch:
    """Decide (and with `materialize`, make) one run's output directory and mounts.

    Args:
        manifest: The trusted manifest (its artifacts pin each mount's content and commit).
        root: The site's shared_root.
        job: The job.
        materialize: Create the checkouts; False for a dry run (the output directory is `create_output`'s).
        run_id: The run's id (default: a new one).

    Returns:
        The launch; `problems` names each mount that is missing or not at its pinned commit.

    Raises:
        InputError: A mount names an artifact the bundle does not have.
    """
    run_id = run_id or new_run_id()
    output = output_dir(root, job.name, run_id)
    launch = Launch(run_id=run_id, output=str(output))
    for index, mount in enumerate(job.mounts):
        source, problem = _source(root, manifest, job, index, materialize=materialize)
        if problem:
            launch.problems.append(problem)
        if source is not None:
            launch.mounts.append(BoundMount(str(source), mount.to, mount.env_name))
    return launch


def create_output(launch: Launch, job: Job) -> None:
    """Make the run's `$AIRLIFT_OUTPUT` and its declared `outputs` directories, just before it is submitted
    (not at preflight: a refused or skipped job leaves no empty run behind)."""
    output = Path(launch.output)
    output.mkdir(parents=True, exist_ok=True)
    for sub in job.outputs:
        (output / sub).mkdir(parents=True, exist_ok=True)


def bare_launch(root: Path, job: Job) -> Launch:
    """A run with no mounts (its output directory created): for jobs submitted without a preflight's launch."""
    run_id = new_run_id()
    return Launch(run_id=run_id, output=str(output_dir(root, job.name, run_id)))


def record_run(root: Path, spec: Spec, job: Job, record: Any) -> None:
    """Keep what export needs to know about one submitted run (a JobRecord): its ids and exit file."""
    if not record.run_id:
        return
    run = RunRecord(
        spec=spec.name, job=job.name, run_id=record.run_id, backend=record.backend, scheduler_id=record.id,
        exit_file=record.exit_file, log=record.log, outputs=list(job.outputs), submitted_at=record.submitted_at,
    )
    write_bytes_atomic(run_record_path(root, job.name, record.run_id), run.model_dump_json(indent=1).encode())

"""What every job backend shares: the job environment, job selection, preflight, the job ledger, the
`JobBackend` protocol (Slurm and Prefect), submission in dependency order and the wait loop.

Preflight refuses to submit a job whose image is not in the site registry (at the bundle's digest)
or whose `uses` artifacts were not ingested under shared_root, naming every missing item.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from airlift.bundle.manifest import ImageArtifact, Manifest
from airlift.config.site import RegistryTarget, Site
from airlift.config.spec import Job, Spec, artifact_id_of
from airlift.jobs.launch import Launch, bare_launch, create_output, record_run
from airlift.jobs.sites import JobSite
from airlift.layouts.shared_root import SharedRootLayout, read_marker
from airlift.oci.client import RegistryClient
from airlift.oci.reference import airgap_reference, parse_image, split_target
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import write_bytes_atomic

# The only variables a job takes from whoever submits it: enough to find programs and a home, and
# to keep the submitter's language and time zone. Everything else (AWS_*, HF_TOKEN, proxies...) stays behind.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "TZ")


def job_environment(root: Path, job: Job, launch: Launch | None = None, *, runtime: str = "pyxis") -> dict[str, str]:
    """The contract's offline environment plus the job's own `env`.

    Args:
        root: The site's shared_root, mounted at the same path inside the job's container.
        job: The spec's job; its `env` keys were validated as variable names.
        launch: This run (its `$AIRLIFT_OUTPUT` and mounts); None renders a run-less environment.
        runtime: The container runtime; with `none` there is nothing to bind, so each mount's source
            path is given in its AIRLIFT_MOUNT_<TO> variable instead.

    Returns:
        HF_HOME, the *_OFFLINE switches, WANDB_MODE and AIRLIFT_ROOT, the offline pip/uv switches, the
        run's AIRLIFT_OUTPUT and WANDB_DIR, then the job's `env`.
    """
    wheels = str(root / "wheels")
    env = {
        "HF_HOME": str(SharedRootLayout(root).hf_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "AIRLIFT_ROOT": str(root),
        # pip and uv never reach for an index inside the gap: the bundled wheels are the index.
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": wheels,
        "UV_OFFLINE": "1",
        "UV_FIND_LINKS": wheels,
    }
    if launch is not None:
        env["AIRLIFT_OUTPUT"] = launch.output
        env["WANDB_DIR"] = launch.output
        if runtime == "none":
            env.update({mount.env_name: mount.source for mount in launch.mounts})
    env.update(job.env)
    return env


def inherited_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed variables of the submitter (INHERITED_VARIABLES), and nothing else."""
    from airlift.util.settings import inherited

    return inherited(INHERITED_VARIABLES, environ)


def spec_of(manifest: Manifest) -> Spec:
    """The spec a manifest carries (its jobs live there)."""
    if not manifest.spec:
        raise WorkError("this bundle's manifest carries no spec, so it has no jobs to submit")
    return Spec.model_validate(manifest.spec)


def select_jobs(spec: Spec, names: list[str]) -> list[Job]:
    """The named jobs (all when none are named) plus everything they need, in dependency order."""
    by_name = {job.name: job for job in spec.jobs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InputError(f"--job {unknown[0]}: no such job in the spec (jobs: {', '.join(by_name) or 'none'})")
    wanted: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            raise InputError(f"jobs: {' -> '.join((*trail, name))} is a cycle")
        for needed in by_name[name].needs:
            visit(needed, (*trail, name))
        if name not in wanted:
            wanted.append(name)

    for name in names or list(by_name):
        visit(name, ())
    return [by_name[n] for n in wanted]


def image_target(site: Site, job: Job) -> str:
    """The air-gapped reference a job's image runs from (the spec's reference without a registry)."""
    if site.registry is None:
        return job.image
    return airgap_reference(site.registry.url, parse_image(job.image))


@dataclass
class Preflight:
    """What stops the jobs from running, one line per missing image or artifact."""

    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def raise_if_missing(self) -> None:
        """Refuse to submit while anything is missing.

        Raises:
            WorkError: Names every missing image and artifact.
        """
        if self.missing:
            raise WorkError("preflight refused to submit: " + "; ".join(self.missing))


def preflight(manifest: Manifest, site: JobSite, *, jobs: list[Job], launches: dict[str, Launch] | None = None) -> Preflight:
    """What stops the jobs from running: images not in the registry at the bundle's digest, artifacts not
    ingested, mounts missing or not at their pinned commit (`launches`, see airlift.jobs.launch)."""
    result = Preflight()
    for launch in (launches or {}).values():
        result.missing += launch.problems
    profile, root, runtime = site.profile, site.shared_root, site.container_runtime
    checked_images: dict[str, bool] = {}
    for job in jobs:
        if runtime != "none":
            artifact = manifest.artifact(artifact_id_of(job.image, "images"))
            if not isinstance(artifact, ImageArtifact):
                result.missing.append(f"job {job.name}: image {job.image} is not in the bundle")
            elif profile.registry is None:
                result.missing.append(f"job {job.name}: the site has no registry to run image {job.image} from")
            else:
                target = image_target(profile, job)
                if target not in checked_images:
                    checked_images[target] = _registry_has(profile.registry, artifact.image.repository, artifact.image.tag or artifact.image.digest, artifact.image.digest)
                if not checked_images[target]:
                    result.missing.append(f"job {job.name}: image {target} ({artifact.image.digest[:19]}) is not in the registry; run airlift ingest")
        for used in job.uses:
            artifact = manifest.artifact(used)
            if artifact is None:
                result.missing.append(f"job {job.name}: uses {used}, which is not in the bundle")
                continue
            if isinstance(artifact, ImageArtifact):
                continue
            marker = read_marker(root, used)
            if marker is None or marker.content_digest != artifact.content_digest():
                result.missing.append(f"job {job.name}: artifact {used} is not ingested under {root}; run airlift ingest")
    return result


def _registry_has(registry: RegistryTarget, repository: str, reference: str, digest: str) -> bool:
    host, prefix = split_target(registry.url)
    client = RegistryClient(host, insecure=registry.insecure)
    try:
        return client.head_manifest(f"{prefix}/{repository}" if prefix else repository, reference) == digest
    except (WorkError, OSError):
        return False
    finally:
        client.close()


@dataclass
class JobRecord:
    name: str
    id: str
    script: str
    log: str
    exit_file: str
    submitted_at: str
    backend: str = "slurm"
    run_id: str = ""  # v1.1: names $AIRLIFT_OUTPUT (outputs/<job>/<run id>)


class JobLedger:
    """Which jobs of a spec were submitted, under shared_root/.airlift/jobs/<spec>.json."""

    def __init__(self, root: Path, spec_name: str) -> None:
        self.path = root / ".airlift" / "jobs" / f"{spec_name}.json"

    def load(self) -> dict[str, JobRecord]:
        try:
            return {k: JobRecord(**v) for k, v in json.loads(self.path.read_text()).items()}
        except (FileNotFoundError, ValueError, TypeError):
            return {}

    def save(self, records: dict[str, JobRecord]) -> None:
        write_bytes_atomic(self.path, json.dumps({k: vars(v) for k, v in records.items()}, indent=1).encode())


class JobBackend(Protocol):
    """A scheduler the jobs go to: Slurm (airlift.jobs.slurm) or Prefect's `run-job` deployment (airlift.jobs.prefect)."""

    name: str  # recorded as JobRecord.backend

    def submit(self, spec: Spec, job: Job, *, needs: list[JobRecord], launch: Launch) -> JobRecord:
        """Submit one run (`launch`) of a job, to run only after `needs` (the records of the jobs it needs) succeed."""
        ...

    def state(self, record: JobRecord) -> str:
        """A job's current state: PENDING, RUNNING, COMPLETED, FAILED, ..., or UNKNOWN when the scheduler forgot it."""
        ...

    def cancel(self, record: JobRecord) -> None:
        """Cancel a job that can never run."""
        ...


def should_submit_again(backend: JobBackend, previous: JobRecord | None) -> bool:
    """Whether a job the ledger knows must be submitted again: it failed, or its scheduler lost or never had it.

    A job pending, running or done is left alone, so a rerun of `submit` never runs a job twice.
    """
    if previous is None or previous.backend != backend.name:
        return True
    state = backend.state(previous)
    return state in TERMINAL_BAD or state == "UNKNOWN"


def submit_in_order(
    spec: Spec, jobs: list[Job], *, backend: JobBackend, root: Path, force: bool = False, launches: dict[str, Launch] | None = None,
) -> Submission:
    """Submit jobs in dependency order; a job pending, running or done is not submitted again.

    The ledger is saved after each submission, so a crash never forgets a submitted job.

    Args:
        spec: The spec the jobs belong to (it names the ledger).
        jobs: Jobs in dependency order (see `select_jobs`).
        backend: The scheduler.
        root: The site's shared_root (the ledger lives under it).
        force: Submit again even jobs that are pending, running or done.
        launches: Each job's run (output directory, mounts), from preflight; a job without one gets a
            fresh run with no mounts.

    Returns:
        The jobs' records (submitted now or earlier) and the names submitted now.
    """
    ledger = JobLedger(root, spec.name)
    records = ledger.load()
    submitted: list[str] = []
    for job in jobs:
        if not force and not should_submit_again(backend, records.get(job.name)):
            continue
        launch = (launches or {}).get(job.name) or bare_launch(root, job)
        create_output(launch, job)
        records[job.name] = backend.submit(spec, job, needs=[records[n] for n in job.needs if n in records], launch=launch)
        ledger.save(records)
        record_run(root, spec, job, records[job.name])
        submitted.append(job.name)
    return Submission(records={job.name: records[job.name] for job in jobs}, submitted=submitted)


TERMINAL_OK = {"COMPLETED"}
# DEPENDENCY_NEVER_SATISFIED is ours: Slurm keeps such a job PENDING forever (a job it needs failed).
TERMINAL_BAD = {
    "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
    "DEPENDENCY_NEVER_SATISFIED", "CRASHED",
}


def wait_for_jobs(
    records: dict[str, JobRecord],
    names: list[str],
    *,
    state_of: Callable[[JobRecord], str],
    cancel: Callable[[JobRecord], None],
    log: Callable[[str], None],
    poll_seconds: float = 2.0,
    timeout_seconds: float = 7 * 24 * 3600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_poll: Callable[[bool], None] | None = None,
) -> dict[str, str]:
    """Poll until every named job has ended; cancel jobs that can never run.

    Args:
        records: The ledger's records.
        names: The jobs to wait for.
        state_of: A job's current state (COMPLETED, FAILED, DEPENDENCY_NEVER_SATISFIED, ...).
        cancel: Cancels a job (used for jobs whose need failed, which Slurm would keep queued forever).
        log: Where progress lines go.
        poll_seconds: Time between polls.
        timeout_seconds: Give up after this long.
        sleep: Injected for tests.
        clock: Injected for tests.
        on_poll: Called after each poll with whether every job has ended (streams their output).

    Returns:
        Each job's final state.

    Raises:
        WorkError: Jobs were still running at the deadline.
    """
    deadline = clock() + timeout_seconds
    while True:
        states = {name: state_of(records[name]) for name in names}
        ended = all(state in TERMINAL_OK | TERMINAL_BAD for state in states.values())
        if on_poll is not None:
            on_poll(ended)
        if ended:
            for name, state in states.items():
                if state == "DEPENDENCY_NEVER_SATISFIED":
                    log(f"job {name} can never run (a job it needs failed): cancelling {records[name].id}")
                    cancel(records[name])
            return states
        if clock() > deadline:
            raise WorkError(f"jobs still running after {timeout_seconds}s: {states}")
        log(f"jobs: {states}")
        sleep(poll_seconds)


class JobStatus(BaseModel):
    """One job as `submit` reports it."""

    id: str
    log: str
    state: str | None = None


class SubmitResult(BaseModel):
    """What `airlift submit` did: the jobs submitted now, and every selected job's id, log and state."""

    submitted: list[str]
    jobs: dict[str, JobStatus]

    def failed(self) -> list[str]:
        return [name for name, job in self.jobs.items() if job.state is not None and job.state not in TERMINAL_OK]

    def raise_if_failed(self) -> None:
        """Raise when a job ended in a state other than COMPLETED.

        Raises:
            WorkError: Names each failed job, its state and its log.
        """
        failed = self.failed()
        if failed:
            raise WorkError("jobs failed: " + "; ".join(f"{n} ({self.jobs[n].state}, log {self.jobs[n].log})" for n in failed))


@dataclass
class Submission:
    """What `submit_in_order` did: the selected jobs' records, in dependency order, and the names submitted now."""

    records: dict[str, JobRecord]
    submitted: list[str]

    def result(self, states: dict[str, str] | None = None) -> SubmitResult:
        """The report `airlift submit` returns, with each job's final state when it waited."""
        return SubmitResult(
            submitted=self.submitted,
            jobs={n: JobStatus(id=r.id, log=r.log, state=(states or {}).get(n)) for n, r in self.records.items()},
        )

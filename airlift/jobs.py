"""Running the spec's jobs inside the air gap: the job environment, preflight, and Slurm scripts.

Preflight refuses to submit a job whose image is not in the site registry (at the bundle's digest)
or whose `uses` artifacts were not ingested under shared_root, naming every missing item.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from airlift.errors import InputError, TransientError, WorkError
from airlift.fsutil import write_bytes_atomic
from airlift.imageref import airgap_reference, parse_image
from airlift.manifest import Manifest, now_iso
from airlift.registry import RegistryClient
from airlift.sinks.registry import split_target
from airlift.sinks.sharedfs import read_marker
from airlift.site import Site
from airlift.spec import Job, Spec, artifact_id_of

TERMINAL_OK = {"COMPLETED"}
# DEPENDENCY_NEVER_SATISFIED is ours: Slurm keeps such a job PENDING forever (a job it needs failed).
TERMINAL_BAD = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "DEPENDENCY_NEVER_SATISFIED"}


def job_environment(root: Path, job: Job) -> dict[str, str]:
    """The contract's offline environment: tools read shared_root and never reach for the internet."""
    env = {
        "HF_HOME": str(root / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "AIRLIFT_ROOT": str(root),
    }
    env.update(job.env)
    return env


def spec_of(manifest: Manifest) -> Spec:
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
    if site.registry is None:
        return job.image
    return airgap_reference(site.registry.url, parse_image(job.image))


@dataclass
class Preflight:
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing


def preflight(manifest: Manifest, site: Site, jobs: list[Job]) -> Preflight:
    result = Preflight()
    root = site.shared_root
    runtime = site.slurm.container_runtime if site.slurm else (site.prefect.container_runtime if site.prefect else "none")
    checked_images: dict[str, bool] = {}
    for job in jobs:
        if runtime != "none":
            artifact = manifest.artifact(artifact_id_of(job.image, "images"))
            if artifact is None or artifact.image is None:
                result.missing.append(f"job {job.name}: image {job.image} is not in the bundle")
            elif site.registry is None:
                result.missing.append(f"job {job.name}: the site has no registry to run image {job.image} from")
            else:
                target = image_target(site, job)
                if target not in checked_images:
                    checked_images[target] = _registry_has(site, artifact.image.repository, artifact.image.tag or artifact.image.digest, artifact.image.digest)
                if not checked_images[target]:
                    result.missing.append(f"job {job.name}: image {target} ({artifact.image.digest[:19]}) is not in the registry; run airlift ingest")
        for used in job.uses:
            artifact = manifest.artifact(used)
            if artifact is None:
                result.missing.append(f"job {job.name}: uses {used}, which is not in the bundle")
                continue
            if artifact.image is not None:
                continue
            marker = read_marker(root, used) if root else None
            if marker is None or marker.get("content_digest") != artifact.content_digest():
                result.missing.append(f"job {job.name}: artifact {used} is not ingested under {root}; run airlift ingest")
    return result


def _registry_has(site: Site, repository: str, reference: str, digest: str) -> bool:
    assert site.registry is not None
    host, prefix = split_target(site.registry.url)
    client = RegistryClient(host, insecure=site.registry.insecure)
    try:
        return client.head_manifest(f"{prefix}/{repository}" if prefix else repository, reference) == digest
    except (WorkError, OSError):
        return False
    finally:
        client.close()


# -- Slurm ------------------------------------------------------------------------------------------
def _enroot_ref(ref: str) -> str:
    host, _, rest = ref.partition("/")
    return f"{host}#{rest}" if ("." in host or ":" in host) else ref


def render_sbatch(spec: Spec, job: Job, site: Site, *, log_dir: Path) -> str:
    assert site.shared_root is not None and site.slurm is not None
    root = site.shared_root
    slurm = site.slurm
    env = job_environment(root, job)
    command = shlex.join(job.command)
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={spec.name}-{job.name}",
        f"#SBATCH --output={log_dir}/{spec.name}-{job.name}-%j.out",
        f"#SBATCH --nodes={job.resources.nodes}",
    ]
    if slurm.partition:
        lines.append(f"#SBATCH --partition={slurm.partition}")
    if slurm.account:
        lines.append(f"#SBATCH --account={slurm.account}")
    if job.resources.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={job.resources.gpus_per_node}")
    if job.resources.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={job.resources.cpus_per_task}")
    if job.resources.time:
        lines.append(f"#SBATCH --time={job.resources.time}")
    if job.resources.mem:
        lines.append(f"#SBATCH --mem={job.resources.mem}")
    lines += [f"#SBATCH {arg}" for arg in slurm.extra_args]
    lines += ["set -euo pipefail", f"# generated by airlift for job {job.name} of {spec.name}"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines.append(f'trap \'echo $? > {shlex.quote(str(log_dir))}/{spec.name}-{job.name}-"$SLURM_JOB_ID".exit\' EXIT')
    image = image_target(site, job)
    if slurm.container_runtime == "pyxis":
        lines.append(
            f"srun --container-image={shlex.quote(_enroot_ref(image))} --container-mounts={root}:{root} "
            f"--container-env={','.join(env)} {command}"
        )
    elif slurm.container_runtime == "docker":
        host = f"-H {shlex.quote(site.docker.host)} " if site.docker else ""
        env_args = " ".join(f"-e {k}" for k in env)
        lines.append(f"docker {host}image inspect {shlex.quote(image)} >/dev/null 2>&1 || docker {host}pull -q {shlex.quote(image)} >/dev/null")
        lines.append(f"docker {host}run --rm --network none -v {root}:{root} {env_args} {shlex.quote(image)} {command}")
    elif slurm.container_runtime == "apptainer":
        nohttps = "--nohttps " if site.registry and site.registry.insecure else ""
        lines.append(f"apptainer exec {nohttps}--cleanenv --bind {root}:{root} --env {','.join(f'{k}={v}' for k, v in env.items())} docker://{image} {command}")
    else:
        lines.append(command)
    return "\n".join(lines) + "\n"


def _run(argv: list[str], what: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        message = proc.stderr.strip() or f"exit {proc.returncode}"
        if "Socket timed out" in message or "Unable to contact slurm controller" in message:
            raise TransientError(f"{what}: {message}")
        raise WorkError(f"{what}: {message}")
    return proc.stdout


def scancel(job_id: str) -> None:
    """Cancel a job that can never run (its afterok dependency failed) rather than leave it queued forever."""
    subprocess.run(["scancel", job_id], capture_output=True)


def sbatch(script: Path, depends_on: list[str]) -> str:
    argv = ["sbatch", "--parsable"]
    if depends_on:
        argv.append(f"--dependency=afterok:{':'.join(depends_on)}")
    out = _run([*argv, str(script)], f"sbatch {script.name}").strip()
    return out.split(";", 1)[0]


def slurm_state(job_id: str, exit_file: Path | None = None) -> str:
    """PENDING/RUNNING/COMPLETED/FAILED/...; a job slurmctld forgot is judged by the exit file it left."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    match = re.search(r"JobState=(\S+)", proc.stdout)
    if match:
        if match[1] == "PENDING" and "Reason=DependencyNeverSatisfied" in proc.stdout:
            return "DEPENDENCY_NEVER_SATISFIED"
        return match[1]
    if exit_file is not None and exit_file.exists():
        return "COMPLETED" if exit_file.read_text().strip() == "0" else "FAILED"
    return "UNKNOWN"


@dataclass
class JobRecord:
    name: str
    id: str
    script: str
    log: str
    exit_file: str
    submitted_at: str
    backend: str = "slurm"


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


def submit_slurm(spec: Spec, jobs: list[Job], site: Site, *, force: bool = False) -> tuple[dict[str, JobRecord], list[str]]:
    """Submit jobs in dependency order; a job pending, running or done is not submitted again."""
    assert site.shared_root is not None
    root = site.shared_root
    log_dir = root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    ledger = JobLedger(root, spec.name)
    records = ledger.load()
    submitted: list[str] = []
    for job in jobs:
        previous = records.get(job.name)
        if previous and not force:
            state = slurm_state(previous.id, Path(previous.exit_file))
            if state not in TERMINAL_BAD and state != "UNKNOWN":
                continue
        script = root / ".airlift" / "jobs" / spec.name / f"{job.name}.sbatch"
        write_bytes_atomic(script, render_sbatch(spec, job, site, log_dir=log_dir).encode(), mode=0o755)
        depends = [records[n].id for n in job.needs if n in records and slurm_state(records[n].id, Path(records[n].exit_file)) not in TERMINAL_OK]
        job_id = sbatch(script, depends)
        records[job.name] = JobRecord(
            name=job.name, id=job_id, script=str(script), log=str(log_dir / f"{spec.name}-{job.name}-{job_id}.out"),
            exit_file=str(log_dir / f"{spec.name}-{job.name}-{job_id}.exit"), submitted_at=now_iso(),
        )
        ledger.save(records)  # after each sbatch: a crash never forgets a submitted job
        submitted.append(job.name)
    return records, submitted

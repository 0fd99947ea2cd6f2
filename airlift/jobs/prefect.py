"""Jobs for sites whose scheduler is Prefect: each job is a flow run of the site's `run-job` deployment.

This module decides everything (order, what to skip, the parameters of each run, waiting on needs);
the two calls that reach Prefect, triggering a deployment and reading a run's state, are injected,
so the core stays Prefect-free and the logic is tested in-process.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airlift.bundle.manifest import now_iso
from airlift.config.site import Site
from airlift.config.spec import Job, Spec
from airlift.jobs.common import JobLedger, JobRecord, image_target, inherited_environment, job_environment
from airlift.util.errors import WorkError

PREFECT_OK = {"COMPLETED"}
PREFECT_BAD = {"FAILED", "CRASHED", "CANCELLED"}


@dataclass(frozen=True)
class RunJobParameters:
    """The parameters of one `run-job` flow run: the job's command and its minimal environment."""

    job: str
    command: list[str]
    env: dict[str, str]
    shared_root: str
    image: str | None
    docker_host: str | None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def run_parameters(site: Site, job: Job) -> RunJobParameters:
    """What a `run-job` run needs: the same offline environment and allow-list as a Slurm job."""
    assert site.prefect is not None and site.shared_root is not None
    image = image_target(site, job) if site.prefect.container_runtime == "docker" else None
    return RunJobParameters(
        job=job.name, command=list(job.command),
        env={**inherited_environment(), **job_environment(site.shared_root, job)},
        shared_root=str(site.shared_root), image=image, docker_host=site.docker.host if site.docker else None,
    )


def submit_prefect(
    spec: Spec,
    jobs: list[Job],
    *, site: Site,
    trigger: Callable[[str, dict[str, object]], str],
    wait_for: Callable[[str], str],
    state_of: Callable[[str], str],
    force: bool = False,
) -> tuple[dict[str, JobRecord], list[str]]:
    """Trigger each job as a run of the site's deployment, in dependency order.

    Prefect has no `afterok`: a job whose needs were submitted is triggered once they completed.

    Args:
        spec: The spec the jobs belong to.
        jobs: Jobs in dependency order (see `select_jobs`).
        site: The site profile, with `prefect:` and `shared_root`.
        trigger: Starts a run of (deployment, parameters); returns the flow run id.
        wait_for: Blocks until a flow run ends; returns its final state name.
        state_of: The current state name of a flow run.
        force: Trigger again even jobs whose earlier run did not fail.

    Returns:
        The ledger's records by job name, and the names triggered now.

    Raises:
        WorkError: A job's need ended in a state other than COMPLETED.
    """
    assert site.prefect is not None and site.shared_root is not None
    ledger = JobLedger(site.shared_root, spec.name)
    records = ledger.load()
    submitted: list[str] = []
    for job in jobs:
        previous = records.get(job.name)
        if previous and not force and state_of(previous.id) not in PREFECT_BAD:
            continue
        for needed in job.needs:
            state = wait_for(records[needed].id)
            if state not in PREFECT_OK:
                raise WorkError(f"job {job.name}: its need {needed} ended {state}")
        run_id = trigger(site.prefect.deployment, run_parameters(site, job).as_dict())
        records[job.name] = JobRecord(
            name=job.name, id=run_id, script=site.prefect.deployment, log=f"prefect flow run {run_id}",
            exit_file="", submitted_at=now_iso(), backend="prefect",
        )
        ledger.save(records)
        submitted.append(job.name)
    return records, submitted


def run_job_argv(params: RunJobParameters) -> list[str]:
    """The argv of a `run-job` run: a container with no network and shared_root at the same path, or the command."""
    if not params.image:
        return list(params.command)
    host = ["-H", params.docker_host] if params.docker_host else []
    argv = ["docker", *host, "run", "--rm", "--network", "none", "-v", f"{params.shared_root}:{params.shared_root}"]
    for key in params.env:
        if key not in ("PATH", "HOME"):
            argv += ["-e", key]
    return [*argv, "--", params.image, *params.command]


def run_job_process(params: RunJobParameters, *, log_path: Path) -> int:
    """Run one `run-job` job with exactly its environment, its output going to `log_path` (not to logs).

    The job's output stays in `shared_root/logs/`, like a Slurm job's: Prefect's log store is outside
    the job's trust domain, and a job's output may hold anything it read.

    Returns:
        The job's exit code.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.run(run_job_argv(params), env=dict(params.env), stdout=log, stderr=subprocess.STDOUT, check=False)
    return proc.returncode

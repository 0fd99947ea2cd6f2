"""Job tasks: preflight, submission to Slurm or to Prefect's `run-job` deployment, waiting, running one job.

The decisions live in airlift.jobs; these tasks only supply the Prefect calls (run_deployment and
reading a flow run's state) and Prefect's logging.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task

from airlift.bundle.manifest import Manifest
from airlift.config.site import Site
from airlift.jobs.common import JobRecord, preflight, select_jobs, spec_of, wait_for_jobs
from airlift.jobs.prefect import PREFECT_BAD, PREFECT_OK, RunJobParameters, run_job_process, submit_prefect
from airlift.jobs.slurm import scancel, slurm_state, submit_slurm
from airlift.util.errors import WorkError


def prefect_state(flow_run_id: str) -> str:
    """The state name of a flow run (COMPLETED, FAILED, RUNNING, ...)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    return run.state.type.value if run.state else "UNKNOWN"


def _wait_prefect(flow_run_id: str, poll_seconds: float = 2.0) -> str:
    while (state := prefect_state(flow_run_id)) not in PREFECT_OK | PREFECT_BAD:
        time.sleep(poll_seconds)
    return state


def _trigger(deployment: str, parameters: dict[str, object]) -> str:
    from prefect.deployments import run_deployment

    return str(run_deployment(deployment, parameters=parameters, timeout=0).id)


@task(name="preflight")
def preflight_task(*, manifest: Manifest, site: Site, jobs: list[str]) -> list[str]:
    """What is missing for the jobs to run (images not in the registry, artifacts not ingested)."""
    return preflight(manifest, site, jobs=select_jobs(spec_of(manifest), jobs)).missing


@task(name="submit-to-scheduler")
def submit_task(*, manifest: Manifest, site: Site, jobs: list[str], force: bool) -> tuple[dict[str, JobRecord], list[str]]:
    """Submit the jobs (and what they need) to Slurm, or trigger them on the site's Prefect deployment."""
    spec = spec_of(manifest)
    selected = select_jobs(spec, jobs)
    if site.slurm is not None:
        return submit_slurm(spec, selected, site=site, force=force)
    return submit_prefect(spec, selected, site=site, trigger=_trigger, wait_for=_wait_prefect, state_of=prefect_state, force=force)


@task(name="wait-for-jobs")
def wait_task(*, records: dict[str, JobRecord], names: list[str]) -> dict[str, str]:
    """Poll until every job ended; jobs that can never run are cancelled, not left queued."""
    logger = get_run_logger()

    def state_of(record: JobRecord) -> str:
        return prefect_state(record.id) if record.backend == "prefect" else slurm_state(record.id, Path(record.exit_file))

    def cancel(record: JobRecord) -> None:
        if record.backend == "slurm":
            scancel(record.id)

    return wait_for_jobs(records, names, state_of=state_of, cancel=cancel, log=logger.info)


@task(name="run-job-command", task_run_name="run {params.job}")
def run_job_task(*, params: RunJobParameters, flow_run_id: str) -> int:
    """Run one job with its minimal environment; its output goes to shared_root/logs/, not to Prefect."""
    log_path = Path(params.shared_root) / "logs" / f"{params.job}-{flow_run_id}.out"
    code = run_job_process(params, log_path=log_path)
    if code != 0:
        raise WorkError(f"job {params.job} exited {code}; its output is in {log_path}")
    return code

"""Job tasks: preflight, submission to Slurm or to Prefect's `run-job` deployment, waiting, running one job.

The decisions live in airlift.jobs (the order, what to skip, each run's parameters, the wait loop);
these tasks only supply the two Prefect calls (run_deployment and reading a flow run's state) and
Prefect's logging.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import get_run_logger, task

from airlift.bundle.inventory import write_inventory
from airlift.bundle.manifest import Manifest
from airlift.export.inventory import site_inventory
from airlift.export.outputs import ExportResult, export_outputs
from airlift.jobs.common import (
    JobBackend,
    JobRecord,
    Submission,
    preflight,
    select_jobs,
    spec_of,
    submit_in_order,
    wait_for_jobs,
)
from airlift.jobs.follow import LogFollower
from airlift.jobs.launch import Launch, plan_launch
from airlift.jobs.prefect import PrefectBackend, RunJobParameters, run_job_process
from airlift.jobs.sites import JobSite, runs_on_slurm
from airlift.jobs.slurm import SlurmBackend


def prefect_state(flow_run_id: str) -> str:
    """The state name of a flow run (COMPLETED, FAILED, RUNNING, ...); UNKNOWN when the server has no such run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            return "UNKNOWN"
    return run.state.type.value if run.state else "UNKNOWN"


def trigger_deployment(deployment: str, parameters: dict[str, object]) -> str:
    """Start a run of `deployment` without waiting for it; returns the flow run id."""
    from prefect.deployments import run_deployment

    return str(run_deployment(deployment, parameters=parameters, timeout=0).id)


def backend_for(site: JobSite) -> JobBackend:
    """The site's scheduler: Slurm when it has `slurm:`, otherwise its Prefect `run-job` deployment."""
    if runs_on_slurm(site):
        return SlurmBackend(site)
    return PrefectBackend(site, trigger=trigger_deployment, read_state=prefect_state, log=get_run_logger().info)


@task(name="preflight")
def preflight_task(*, manifest: Manifest, site: JobSite, jobs: list[str]) -> dict[str, Launch]:
    """Make each job's checkouts and output directory, then refuse to submit, naming what is missing
    (images not in the registry, artifacts not ingested, mounts missing or not at their pinned commit)."""
    selected = select_jobs(spec_of(manifest), jobs)
    launches = {job.name: plan_launch(manifest, site.shared_root, job, materialize=True) for job in selected}
    preflight(manifest, site, jobs=selected, launches=launches).raise_if_missing()
    return launches


@task(name="submit-to-scheduler")
def submit_task(*, manifest: Manifest, site: JobSite, jobs: list[str], force: bool, launches: dict[str, Launch] | None = None) -> Submission:
    """Submit the jobs (and what they need) to Slurm, or trigger them on the site's Prefect deployment."""
    spec = spec_of(manifest)
    return submit_in_order(
        spec, select_jobs(spec, jobs), backend=backend_for(site), root=site.shared_root, force=force, launches=launches,
    )


@task(name="wait-for-jobs")
def wait_task(*, site: JobSite, records: dict[str, JobRecord], names: list[str], stream: bool = False) -> dict[str, str]:
    """Poll until every job ended; jobs that can never run are cancelled, not left queued.

    With `stream`, each job's output is written to this process's stdout as it grows, directly and not
    through `print`: the flow's log_prints would carry a job's output into Prefect's log store.
    """
    backend = backend_for(site)
    follower = LogFollower(_write_stdout)
    logs = {name: records[name].log for name in names}
    on_poll = (lambda ended: follower.poll(logs, final=ended)) if stream else None
    return wait_for_jobs(
        records, names, state_of=backend.state, cancel=backend.cancel, log=get_run_logger().info,
        poll_seconds=1.0 if stream else 2.0, on_poll=on_poll,
    )


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@task(name="run-job-command", task_run_name="run {params.job}")
def run_job_task(*, params: RunJobParameters, flow_run_id: str) -> int:
    """Run one job with its minimal environment; its output goes to shared_root/logs/, not to Prefect."""
    run_job_process(params, run_id=flow_run_id)
    return 0


@task(name="export-outputs")
def export_task(*, root: str, out: str, jobs: list[str], max_bytes: int, name: str) -> ExportResult:
    """Copy finished runs' declared outputs into a bundle (resumable: blobs already there are kept)."""
    return export_outputs(Path(root), Path(out), jobs=jobs, max_bytes=max_bytes, site_name=name)


@task(name="site-inventory")
def inventory_task(*, root: str, store: str | None, out: str, key: str | None) -> int:
    """Write the site's inventory (signed when a key is given); returns how many artifacts it lists."""
    inventory = site_inventory(Path(root), Path(store) if store else None)
    write_inventory(Path(out), inventory, key=Path(key) if key else None)
    return len(inventory.artifacts)

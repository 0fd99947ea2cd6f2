"""run-job: one spec job as a Prefect flow run, for sites whose scheduler is Prefect rather than Slurm.

`airlift submit` triggers it through `run_deployment` with the same preflight and minimal environment
as a Slurm job: the container (or process) sees shared_root at the same path and never the network.
"""

from __future__ import annotations

from airlift_tasks.jobs import run_job_task
from prefect import flow
from prefect.runtime import flow_run

from airlift.jobs.prefect import RunJobParameters


@flow(name="run-job", log_prints=True)
def run_job(
    job: str, command: list[str], env: dict[str, str], shared_root: str, image: str | None = None, docker_host: str | None = None,
    mounts: list[list[str]] | None = None,
) -> int:
    """Run one job of a spec inside the air gap.

    Args:
        job: The job's name in the spec.
        command: The command and its arguments.
        env: The job's whole environment (the offline variables, AIRLIFT_ROOT, its own env, PATH/HOME/LANG/TZ).
        shared_root: Mounted into the container at the same path.
        image: The air-gapped image reference; without one the command runs as a plain process.
        docker_host: The Docker engine to run the container on.
        mounts: (source under shared_root, target) pairs, bound read-only into the container.
    """
    params = RunJobParameters(
        job=job, command=command, env=env, shared_root=shared_root, image=image, docker_host=docker_host,
        mounts=tuple((str(m[0]), str(m[1])) for m in mounts or []),
    )
    return run_job_task(params=params, flow_run_id=str(flow_run.get_id() or "local"))

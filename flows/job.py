"""run-job: one spec job as a Prefect flow run, for sites whose scheduler is Prefect rather than Slurm.

`airlift submit` triggers it through `run_deployment` with the same preflight and offline environment
as a Slurm job: the container (or process) sees shared_root at the same path and never the network.
"""

from __future__ import annotations

import os
import subprocess

from prefect import flow, get_run_logger

from airlift.util.errors import WorkError


@flow(name="run-job", log_prints=True)
def run_job(job: str, command: list[str], env: dict[str, str], shared_root: str, image: str | None = None, docker_host: str | None = None) -> int:
    """Run one job of a spec inside the air gap.

    Args:
        job: The job's name in the spec.
        command: The command and its arguments.
        env: The offline job environment (HF_HOME, HF_HUB_OFFLINE=1, ...).
        shared_root: Mounted into the container at the same path.
        image: The air-gapped image reference; without one the command runs as a plain process.
        docker_host: The Docker engine to run the container on.
    """
    logger = get_run_logger()
    if image:
        host = ["-H", docker_host] if docker_host else []
        if subprocess.run(["docker", *host, "image", "inspect", image], capture_output=True).returncode != 0:
            subprocess.run(["docker", *host, "pull", "-q", image], check=True, capture_output=True)
        argv = ["docker", *host, "run", "--rm", "--network", "none", "-v", f"{shared_root}:{shared_root}"]
        for key in env:
            argv += ["-e", key]
        argv += [image, *command]
    else:
        argv = command
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        logger.info("%s | %s", job, line)
    if proc.returncode != 0:
        raise WorkError(f"job {job} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.returncode

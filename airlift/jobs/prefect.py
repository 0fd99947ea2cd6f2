"""Jobs for sites whose scheduler is Prefect: each job is a flow run of the site's `run-job` deployment.

`PrefectBackend` is the `JobBackend` (airlift.jobs.common) for them: it decides the parameters of each
run and waits on a job's needs before triggering it (Prefect has no `afterok`); the order and what to
skip are `submit_in_order`'s. The two calls that reach Prefect, triggering a deployment and reading a
run's state, are injected (tasks/jobs.py), so the core stays Prefect-free and is tested in-process.
`run_job_argv` and `run_job_process` are what the `run-job` flow runs.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from airlift.bundle.manifest import now_iso
from airlift.config.spec import Job, Spec
from airlift.jobs.common import (
    TERMINAL_OK,
    JobRecord,
    image_target,
    inherited_environment,
    job_environment,
    wait_for_jobs,
)
from airlift.jobs.launch import BoundMount, Launch, container_binds
from airlift.jobs.sites import PrefectSite
from airlift.layouts.shared_root import SharedRootLayout
from airlift.util.errors import WorkError
from airlift.util.fs import write_bytes_atomic


@dataclass(frozen=True)
class RunJobParameters:
    """The parameters of one `run-job` flow run: the job's command and its minimal environment."""

    job: str
    command: list[str]
    env: dict[str, str]
    shared_root: str
    image: str | None
    docker_host: str | None
    mounts: tuple[tuple[str, str], ...] = ()  # (source under shared_root, target): bound read-only


    def as_dict(self) -> dict[str, object]:
        """The run's parameters as `run_deployment` takes them (the `run-job` flow's parameter names)."""
        return {**self.__dict__, "mounts": [list(m) for m in self.mounts]}


def run_parameters(site: PrefectSite, job: Job, launch: Launch | None = None) -> RunJobParameters:
    """What a `run-job` run needs: the same offline environment, allow-list and read-only mounts as a Slurm job."""
    runtime = site.scheduler.container_runtime
    image = image_target(site.profile, job) if runtime == "docker" else None
    return RunJobParameters(
        job=job.name, command=list(job.command),
        env={**inherited_environment(), **job_environment(site.shared_root, job, launch, runtime=runtime)},
        shared_root=str(site.shared_root), image=image, docker_host=site.profile.docker.host if site.profile.docker else None,
        mounts=tuple((m.source, m.target) for m in (launch.mounts if launch and image else [])),
    )


class PrefectBackend:
    """Prefect as a `JobBackend`: each job is a run of the site's `run-job` deployment.

    Args:
        site: The site, with its shared_root and `prefect:`.
        trigger: Starts a run of (deployment, parameters) without waiting; returns the flow run id.
        read_state: The state name of a flow run (COMPLETED, FAILED, RUNNING, ...; UNKNOWN when the server lost it).
        log: Where progress lines go while a job waits on its needs.
        poll_seconds: Time between polls of a need's state.
        sleep: Injected for tests.
        clock: Injected for tests.
    """

    name = "prefect"

    def __init__(
        self,
        site: PrefectSite,
        *,
        trigger: Callable[[str, dict[str, object]], str],
        read_state: Callable[[str], str],
        log: Callable[[str], None] = lambda _line: None,
        poll_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site, self.deployment = site, site.scheduler.deployment
        self._trigger, self._read_state, self._log = trigger, read_state, log
        self._poll_seconds, self._sleep, self._clock = poll_seconds, sleep, clock

    def submit(self, spec: Spec, job: Job, *, needs: list[JobRecord], launch: Launch | None = None) -> JobRecord:
        """Wait until every need completed, then trigger the job's run.

        Raises:
            WorkError: A need ended in a state other than COMPLETED (the job is then never triggered).
        """
        for need in needs:
            state = wait_for_jobs(
                {need.name: need}, [need.name], state_of=self.state, cancel=self.cancel, log=self._log,
                poll_seconds=self._poll_seconds, sleep=self._sleep, clock=self._clock,
            )[need.name]
            if state not in TERMINAL_OK:
                raise WorkError(f"job {job.name}: its need {need.name} ended {state}")
        params = run_parameters(self.site, job, launch)
        run_id = self._trigger(self.deployment, params.as_dict())
        return JobRecord(
            name=job.name, id=run_id, script=self.deployment, log=str(job_log_path(params, run_id=run_id)),
            exit_file=str(job_log_path(params, run_id=run_id).with_suffix(".exit")), submitted_at=now_iso(), backend=self.name, run_id=launch.run_id if launch else "",
        )

    def state(self, record: JobRecord) -> str:
        """The flow run's state name."""
        return self._read_state(record.id)

    def cancel(self, record: JobRecord) -> None:
        """Nothing to cancel: a job whose need failed was never triggered, so nothing waits in a queue."""


def run_job_argv(params: RunJobParameters) -> list[str]:
    """The argv of a `run-job` run.

    With an image: `docker [-H host] run --rm --network none -v ROOT:ROOT:ro -v OUT:OUT -v SRC:DST:ro... -e KEY...
    -- IMAGE COMMAND...`: shared_root read-only, only the run's `$AIRLIFT_OUTPUT` (when it is an
    `outputs/<job>/<run id>` directory of shared_root) writable, every path checked for ',' and ':'
    (each variable passed by name, so its value never appears on a command line; PATH and HOME are the
    image's own). Without one: the command itself, run as a plain process.

    Args:
        params: The run's parameters.

    Returns:
        The argv to execute with exactly `params.env` as the environment.
    """
    if not params.image:
        return list(params.command)
    host = ["-H", params.docker_host] if params.docker_host else []
    argv = ["docker", *host, "run", "--rm", "--network", "none"]
    for source, target, read_only in container_binds(params.shared_root, _launch_of(params)):
        argv += ["-v", f"{source}:{target}:ro" if read_only else f"{source}:{target}"]
    for key in params.env:
        if key not in ("PATH", "HOME"):
            argv += ["-e", key]
    return [*argv, "--", params.image, *params.command]


def _launch_of(params: RunJobParameters) -> Launch | None:
    """The run (its output and mounts) a `run-job` run's parameters carry: its `$AIRLIFT_OUTPUT` is only
    made writable when it is exactly `<shared_root>/outputs/<job>/<run id>`."""
    output = params.env.get("AIRLIFT_OUTPUT")
    mounts = [BoundMount(source, target, "") for source, target in params.mounts]
    if output is None:
        return Launch(run_id="", output="", mounts=mounts) if mounts else None
    path = PurePosixPath(output)
    if path.parent.parent != PurePosixPath(params.shared_root, "outputs") or path.parent.name != params.job or path.name in ("", ".", ".."):
        raise WorkError(f"job {params.job}: AIRLIFT_OUTPUT={output} is not an outputs/{params.job}/<run id> directory of {params.shared_root}")
    return Launch(run_id=path.name, output=output, mounts=mounts)


def job_log_path(params: RunJobParameters, *, run_id: str) -> Path:
    """Where a `run-job` run's output goes: `<shared_root>/logs/<job>-<flow run id>.out`."""
    return SharedRootLayout(Path(params.shared_root)).logs / f"{params.job}-{run_id}.out"


def run_job_process(params: RunJobParameters, *, run_id: str) -> Path:
    """Run one `run-job` job with exactly its environment, its output going to its log file (not to Prefect).

    The job's output stays in `shared_root/logs/`, like a Slurm job's: Prefect's log store is outside
    the job's trust domain, and a job's output may hold anything it read.

    Args:
        params: The run's parameters.
        run_id: The flow run's id (names the log file).

    Returns:
        The log file.

    Raises:
        WorkError: The job exited non-zero.
    """
    log_path = job_log_path(params, run_id=run_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.run(run_job_argv(params), env=dict(params.env), stdout=log, stderr=subprocess.STDOUT, check=False)
    # Like a Slurm job's exit file: what export reads to tell a finished run from one in progress.
    write_bytes_atomic(log_path.with_suffix(".exit"), f"{proc.returncode}\n".encode())
    if proc.returncode != 0:
        raise WorkError(f"job {params.job} exited {proc.returncode}; its output is in {log_path}")
    return log_path

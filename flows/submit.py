"""submit-jobs: preflight, then submit the spec's jobs to Slurm (needs -> afterok), optionally waiting."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task

from airlift.bundle.layout import Bundle
from airlift.config.site import load_site
from airlift.jobs.common import JobRecord, preflight, select_jobs, spec_of
from airlift.jobs.slurm import TERMINAL_BAD, TERMINAL_OK, scancel, slurm_state, submit_slurm
from airlift.util.errors import InputError, WorkError


@task(name="preflight")
def preflight_task(*, bundle: str, site: str, jobs: list[str]) -> list[str]:
    manifest = Bundle(bundle).read_manifest()
    profile = load_site(site)
    result = preflight(manifest, profile, select_jobs(spec_of(manifest), jobs))
    return result.missing


@task(name="slurm-submit")
def slurm_submit_task(*, bundle: str, site: str, jobs: list[str], force: bool) -> tuple[dict[str, JobRecord], list[str]]:
    manifest = Bundle(bundle).read_manifest()
    spec = spec_of(manifest)
    return submit_slurm(spec, select_jobs(spec, jobs), load_site(site), force=force)


PREFECT_OK = {"COMPLETED"}
PREFECT_BAD = {"FAILED", "CRASHED", "CANCELLED"}


def prefect_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    return run.state.type.value if run.state else "UNKNOWN"


@task(name="prefect-submit")
def prefect_submit_task(*, bundle: str, site: str, jobs: list[str], force: bool) -> tuple[dict[str, JobRecord], list[str]]:
    """Trigger each job as a run of the site's job deployment, in dependency order.

    Prefect has no afterok: a job whose needs are submitted here is triggered once they completed.
    """
    from prefect.deployments import run_deployment

    from airlift.bundle.manifest import now_iso
    from airlift.jobs.common import JobLedger, image_target, job_environment

    profile = load_site(site)
    assert profile.prefect is not None and profile.shared_root is not None
    manifest = Bundle(bundle).read_manifest()
    spec = spec_of(manifest)
    ledger = JobLedger(profile.shared_root, spec.name)
    records = ledger.load()
    submitted: list[str] = []
    for job in select_jobs(spec, jobs):
        previous = records.get(job.name)
        if previous and not force and prefect_state(previous.id) not in PREFECT_BAD:
            continue
        for needed in job.needs:
            state = _wait_prefect(records[needed].id)
            if state not in PREFECT_OK:
                raise WorkError(f"job {job.name}: its need {needed} ended {state}")
        image = image_target(profile, job) if profile.prefect.container_runtime == "docker" else None
        run = run_deployment(
            profile.prefect.deployment,
            parameters={
                "job": job.name, "command": job.command, "env": job_environment(profile.shared_root, job),
                "shared_root": str(profile.shared_root), "image": image, "docker_host": profile.docker.host if profile.docker else None,
            },
            timeout=0,
        )
        records[job.name] = JobRecord(
            name=job.name, id=str(run.id), script=profile.prefect.deployment, log=f"prefect flow run {run.id}",
            exit_file="", submitted_at=now_iso(), backend="prefect",
        )
        ledger.save(records)
        submitted.append(job.name)
    return records, submitted


def _wait_prefect(flow_run_id: str, poll_seconds: float = 2.0, timeout_seconds: float = 7 * 24 * 3600) -> str:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        state = prefect_state(flow_run_id)
        if state in PREFECT_OK | PREFECT_BAD:
            return state
        time.sleep(poll_seconds)
    raise WorkError(f"flow run {flow_run_id} still running after {timeout_seconds}s")


@task(name="wait-for-jobs")
def wait_task(*, records: dict[str, JobRecord], names: list[str], poll_seconds: float = 2.0, timeout_seconds: float = 7 * 24 * 3600) -> dict[str, str]:
    logger = get_run_logger()
    deadline = time.monotonic() + timeout_seconds
    states: dict[str, str] = {}
    while True:
        if all(records[n].backend == "prefect" for n in names):
            return {n: _wait_prefect(records[n].id) for n in names}
        states = {n: slurm_state(records[n].id, Path(records[n].exit_file)) for n in names}
        if all(s in TERMINAL_OK | TERMINAL_BAD for s in states.values()):
            for name, state in states.items():
                if state == "DEPENDENCY_NEVER_SATISFIED":
                    logger.warning("job %s can never run (a job it needs failed): cancelling %s", name, records[name].id)
                    scancel(records[name].id)
            return states
        if time.monotonic() > deadline:
            raise WorkError(f"jobs still running after {timeout_seconds}s: {states}")
        logger.info("jobs: %s", states)
        time.sleep(poll_seconds)


@flow(name="submit-jobs", log_prints=True)
def submit_jobs(bundle: str, site: str, jobs: list[str] | None = None, wait: bool = False, force: bool = False) -> dict:
    """Preflight, then submit the spec's jobs (and what they need) to the site's scheduler.

    Args:
        bundle: The ingested bundle (its manifest carries the spec and its jobs).
        site: Site profile with `slurm:` and `shared_root`.
        jobs: Job names; all jobs when empty. Jobs they `need` are included.
        wait: Poll until every job ends; the run fails if any job failed.
        force: Submit again even jobs that are pending, running or done.
    """
    profile = load_site(site)
    if (profile.slurm is None and profile.prefect is None) or profile.shared_root is None:
        raise InputError(f"{site}: submit needs shared_root: and slurm: (or prefect:) in the site profile")
    missing = preflight_task(bundle=bundle, site=site, jobs=jobs or [])
    if missing:
        raise WorkError("preflight refused to submit: " + "; ".join(missing))
    submitter = slurm_submit_task if profile.slurm is not None else prefect_submit_task
    records, submitted = submitter(bundle=bundle, site=site, jobs=jobs or [], force=force)
    selected = [j.name for j in select_jobs(spec_of(Bundle(bundle).read_manifest()), jobs or [])]
    result = {"submitted": submitted, "jobs": {n: {"id": records[n].id, "log": records[n].log} for n in selected}}
    if wait:
        states = wait_task(records=records, names=selected)
        for name, state in states.items():
            result["jobs"][name]["state"] = state
        failed = [n for n, s in states.items() if s not in TERMINAL_OK | PREFECT_OK]
        if failed:
            raise WorkError("jobs failed: " + "; ".join(f"{n} ({states[n]}, log {records[n].log})" for n in failed))
    return result

"""submit-jobs: preflight, then submit the spec's jobs to Slurm (needs -> afterok), optionally waiting."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task

from airlift.bundle import Bundle
from airlift.errors import InputError, WorkError
from airlift.jobs import (
    TERMINAL_BAD,
    TERMINAL_OK,
    JobRecord,
    preflight,
    select_jobs,
    slurm_state,
    spec_of,
    submit_slurm,
)
from airlift.site import load_site


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


@task(name="wait-for-jobs")
def wait_task(*, records: dict[str, JobRecord], names: list[str], poll_seconds: float = 2.0, timeout_seconds: float = 7 * 24 * 3600) -> dict[str, str]:
    logger = get_run_logger()
    deadline = time.monotonic() + timeout_seconds
    states: dict[str, str] = {}
    while True:
        states = {n: slurm_state(records[n].id, Path(records[n].exit_file)) for n in names}
        if all(s in TERMINAL_OK | TERMINAL_BAD for s in states.values()):
            return states
        if any(s in TERMINAL_BAD for s in states.values()) and all(
            s in TERMINAL_OK | TERMINAL_BAD or "Dependency" in s for s in states.values()
        ):
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
    if profile.slurm is None or profile.shared_root is None:
        raise InputError(f"{site}: submit needs slurm: and shared_root: in the site profile")
    missing = preflight_task(bundle=bundle, site=site, jobs=jobs or [])
    if missing:
        raise WorkError("preflight refused to submit: " + "; ".join(missing))
    records, submitted = slurm_submit_task(bundle=bundle, site=site, jobs=jobs or [], force=force)
    selected = [j.name for j in select_jobs(spec_of(Bundle(bundle).read_manifest()), jobs or [])]
    result = {"submitted": submitted, "jobs": {n: {"id": records[n].id, "log": records[n].log} for n in selected}}
    if wait:
        states = wait_task(records=records, names=selected)
        for name, state in states.items():
            result["jobs"][name]["state"] = state
        failed = [n for n, s in states.items() if s not in TERMINAL_OK]
        if failed:
            raise WorkError("jobs failed: " + "; ".join(f"{n} ({states[n]}, log {records[n].log})" for n in failed))
    return result

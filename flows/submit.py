"""submit-jobs: preflight, then submit the spec's jobs (Slurm afterok chains, or Prefect runs), optionally waiting."""

from __future__ import annotations

from airlift_tasks.bundle import open_trusted
from airlift_tasks.jobs import preflight_task, submit_task, wait_task
from prefect import flow

from airlift.config.site import load_site
from airlift.jobs.common import SubmitResult
from airlift.jobs.sites import require_scheduler


@flow(name="submit-jobs", log_prints=True)
def submit_jobs(
    bundle: str, site: str, jobs: list[str] | None = None, wait: bool = False, force: bool = False, pubkeys: list[str] | None = None,
    stream: bool = False,
) -> SubmitResult:
    """Preflight, then submit the spec's jobs (and what they need) to the site's scheduler.

    Args:
        bundle: The ingested bundle (its manifest carries the spec and its jobs).
        site: Site profile with slurm: (or prefect:) and shared_root.
        jobs: Job names; all jobs when empty. Jobs they need are included.
        wait: Poll until every job ends; the run fails if any job failed.
        force: Submit again even jobs that are pending, running or done.
        pubkeys: Trusted Ed25519 public keys, in addition to the site's trust.keys.
        stream: While waiting, write each job's output to stdout as it is written (the CLI's --wait).
    """
    profile = load_site(site)
    job_site = require_scheduler(profile, source=site)
    keys = profile.trusted_keys(extra=pubkeys)
    manifest = open_trusted(bundle=bundle, pubkeys=keys).manifest
    launches = preflight_task(manifest=manifest, site=job_site, jobs=jobs or [])
    submission = submit_task(manifest=manifest, site=job_site, jobs=jobs or [], force=force, launches=launches)
    if not wait:
        return submission.result()
    states = wait_task(site=job_site, records=submission.records, names=list(submission.records), stream=stream)
    result = submission.result(states)
    result.raise_if_failed()
    return result

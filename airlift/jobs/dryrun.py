"""`airlift submit --dry-run`: each job's rendered submission, exactly as it would go, and nothing submitted.

For Slurm that is the sbatch command line and the script; for a Prefect site, the `run-job` run's
parameters. Nothing is created: no checkout, no output directory, no ledger entry. Dependencies on
jobs not yet submitted are shown by name (`afterok:<prep>`), as their ids do not exist yet.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from airlift.bundle.manifest import Manifest
from airlift.jobs.common import JobLedger, preflight, select_jobs, spec_of
from airlift.jobs.launch import plan_launch
from airlift.jobs.prefect import run_parameters
from airlift.jobs.sites import JobSite, runs_on_slurm
from airlift.jobs.slurm import render_sbatch


def dry_run(manifest: Manifest, site: JobSite, names: list[str]) -> str:
    """The text `submit --dry-run` prints: per job, its submission; then what preflight would refuse."""
    spec = spec_of(manifest)
    jobs = select_jobs(spec, names)
    root = site.shared_root
    known = JobLedger(root, spec.name).load()
    launches = {job.name: plan_launch(manifest, root, job, materialize=False, run_id="<run id>") for job in jobs}
    out: list[str] = []
    for job in jobs:
        launch = launches[job.name]
        if runs_on_slurm(site):
            script = root / ".airlift" / "jobs" / spec.name / f"{job.name}.sbatch"
            after = [known[n].id if n in known else f"<{n}>" for n in job.needs]
            argv = ["sbatch", "--parsable", *([f"--dependency=afterok:{':'.join(after)}"] if after else []), str(script)]
            out.append(f"### job {job.name}: {shlex.join(argv)}")
            out.append(render_sbatch(spec, job, site=site, log_dir=Path(root) / "logs", launch=launch).rstrip("\n"))
        else:
            params = run_parameters(site, job, launch).as_dict()
            deployment = site.scheduler.deployment
            out.append(f"### job {job.name}: run_deployment({deployment!r}) after {', '.join(job.needs) or 'nothing'}")
            out.append(json.dumps(params, indent=1))
    problems = preflight(manifest, site, jobs=jobs, launches=launches).missing
    out.append("### preflight: " + ("ok" if not problems else "would refuse: " + "; ".join(problems)))
    out.append("### dry run: nothing was submitted")
    return "\n".join(out) + "\n"

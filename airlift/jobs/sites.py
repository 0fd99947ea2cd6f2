"""A site that can run jobs, typed: its profile with the shared_root and scheduler section it has for certain.

`require_scheduler` checks the profile once (exit 2 naming it when it cannot run jobs); the job
backends, preflight and the dry run take what it returns, so none of them asks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeGuard, TypeVar

from airlift.config.site import PrefectJobsTarget, Site, SlurmTarget
from airlift.util.errors import InputError

Scheduler = TypeVar("Scheduler", SlurmTarget, PrefectJobsTarget)


@dataclass(frozen=True)
class ScheduledSite(Generic[Scheduler]):
    """The profile, its shared_root and its scheduler: `slurm:`, or `prefect:` (runs of its `run-job` deployment)."""

    profile: Site
    shared_root: Path
    scheduler: Scheduler

    @property
    def container_runtime(self) -> str:
        return self.scheduler.container_runtime


SlurmSite = ScheduledSite[SlurmTarget]
PrefectSite = ScheduledSite[PrefectJobsTarget]
JobSite = SlurmSite | PrefectSite


def runs_on_slurm(site: JobSite) -> TypeGuard[SlurmSite]:
    """Whether the site's jobs go to Slurm (else: its Prefect deployment). A check on the scheduler, as
    `isinstance` cannot take the subscripted aliases."""
    return isinstance(site.scheduler, SlurmTarget)


def require_scheduler(site: Site, *, source: str) -> JobSite:
    """The site as one that can run jobs: `shared_root` and `slurm:` (which wins) or `prefect:`.

    Args:
        site: The site profile.
        source: The profile's path, for the error message.

    Returns:
        A SlurmSite or a PrefectSite.

    Raises:
        InputError: The profile lacks a scheduler or shared_root.
    """
    if site.shared_root is not None and site.slurm is not None:
        return ScheduledSite(site, site.shared_root, site.slurm)
    if site.shared_root is not None and site.prefect is not None:
        return ScheduledSite(site, site.shared_root, site.prefect)
    raise InputError(f"{source}: submit needs shared_root: and slurm: (or prefect:) in the site profile")

"""Transfer tasks for S3 and ssh destinations (one task per artifact's blobs for S3; one rsync for ssh)."""

from __future__ import annotations

from pathlib import Path

from airlift_tasks.common import ProgressLog
from prefect import task

from airlift.bundle.layout import Bundle
from airlift.fetch.cache import Cache
from airlift.transport import s3 as transfer_s3
from airlift.transport import ssh as transfer_ssh
from airlift.transport.location import Location, TransferPlan, TransferResult
from airlift.util import s3 as s3_util


@task(name="plan-s3-push")
def plan_s3_push(*, src: str, location: Location, endpoint: str | None, recheck: bool = False) -> TransferPlan:
    """The blobs DEST lacks: absent, without airlift's sha256, or (with `recheck`) failing a rehash."""
    return transfer_s3.plan_push(s3_util.client(endpoint), Bundle(src), location, recheck=recheck)


@task(name="s3-upload-blobs", task_run_name="s3 put {artifact_id}")
def s3_upload(*, src: str, location: Location, endpoint: str | None, artifact_id: str, digests: list[str], total: int) -> list[str]:
    transfer_s3.upload_blobs(
        s3_util.client(endpoint), src=Bundle(src), location=location, digests=digests, state_dir=Cache().s3_uploads_dir,
        on_bytes=ProgressLog(f"s3 put {artifact_id}", total),
    )
    return digests


@task(name="s3-finish-push")
def s3_finish_push(*, src: str, location: Location, endpoint: str | None) -> None:
    transfer_s3.finish_push(s3_util.client(endpoint), Bundle(src), location)


@task(name="plan-s3-pull")
def plan_s3_pull(*, location: Location, dest: str, endpoint: str | None, recheck: bool = False) -> TransferPlan:
    """The remote manifest, the blobs DEST lacks (by artifact), and what DEST proved it holds."""
    return transfer_s3.plan_pull(s3_util.client(endpoint), location, Path(dest), recheck=recheck)


@task(name="s3-download-blobs", task_run_name="s3 get {artifact_id}")
def s3_download(*, location: Location, dest: str, endpoint: str | None, artifact_id: str, digests: list[str], total: int) -> list[str]:
    transfer_s3.pull_blobs(s3_util.client(endpoint), location, dest=Path(dest), digests=digests, on_bytes=ProgressLog(f"s3 get {artifact_id}", total))
    return digests


@task(name="s3-finish-pull")
def s3_finish_pull(*, location: Location, dest: str, endpoint: str | None, plan: TransferPlan, copied: list[str]) -> None:
    transfer_s3.finish_pull(s3_util.client(endpoint), location, dest=Path(dest), plan=plan, copied=set(copied))


@task(name="rsync-push", task_run_name="rsync to {location.text}")
def ssh_push(*, src: str, location: Location, opts: transfer_ssh.SshOptions, recheck: bool = False) -> TransferResult:
    return transfer_ssh.push(Bundle(src), location, opts, recheck=recheck)


@task(name="rsync-pull", task_run_name="rsync from {location.text}")
def ssh_pull(*, location: Location, dest: str, opts: transfer_ssh.SshOptions, recheck: bool = False) -> TransferResult:
    return transfer_ssh.pull(location, Path(dest), opts, recheck=recheck)

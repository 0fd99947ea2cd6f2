"""transfer-bundle: send only what DEST lacks (directory, ssh, S3, in either direction), then verify DEST."""

from __future__ import annotations

from airlift_flows._util import gather
from airlift_tasks.bundle import copy_blobs, finalize, plan_transfer
from airlift_tasks.remote import (
    plan_s3_pull,
    plan_s3_push,
    s3_download,
    s3_finish_pull,
    s3_finish_push,
    s3_upload,
    ssh_pull,
    ssh_push,
)
from prefect import flow, get_run_logger

from airlift.bundle.layout import Bundle
from airlift.transport.location import TransferResult, parse_location, resolve_dir
from airlift.transport.ssh import SshOptions
from airlift.util.errors import InputError


@flow(name="transfer-bundle", log_prints=True)
def transfer_bundle(
    src: str, dest: str, ssh_key: str | None = None, ssh_options: list[str] | None = None, s3_endpoint: str | None = None,
    recheck: bool = False,
) -> TransferResult:
    """Copy the bundle at `src` to `dest`, sending only what `dest` lacks, then verify `dest`.

    A blob already at `dest` counts only when it is proven: for a directory, by a matching verification
    stamp or a rehash; over ssh, the same, hashed on the far side; on S3, by its size and the sha256
    airlift stored with it. A damaged one is sent again. A delta's blobs left to its lineage are
    expected absent at `dest`.

    Args:
        src: A bundle directory, `ssh://[user@]host[:port]/abs/path` or `s3://bucket/prefix`.
        dest: Where to put it (same forms). One side must be a local directory.
        ssh_key: Private key for ssh (otherwise the user's ssh config and agent apply).
        ssh_options: Extra ssh options as KEY=VALUE (passed as -o).
        s3_endpoint: S3 endpoint URL (otherwise AWS_ENDPOINT_URL, as boto3 reads it).
        recheck: Rehash every blob already at `dest`, whatever its stamp says (on S3: download each).
    """
    source = parse_location(src, argument="SRC")
    target = parse_location(dest, argument="--to")
    opts = SshOptions(ssh_key, tuple(ssh_options or ()))
    logger = get_run_logger()
    kinds = (source.kind, target.kind)
    if kinds == ("dir", "dir"):
        Bundle(src).require()
        dest_path = resolve_dir(target)
        plan = plan_transfer(src=src, dest=str(dest_path), recheck=recheck)
        groups = plan.by_artifact()
        copying = [
            copy_blobs.submit(src=src, dest=str(dest_path), artifact_id=a, digests=d, total=sum(plan.missing[x][1] for x in d))
            for a, d in groups.items()
        ]
        copied = [d for batch in gather(copying, list(groups)) for d in batch]
        finalize(src=src, dest=str(dest_path), plan=plan, copied=copied)
        result = plan.result(dest, sent=copied)
    elif kinds == ("dir", "s3"):
        Bundle(src).require()
        plan = plan_s3_push(src=src, location=target, endpoint=s3_endpoint, recheck=recheck)
        groups = plan.by_artifact()
        uploads = [
            s3_upload.submit(src=src, location=target, endpoint=s3_endpoint, artifact_id=a, digests=d, total=sum(plan.missing[x][1] for x in d))
            for a, d in groups.items()
        ]
        sent = [d for batch in gather(uploads, list(groups)) for d in batch]
        s3_finish_push(src=src, location=target, endpoint=s3_endpoint)
        result = plan.result(dest, sent=sent)
    elif kinds == ("s3", "dir"):
        dest_path = resolve_dir(target)
        plan = plan_s3_pull(location=source, dest=str(dest_path), endpoint=s3_endpoint, recheck=recheck)
        groups = plan.by_artifact()
        downloads = [
            s3_download.submit(location=source, dest=str(dest_path), endpoint=s3_endpoint, artifact_id=a, digests=d, total=sum(plan.missing[x][1] for x in d))
            for a, d in groups.items()
        ]
        sent = [d for batch in gather(downloads, list(groups)) for d in batch]
        s3_finish_pull(location=source, dest=str(dest_path), endpoint=s3_endpoint, plan=plan, copied=sent)
        result = plan.result(dest, sent=sent)
    elif kinds == ("dir", "ssh"):
        Bundle(src).require()
        result = ssh_push(src=src, location=target, opts=opts, recheck=recheck)
    elif kinds == ("ssh", "dir"):
        result = ssh_pull(location=source, dest=str(resolve_dir(target)), opts=opts, recheck=recheck)
    else:
        raise InputError(f"transfer {source.kind} -> {target.kind}: one side must be a local directory (stage through one)")
    logger.info(result.summary())
    return result

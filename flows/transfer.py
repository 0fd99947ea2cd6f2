"""transfer-bundle: send only what DEST lacks (directory, ssh, S3, in either direction), then verify DEST."""

from __future__ import annotations

from prefect import flow, get_run_logger

from airlift.bundle.layout import Bundle
from airlift.transport.location import TransferResult, parse_location, resolve_dir
from airlift.transport.ssh import SshOptions
from airlift.util.errors import InputError
from flows._util import gather
from tasks.bundle import copy_blobs, finalize, plan_transfer
from tasks.remote import (
    plan_s3_pull,
    plan_s3_push,
    s3_download,
    s3_finish_pull,
    s3_finish_push,
    s3_upload,
    ssh_pull,
    ssh_push,
)


def _by_artifact(missing: dict[str, tuple[str, int]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for digest, (artifact_id, _) in sorted(missing.items()):
        groups.setdefault(artifact_id, []).append(digest)
    return groups


@flow(name="transfer-bundle", log_prints=True)
def transfer_bundle(
    src: str, dest: str, ssh_key: str | None = None, ssh_options: list[str] | None = None, s3_endpoint: str | None = None,
) -> TransferResult:
    """Copy the bundle at `src` to `dest`, sending only what `dest` lacks, then verify `dest`.

    Args:
        src: A bundle directory, `ssh://[user@]host[:port]/abs/path` or `s3://bucket/prefix`.
        dest: Where to put it (same forms). One side must be a local directory.
        ssh_key: Private key for ssh (otherwise the user's ssh config and agent apply).
        ssh_options: Extra ssh options as KEY=VALUE (passed as -o).
        s3_endpoint: S3 endpoint URL (otherwise AWS_ENDPOINT_URL, as boto3 reads it).
    """
    source = parse_location(src, argument="SRC")
    target = parse_location(dest, argument="--to")
    opts = SshOptions(ssh_key, tuple(ssh_options or ()))
    logger = get_run_logger()
    kinds = (source.kind, target.kind)
    if kinds == ("dir", "dir"):
        Bundle(src).require()
        dest_path = resolve_dir(target)
        plan = plan_transfer(src=src, dest=str(dest_path))
        groups = plan.by_artifact()
        copying = [
            copy_blobs.submit(src=src, dest=str(dest_path), artifact_id=a, digests=d, total=sum(plan.missing[x][1] for x in d))
            for a, d in groups.items()
        ]
        copied = [d for batch in gather(copying, list(groups)) for d in batch]
        finalize(src=src, dest=str(dest_path), plan=plan, copied=copied)
        sent, present = copied, plan.present
        sent_bytes = sum(plan.missing[d][1] for d in copied)
    elif kinds == ("dir", "s3"):
        Bundle(src).require()
        missing, present = plan_s3_push(src=src, location=target, endpoint=s3_endpoint)
        groups = _by_artifact(missing)
        uploads = [
            s3_upload.submit(src=src, location=target, endpoint=s3_endpoint, artifact_id=a, digests=d, total=sum(missing[x][1] for x in d))
            for a, d in groups.items()
        ]
        sent = [d for batch in gather(uploads, list(groups)) for d in batch]
        s3_finish_push(src=src, location=target, endpoint=s3_endpoint)
        sent_bytes = sum(missing[d][1] for d in sent)
    elif kinds == ("s3", "dir"):
        dest_path = resolve_dir(target)
        manifest_bytes, missing, present = plan_s3_pull(location=source, dest=str(dest_path), endpoint=s3_endpoint)
        groups = _by_artifact(missing)
        downloads = [
            s3_download.submit(location=source, dest=str(dest_path), endpoint=s3_endpoint, artifact_id=a, digests=d, total=sum(missing[x][1] for x in d))
            for a, d in groups.items()
        ]
        sent = [d for batch in gather(downloads, list(groups)) for d in batch]
        s3_finish_pull(location=source, dest=str(dest_path), endpoint=s3_endpoint, manifest_bytes=manifest_bytes, copied=sent)
        sent_bytes = sum(missing[d][1] for d in sent)
    elif kinds == ("dir", "ssh"):
        Bundle(src).require()
        sent, sent_bytes, present = ssh_push(src=src, location=target, opts=opts)
    elif kinds == ("ssh", "dir"):
        sent, sent_bytes, present = ssh_pull(location=source, dest=str(resolve_dir(target)), opts=opts)
    else:
        raise InputError(f"transfer {source.kind} -> {target.kind}: one side must be a local directory (stage through one)")
    logger.info("sent %d blobs (%d bytes); %d already at %s; verified", len(sent), sent_bytes, present, dest)
    return TransferResult(dest=dest, blobs_sent=len(sent), bytes_sent=sent_bytes, blobs_present=present)

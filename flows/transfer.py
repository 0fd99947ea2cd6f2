"""transfer-bundle: send only what DEST lacks, then verify DEST."""

from __future__ import annotations

from prefect import flow, get_run_logger

from airlift.bundle import Bundle
from airlift.errors import InputError
from airlift.transfer import parse_location, resolve_dir
from flows._util import gather
from tasks.bundle import copy_blobs, finalize, plan_transfer


@flow(name="transfer-bundle", log_prints=True)
def transfer_bundle(src: str, dest: str) -> dict:
    """Copy the bundle at `src` to `dest` (a directory), sending only missing blobs, then verify `dest`.

    Args:
        src: Bundle directory to send.
        dest: Destination directory.
    """
    source = parse_location(src, argument="SRC")
    target = parse_location(dest, argument="--to")
    if source.kind != "dir" or target.kind != "dir":
        raise InputError("transfer: only directory to directory is available in this version")
    Bundle(src).require()
    dest_path = resolve_dir(target)
    plan = plan_transfer(src=src, dest=str(dest_path))
    groups = plan.by_artifact()
    copying = [
        copy_blobs.submit(src=src, dest=str(dest_path), artifact_id=artifact_id, digests=digests, total=sum(plan.missing[d][1] for d in digests))
        for artifact_id, digests in groups.items()
    ]
    copied = [d for batch in gather(copying, list(groups)) for d in batch]
    finalize(src=src, dest=str(dest_path), plan=plan, copied=copied)
    sent = sum(plan.missing[d][1] for d in copied)
    get_run_logger().info("sent %d blobs (%d bytes); %d already at %s; verified", len(copied), sent, plan.present, dest)
    return {"dest": dest, "blobs_sent": len(copied), "bytes_sent": sent, "blobs_present": plan.present}

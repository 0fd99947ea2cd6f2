"""transfer-bundle: send only what DEST lacks (directory, ssh, S3, in either direction), then verify DEST."""

from __future__ import annotations

from airlift_flows._util import gather
from airlift_tasks.remote import finish, plan, send_blobs
from prefect import flow, get_run_logger

from airlift.bundle.stamps import Stamp
from airlift.fetch.cache import Cache
from airlift.transport.base import TransferResult
from airlift.transport.engine import check_pair, parse_endpoint
from airlift.transport.ssh import SshOptions


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
        src: A bundle directory, ssh://[user@]host[:port]/abs/path or s3://bucket/prefix.
        dest: Where to put it (same forms). One side must be a local directory.
        ssh_key: Private key for ssh (otherwise the user's ssh config and agent apply).
        ssh_options: Extra ssh options as KEY=VALUE (passed as -o).
        s3_endpoint: S3 endpoint URL (otherwise AWS_ENDPOINT_URL, as boto3 reads it).
        recheck: Rehash every blob already at dest, whatever its stamp says (on S3: download each).
    """
    opts = SshOptions(ssh_key, tuple(ssh_options or ()))
    # Built once: every task of this run uses the same endpoints (one S3 client, one bucket check).
    endpoints = {"ssh": opts, "s3_endpoint": s3_endpoint, "s3_state_dir": Cache().s3_uploads_dir}
    source = parse_endpoint(src, argument="SRC", **endpoints)
    target = parse_endpoint(dest, argument="--to", **endpoints)
    check_pair(source, target)
    planned = plan(src=source, dest=target, recheck=recheck)
    groups = planned.by_artifact()
    sending = [
        send_blobs.submit(src=source, dest=target, artifact_id=a, digests=d, total=planned.bytes_of(d))
        for a, d in groups.items()
    ]
    sent: dict[str, Stamp | None] = {}
    for batch in gather(sending, list(groups)):
        sent |= batch
    result = finish(src=source, dest=target, plan=planned, sent=sent)
    get_run_logger().info(result.summary())
    return result

"""The one transfer engine: plan (what DEST proves it holds), send (what it lacks), finish (small files, manifest last, DEST's proof).

Every pair of endpoints (directory, ssh, S3; one side a local directory) runs these three steps, so
resume, stamps, `--recheck` and deltas behave the same whichever way a bundle moves. The flow
(flows/transfer.py) runs `plan_transfer`, then `send` once per artifact, then `finish_transfer`;
`transfer()` runs them in a row for callers without Prefect (tests, the benchmark).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from airlift.bundle.layout import MANIFEST
from airlift.bundle.manifest import Manifest
from airlift.bundle.stamps import Stamp
from airlift.transport.base import (
    Endpoint,
    OnBytes,
    TransferPlan,
    TransferResult,
    carried_blobs,
    lent_blobs,
    require_whole,
)
from airlift.transport.local import DirEndpoint
from airlift.transport.s3 import S3Endpoint
from airlift.transport.ssh import SshEndpoint, SshOptions
from airlift.util.errors import InputError


def parse_endpoint(
    text: str, *, argument: str, ssh: SshOptions | None = None, s3_endpoint: str | None = None, s3_state_dir: Path | None = None,
) -> Endpoint:
    """The endpoint a SRC or --to names: a path, `ssh://[user@]host[:port]/abs/path` or `s3://bucket/prefix`.

    Raises:
        InputError: The text is none of these (naming `argument`).
    """
    if text.startswith("ssh://"):
        return SshEndpoint(text, argument=argument, opts=ssh)
    if text.startswith("s3://"):
        return S3Endpoint(text, argument=argument, endpoint_url=s3_endpoint, state_dir=s3_state_dir)
    if "://" in text:
        raise InputError(f"{argument}: {text!r}: only paths, ssh:// and s3:// are supported")
    return DirEndpoint(text)


def kind(endpoint: Endpoint) -> str:
    return {DirEndpoint: "dir", S3Endpoint: "s3", SshEndpoint: "ssh"}[type(endpoint)]


def check_pair(src: Endpoint, dest: Endpoint) -> None:
    """One side must be a local directory: blobs go from or to its store (stage through one otherwise)."""
    if not isinstance(src, DirEndpoint) and not isinstance(dest, DirEndpoint):
        raise InputError(f"transfer {kind(src)} -> {kind(dest)}: one side must be a local directory (stage through one)")


def plan_transfer(src: Endpoint, dest: Endpoint, *, recheck: bool = False) -> TransferPlan:
    """What DEST lacks: blobs the source carries that DEST cannot prove it holds (damaged ones are set aside).

    Args:
        src: Where the bundle is.
        dest: Where it goes.
        recheck: Prove every blob DEST holds by its bytes, whatever its stamp (on S3: download each).

    Raises:
        InputError: Neither side is a local directory, or one cannot be used as such.
        WorkError: DEST is checked blob by blob (S3, ssh) and SRC lacks blobs it does not lend.
    """
    check_pair(src, dest)
    src.prepare(as_dest=False)
    dest.prepare(as_dest=True)
    manifest_bytes = src.read_manifest()
    manifest = Manifest.parse(manifest_bytes, origin=f"{src.text}/{MANIFEST}")
    carried = carried_blobs(manifest, src.list_blobs())
    lent = lent_blobs(manifest, carried)
    if not isinstance(dest, DirEndpoint):
        # A local DEST is verified as a whole at the end; a remote one only blob by blob, so refuse now.
        require_whole(manifest, set(carried) | lent, where=src.text)
    proof = dest.prove({d: v[1] for d, v in carried.items()}, recheck=recheck)
    missing = {d: v for d, v in carried.items() if d not in proof.proven}
    return TransferPlan(
        manifest, manifest_bytes, missing, len(proof.proven), proven=set(proof.proven), damaged=len(proof.damaged),
        lent=lent, carried=carried, stamps=dict(proof.stamps),
    )


def send(src: Endpoint, dest: Endpoint, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
    """Move blobs from the source to DEST, each checked as it lands; the local side's store is read or written."""
    if isinstance(src, DirEndpoint):
        return dest.put_blobs(src.bundle, digests, on_bytes=on_bytes)
    assert isinstance(dest, DirEndpoint), "check_pair: one side is a local directory"
    return src.get_blobs(dest.bundle, digests, on_bytes=on_bytes)


def finish_transfer(src: Endpoint, dest: Endpoint, plan: TransferPlan, *, sent: Mapping[str, Stamp | None]) -> TransferResult:
    """Small files, the manifest last, then DEST's proof; returns what the transfer did.

    Raises:
        WorkError: DEST is not whole after the transfer (naming what is missing or damaged).
    """
    dest.finish(plan, src, sent=sent)
    return plan.result(dest.text, sent=sent, src=src.text)


def transfer(src: Endpoint, dest: Endpoint, *, recheck: bool = False, on_bytes: OnBytes = None) -> TransferResult:
    """Send the bundle at `src` to `dest`: only what DEST lacks, then verify DEST (dvc-objects' `transfer()`, for bundles)."""
    plan = plan_transfer(src, dest, recheck=recheck)
    sent: dict[str, Stamp | None] = {}
    for digests in plan.by_artifact().values():
        sent |= send(src, dest, digests, on_bytes=on_bytes)
    return finish_transfer(src, dest, plan, sent=sent)

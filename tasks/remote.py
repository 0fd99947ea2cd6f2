"""Transfer tasks, one path for every pair of endpoints: plan, one send per artifact, finish.

Each task is one call into the engine (airlift/transport/engine.py), which owns the rules. The
endpoints are built once by the flow and passed in, so an S3 endpoint's client (and its bucket
check) serves the whole run. `cache_policy=NONE`: a transfer is never replayed from a cache (what
DEST holds is proven afresh each run), and endpoints hold live clients that are not hashable inputs.
"""

from __future__ import annotations

from airlift_tasks.common import ProgressLog
from prefect import task
from prefect.cache_policies import NONE

from airlift.bundle.stamps import Stamp
from airlift.transport.base import Endpoint, TransferPlan, TransferResult
from airlift.transport.engine import finish_transfer, plan_transfer, send


@task(name="plan-transfer", task_run_name="plan {dest.text}", cache_policy=NONE)
def plan(*, src: Endpoint, dest: Endpoint, recheck: bool = False) -> TransferPlan:
    """What DEST lacks; what it holds counts only when it is proven (stamp, rehash, or S3's stored sha256)."""
    return plan_transfer(src, dest, recheck=recheck)


@task(name="send-blobs", task_run_name="send {artifact_id}", cache_policy=NONE)
def send_blobs(*, src: Endpoint, dest: Endpoint, artifact_id: str, digests: list[str], total: int) -> dict[str, Stamp | None]:
    """Send one artifact's missing blobs, each checked as it lands. Returns those sent."""
    return send(src, dest, digests, on_bytes=ProgressLog(f"send {artifact_id}", total))


@task(name="finish-transfer", task_run_name="finish {dest.text}", cache_policy=NONE)
def finish(*, src: Endpoint, dest: Endpoint, plan: TransferPlan, sent: dict[str, Stamp | None]) -> TransferResult:
    """Small files, the manifest last, then DEST's proof."""
    return finish_transfer(src, dest, plan, sent=sent)

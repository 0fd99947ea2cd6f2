"""Submitting the spec's jobs to the real single-node Slurm, running containers from the air-gapped registry."""

from __future__ import annotations

import json
import subprocess
import time

from tests.conftest import build_with_container_site
from tests.fixtures import add_model

# shared_root is read-only in the container: a job writes its $AIRLIFT_OUTPUT only (never .airlift/),
# and train reads prep's output under outputs/prep/<run id>/.
PREP = (
    'test "$HF_HUB_OFFLINE" = 1 && test "$TRANSFORMERS_OFFLINE" = 1 && '
    "! busybox touch $AIRLIFT_ROOT/.airlift/forged 2>/dev/null && ! busybox touch $AIRLIFT_ROOT/forged 2>/dev/null && "
    "cat $HF_HOME/hub/models--acme--job-model/snapshots/*/config.json > $AIRLIFT_OUTPUT/prep.out && "
    "busybox sleep 2 && busybox date +%s > $AIRLIFT_OUTPUT/prep.done"
)
TRAIN = (
    "test -f $AIRLIFT_ROOT/outputs/prep/*/prep.done && busybox date +%s > $AIRLIFT_OUTPUT/train.started && "
    "cat $AIRLIFT_ROOT/outputs/prep/*/prep.out && echo trained"
)

def test_job_chain_runs_on_slurm_after_preflight(ws, hub, upstream, services):
    model = add_model(hub, "acme/job-model", weights_size=100_000, seed=171)
    spec = ws.write("jobs.yaml", f"""name: chain
models:
  - hf: acme/job-model
images:
  - {upstream.app_a}
jobs:
  - name: prep
    image: {upstream.app_a}
    command: {json.dumps(["sh", "-c", PREP])}
    uses: [models/acme/job-model]
  - name: train
    image: {upstream.app_a}
    command: {json.dumps(["sh", "-c", TRAIN])}
    needs: [prep]
    uses: [models/acme/job-model]
    resources: {{nodes: 1, time: "00:05:00"}}
""")
    root, site, prefix = build_with_container_site(ws, spec, upstream, services, runner="slurm: {partition: batch, container_runtime: docker}", prefix="jobs")
    refused = ws.run("submit", "bundle", "--site", str(site), expect=1)
    assert "models/acme/job-model is not ingested" in refused.stderr
    assert f"{services['AIRLIFT_AIRGAP_REGISTRY']}/{prefix}/airlift-fixtures/app-a:1" in refused.stderr
    assert not (root / ".airlift" / "jobs").exists(), "nothing may be submitted when preflight fails"

    ws.run("ingest", "bundle", "--site", str(site))
    out = ws.run("submit", "bundle", "--site", str(site), "--wait", timeout=600).stdout
    assert "submitted: prep, train" in out and "COMPLETED" in out, out
    prep, train = (next((root / "outputs" / name).iterdir()) for name in ("prep", "train"))
    assert (prep / "prep.out").read_bytes() == model["config.json"]
    assert int((train / "train.started").read_text()) >= int((prep / "prep.done").read_text()), "train started before prep finished"
    assert not (root / ".airlift" / "forged").exists() and not (root / "forged").exists(), "shared_root must be read-only in a job"
    train_log = next((root / "logs").glob("chain-train-*.out")).read_text()
    assert "trained" in train_log and model["config.json"].decode() in train_log
    script = (root / ".airlift" / "jobs" / "chain" / "train.sbatch").read_text()
    assert "HF_HUB_OFFLINE=1" in script and "--network none" in script and f"{prefix}/airlift-fixtures/app-a:1" in script

    again = ws.run("submit", "bundle", "--site", str(site)).stdout
    assert "submitted: nothing new" in again

    bad = ws.run("submit", "bundle", "--site", str(site), "--job", "nope", expect=2)
    assert "--job nope" in bad.stderr


def test_wait_exits_1_when_a_job_fails_and_does_not_hang_on_its_dependents(ws, upstream):
    spec = ws.write("fail.yaml", f"""name: failing
images:
  - {upstream.app_a}
jobs:
  - name: prep
    image: {upstream.app_a}
    command: ["sh", "-c", "echo broken input >&2; exit 3"]
  - name: train
    image: {upstream.app_a}
    command: ["sh", "-c", "echo should never run"]
    needs: [prep]
""")
    ws.run("build", str(spec), "--out", "bundle", extra_env={"DOCKER_HOST": upstream.docker_host})
    root = ws.root / "root"
    site = ws.write("site.yaml", f"shared_root: {root}\nslurm: {{partition: batch, container_runtime: none}}\n")
    started = time.monotonic()
    result = ws.run("submit", "bundle", "--site", str(site), "--wait", expect=1, timeout=300)
    assert time.monotonic() - started < 120, "--wait hung on a job whose dependency failed"
    assert "prep (FAILED" in result.stderr and "train (DEPENDENCY_NEVER_SATISFIED" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    records = json.loads((root / ".airlift" / "jobs" / "failing.json").read_text())
    state = subprocess.run(["scontrol", "show", "job", "-o", records["train"]["id"]], capture_output=True, text=True).stdout
    assert "JobState=CANCELLED" in state, state
    assert not any("should never run" in p.read_text() for p in (root / "logs").glob("failing-train-*.out"))

"""Prefect operations against a real `prefect server start`: deployments and a worker, the scheduled
mirror refresh, concurrent builds into one store, Dask scale-out, and the Prefect job backend."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, VENV_BIN, build_with_container_site, verified
from tests.fixtures import add_model, pseudo_random

DEPLOYMENTS = {"build-bundle", "transfer-bundle", "ingest-bundle", "submit-jobs", "mirror-refresh", "run-job"}


def _api(server, path: str, body: dict | None = None):
    request = urllib.request.Request(f"{server['api']}{path}", data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=15).read())


@pytest.fixture(scope="module")
def deployed(prefect_server, hub, tmp_path_factory):
    """`prefect work-pool create` + `prefect deploy --all` from the checkout, and a worker on the pool."""
    home = tmp_path_factory.mktemp("worker")
    env = {**os.environ, "PREFECT_API_URL": prefect_server["api"], "PREFECT_HOME": prefect_server["home"],
           "AIRLIFT_MIRROR_SPEC": str(home / "mirror.yaml"), "AIRLIFT_MIRROR_BUNDLES": str(home / "mirrors"),
           "HF_ENDPOINT": hub.url, "AIRLIFT_CACHE": str(home / "cache"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    pool = subprocess.run([str(VENV_BIN / "prefect"), "work-pool", "create", "airlift", "--type", "process"], env=env, capture_output=True, text=True)
    assert pool.returncode == 0 or "already exists" in pool.stdout + pool.stderr, pool.stderr
    deploy = subprocess.run([str(VENV_BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    log = open(home / "worker.log", "wb")  # noqa: SIM115
    # The worker runs elsewhere: the deployments' recorded pull step (the checkout) is what finds the flows.
    worker = subprocess.Popen([str(VENV_BIN / "prefect"), "worker", "start", "--pool", "airlift", "--limit", "4"],
                              cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield {"env": env, "home": home}
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def test_deploy_all_and_a_worker_runs_build_bundle(ws, hub, deployed, prefect_server):
    deployments = {d["name"]: d for d in _api(prefect_server, "/deployments/filter")}
    assert set(deployments) >= DEPLOYMENTS
    crons = [s["schedule"].get("cron") for s in deployments["mirror-refresh"]["schedules"]]
    assert crons == ["0 2 * * *"]
    assert set(deployments["build-bundle"]["parameter_openapi_schema"]["properties"]) >= {"spec", "out", "since"}

    add_model(hub, "acme/deployed-model", weights_size=200_000, seed=191)
    spec = ws.write("dep.yaml", "name: deployed\nmodels:\n  - hf: acme/deployed-model\n")
    out = ws.root / "bundle"
    run = subprocess.run(
        [str(VENV_BIN / "prefect"), "deployment", "run", "build-bundle/build-bundle", "-p", f"spec={spec}", "-p", f"out={out}", "--watch", "--watch-timeout", "240"],
        env=deployed["env"], capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:] + (deployed["home"] / "worker.log").read_text()[-3000:]
    assert (out / "manifest.json").is_file()
    runs = _api(prefect_server, "/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 20})
    mine = next(r for r in runs if r["parameters"].get("out") == str(out))
    assert mine["state_type"] == "COMPLETED" and mine["deployment_id"] == deployments["build-bundle"]["id"]
    artifacts = _api(prefect_server, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [mine["id"]]}}})
    table = next(a for a in artifacts if a["key"] == "bundle-contents")
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert rows[0]["artifact"] == "models/acme/deployed-model" and rows[0]["files"] == 4


def test_mirror_refresh_writes_one_none_one(ws, hub):
    base = {"config.json": b'{"v": 1}\n', "model.safetensors": pseudo_random(800_000, 201), "tokenizer.json": b"{}\n"}
    hub.add_repo("model", "acme/mirror-model", files=base)
    spec = ws.write("mirror.yaml", "name: mirror\nmodels:\n  - hf: acme/mirror-model\n    revision: main\n")
    first = ws.run("mirror-refresh", str(spec), "--bundles-dir", "mirrors").stdout
    assert "new bundle" in first
    second = ws.run("mirror-refresh", str(spec), "--bundles-dir", "mirrors").stdout
    assert "nothing changed upstream" in second
    assert len(list((ws.root / "mirrors").iterdir())) == 1
    hub.add_repo("model", "acme/mirror-model", files={**base, "config.json": b'{"v": 2}\n'})
    third = ws.run("mirror-refresh", str(spec), "--bundles-dir", "mirrors").stdout
    assert "delta since" in third
    bundles = sorted((ws.root / "mirrors").iterdir())
    assert len(bundles) == 2
    manifest = json.loads((bundles[1] / "manifest.json").read_text())
    evidence = {manifest["evidence"]["sbom_sha256"], manifest["evidence"]["provenance_sha256"]}  # the delta's own SBOM and provenance
    blobs = [b for b in (bundles[1] / "blobs" / "sha256").iterdir() if b.name not in evidence]
    assert [b.read_bytes() for b in blobs] == [b'{"v": 2}\n']
    assert manifest["since"]["name"] == "mirror"
    verified(bundles[1], store=bundles[0])


def test_two_concurrent_builds_into_one_store_both_verify(ws, hub):
    add_model(hub, "acme/race-model", weights_size=3_000_000, seed=211)
    hub.add_repo("dataset", "acme/race-data", files={f"part-{i}.bin": pseudo_random(300_000, 220 + i) for i in range(6)})
    spec = ws.write("race.yaml", "name: race\nmodels:\n  - hf: acme/race-model\ndatasets:\n  - hf: acme/race-data\n")
    hub.set_faults(bytes_per_second=4_000_000)  # long enough that the two builds overlap
    procs = [ws.popen("build", str(spec), "--out", f"b{i}") for i in (1, 2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    hub.set_faults()
    for name in ("b1", "b2"):
        verified(ws.root / name)
    assert (ws.root / "b1" / "manifest.json").read_text().count('"sha256"') == (ws.root / "b2" / "manifest.json").read_text().count('"sha256"')


def test_dask_localcluster_build_matches_default_runner(ws, hub):
    add_model(hub, "acme/dask-model", weights_size=300_000, seed=231)
    hub.add_repo("dataset", "acme/dask-data", files={"a.parquet": pseudo_random(100_000, 232)})
    spec = ws.write("dask.yaml", "name: dask\nmodels:\n  - hf: acme/dask-model\ndatasets:\n  - hf: acme/dask-data\n")
    ws.run("build", str(spec), "--out", "default")
    ws.run("build", str(spec), "--out", "dask", "--dask", "local", timeout=300, extra_env={"AIRLIFT_CACHE": str(ws.root / "cache-dask")})

    def comparable(name: str) -> dict:
        manifest = json.loads((ws.root / name / "manifest.json").read_text())
        manifest.pop("created")
        manifest.pop("evidence")  # the provenance records the build time, so its digest differs run to run
        return manifest

    assert comparable("default") == comparable("dask")
    verified(ws.root / "dask")


def test_prefect_backend_runs_the_job_chain(ws, hub, upstream, services, deployed):
    add_model(hub, "acme/pjob-model", weights_size=50_000, seed=241)
    spec = ws.write("pjobs.yaml", f"""name: pchain
models:
  - hf: acme/pjob-model
images:
  - {upstream.app_a}
jobs:
  - name: prep
    image: {upstream.app_a}
    command: ["sh", "-c", "env > $AIRLIFT_OUTPUT/prep.env && echo prep-output-line && test \\"$HF_HUB_OFFLINE\\" = 1 && ! busybox touch $AIRLIFT_ROOT/.airlift/forged 2>/dev/null && cat $HF_HOME/hub/models--acme--pjob-model/snapshots/*/config.json > $AIRLIFT_OUTPUT/prep.out"]
    uses: [models/acme/pjob-model]
  - name: train
    image: {upstream.app_a}
    command: ["sh", "-c", "test -f $AIRLIFT_ROOT/outputs/prep/*/prep.out && echo trained > $AIRLIFT_OUTPUT/train.out"]
    needs: [prep]
""")
    root, site, prefix = build_with_container_site(ws, spec, upstream, services, runner="prefect: {deployment: run-job/run-job, container_runtime: docker}", prefix="pjobs")
    ws.run("ingest", "bundle", "--site", str(site))
    out = ws.run("submit", "bundle", "--site", str(site), "--wait", timeout=400).stdout
    assert "submitted: prep, train" in out and out.count("COMPLETED") == 2, out
    # shared_root is read-only in the container: each job wrote its own outputs/<job>/<run id>/ only.
    prep, train = (next((root / "outputs" / name).iterdir()) for name in ("prep", "train"))
    assert (train / "train.out").read_text() == "trained\n" and not (root / ".airlift" / "forged").exists()
    assert "submitted: nothing new" in ws.run("submit", "bundle", "--site", str(site)).stdout
    deadline = time.monotonic() + 60  # the job's output lands on the shared filesystem after its state: generous, ends early
    while time.monotonic() < deadline and not Path(prep / "prep.out").exists():
        time.sleep(0.1)
    assert (prep / "prep.out").read_text().startswith('{"architectures"')
    seen = (prep / "prep.env").read_text()
    assert "HF_HUB_OFFLINE=1" in seen and f"AIRLIFT_ROOT={root}" in seen
    for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "PREFECT_API_URL", "HF_TOKEN"):
        assert secret not in seen, f"the Prefect job backend passed {secret} to the job"
    logs = list((root / "logs").glob("prep-*.out"))
    assert logs and "prep-output-line" in logs[0].read_text(), "the job's output belongs in shared_root/logs/"


def test_mirror_refresh_is_registered_paused_and_runs_only_with_a_spec(deployed, prefect_server):
    """prefect.yaml registers the 02:00 schedule paused; `make deploy`'s step turns it on only with AIRLIFT_MIRROR_SPEC."""
    def schedule_states() -> list[bool]:
        deployment = next(d for d in _api(prefect_server, "/deployments/filter") if d["name"] == "mirror-refresh")
        return [s["active"] for s in deployment["schedules"]]

    assert schedule_states() == [False], "prefect deploy --all registered the schedule active"
    unset = {k: v for k, v in deployed["env"].items() if k != "AIRLIFT_MIRROR_SPEC"}
    try:
        off = subprocess.run([str(VENV_BIN / "python"), "-m", "deployments.mirror_schedule"], cwd=REPO, env=unset, capture_output=True, text=True, timeout=120)
        assert off.returncode == 0, off.stderr[-2000:]
        assert "registered PAUSED: AIRLIFT_MIRROR_SPEC is unset" in off.stdout
        assert schedule_states() == [False]
        on = subprocess.run([str(VENV_BIN / "python"), "-m", "deployments.mirror_schedule"], cwd=REPO, env=deployed["env"], capture_output=True, text=True, timeout=120)
        assert on.returncode == 0 and "schedule active" in on.stdout, on.stderr[-2000:]
        assert schedule_states() == [True]
    finally:  # a live 02:00 schedule on the shared test server would fire for nobody
        subprocess.run([str(VENV_BIN / "python"), "-m", "deployments.mirror_schedule"], cwd=REPO, env=unset, capture_output=True, timeout=120)

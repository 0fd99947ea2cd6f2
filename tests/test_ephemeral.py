"""With no PREFECT_API_URL, a command runs its flow in Prefect's ephemeral mode; with one, runs show in that server."""

from __future__ import annotations

import json
import urllib.request

from tests.fixtures import add_model


def test_cli_runs_in_ephemeral_mode_without_api_url(ws, hub, tmp_path):
    add_model(hub, "acme/ephemeral-model", weights_size=50_000)
    spec = ws.write("eph.yaml", "name: eph\nmodels:\n  - hf: acme/ephemeral-model\n")
    env = {"AIRLIFT_PREFECT": "ephemeral", "PREFECT_HOME": str(tmp_path / "prefect-ephemeral")}
    result = ws.run("build", str(spec), "--out", "bundle", extra_env=env)
    assert "built bundle" in result.stdout
    ws.run("verify", "bundle", extra_env=env)


def test_cli_run_shows_up_in_the_server(ws, hub, prefect_server):
    add_model(hub, "acme/server-model", weights_size=50_000)
    spec = ws.write("srv.yaml", "name: srv\nmodels:\n  - hf: acme/server-model\n")
    ws.run("build", str(spec), "--out", "bundle")
    request = urllib.request.Request(
        f"{prefect_server['api']}/flow_runs/filter",
        data=json.dumps({"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "sort": "START_TIME_DESC", "limit": 50}).encode(),
        headers={"Content-Type": "application/json"},
    )
    runs = json.loads(urllib.request.urlopen(request, timeout=10).read())
    params = [r["parameters"] for r in runs]
    assert any(p.get("spec") == str(spec) and p.get("out") == "bundle" for p in params), params


def test_long_download_leaves_a_progress_artifact(ws, hub, prefect_server):
    add_model(hub, "acme/progress-model", weights_size=5_000_000, seed=5)
    spec = ws.write("prog.yaml", "name: prog\nmodels:\n  - hf: acme/progress-model\n")
    hub.set_faults(bytes_per_second=1_200_000)
    ws.run("build", str(spec), "--out", "bundle")
    request = urllib.request.Request(
        f"{prefect_server['api']}/artifacts/filter",
        data=json.dumps({"artifacts": {"type": {"any_": ["progress"]}}, "limit": 200}).encode(),
        headers={"Content-Type": "application/json"},
    )
    artifacts = json.loads(urllib.request.urlopen(request, timeout=10).read())
    mine = [a for a in artifacts if "fetch models/acme/progress-model" in (a.get("description") or "")]
    assert mine, [a.get("description") for a in artifacts]
    assert all(0 < float(a["data"]) <= 100 for a in mine)
    # Made from the download's worker threads, yet linked to the fetch task's run (its context is carried over).
    assert all(a.get("task_run_id") and a.get("flow_run_id") for a in mine), mine

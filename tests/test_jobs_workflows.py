"""The seeds' job workflows on the real single-node Slurm: a pinned checkout mounted read-only into a
docker job, offline pip and W&B variables, a dry run, a streamed `--wait`, and results carried out
with `airlift export` and back in with verify + ingest on the low side."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from tests.conftest import AIRLIFT, build_with_container_site, need
from tests.fixtures import add_model
from tests.test_sources import _git, make_git_repo

TRAIN = (
    'cat /opt/trainer/VERSION > "$AIRLIFT_OUTPUT/checkpoints/version.txt" && '
    'if touch /opt/trainer/planted 2>/dev/null; then echo writable; else echo read-only; fi > "$AIRLIFT_OUTPUT/checkpoints/mount.txt" && '
    'echo "$WANDB_DIR" > "$AIRLIFT_OUTPUT/wandb/dir.txt" && echo trained'
)


def test_pinned_checkout_is_mounted_read_only_and_its_output_exported(ws, upstream, services):
    commits = make_git_repo(ws.root / "upstream-repo")
    name = f"mnt{uuid.uuid4().hex[:6]}"
    spec = ws.write("mount.yaml", f"""name: {name}
images:
  - {upstream.app_a}
repos:
  - git: file://{ws.root / 'upstream-repo'}
    ref: v1.0
    name: trainer
jobs:
  - name: train
    image: {upstream.app_a}
    command: {json.dumps(["sh", "-c", TRAIN])}
    mounts: [{{from: repos/trainer, to: /opt/trainer}}]
    outputs: [checkpoints, wandb]
""")
    root, site, prefix = build_with_container_site(ws, spec, upstream, services, runner="slurm: {partition: batch, container_runtime: docker}", prefix="mnt")
    refused = ws.run("submit", "bundle", "--site", str(site), expect=1)
    assert "mount repos/trainer is not ingested" in refused.stderr, refused.stderr
    assert not (root / "outputs").exists(), "a refused submission leaves no run directory"

    ws.run("ingest", "bundle", "--site", str(site))
    out = ws.run("submit", "bundle", "--site", str(site), "--wait", timeout=600).stdout
    assert "COMPLETED" in out and "[train] trained" in out, out
    checkout = root / "checkouts" / "trainer" / commits["v1.0"]
    assert _git("rev-parse", "HEAD", cwd=checkout) == commits["v1.0"]
    script = (root / ".airlift" / "jobs" / name / "train.sbatch").read_text()
    assert f"{checkout}:/opt/trainer:ro" in script
    run = next((root / "outputs" / "train").iterdir())
    assert (run / "checkpoints" / "version.txt").read_text() == "v1.0\n", "the job saw other code than the pinned commit"
    assert (run / "checkpoints" / "mount.txt").read_text() == "read-only\n"
    assert (run / "wandb" / "dir.txt").read_text().strip() == str(run)
    assert not (checkout / "planted").exists()

    ws.run("keygen", "--out", "site")
    exported = ws.run("export", "--site", str(site), "--out", "results", "--key", "site.key").stdout
    assert "exported 1 runs" in exported and f"outputs/train/{run.name}" in exported, exported
    again = ws.run("export", "--site", str(site), "--out", "results", "--key", "site.key").stdout
    assert "0 blobs written" in again and "manifest unchanged" in again, again
    ws.run("verify", "results", "--pubkey", "site.pub")
    low = ws.root / "low"
    low_site = ws.write("low.yaml", f"shared_root: {low}\ntrust: {{keys: [{ws.root / 'site.pub'}]}}\n")
    ws.run("ingest", "results", "--site", str(low_site))
    landed = low / "outputs" / "train" / run.name
    assert (landed / "checkpoints" / "version.txt").read_text() == "v1.0\n"
    assert (landed / "wandb" / "dir.txt").exists()


PIP_JOB = (
    'test "$PIP_NO_INDEX" = 1 && test "$UV_OFFLINE" = 1 && test "$PIP_FIND_LINKS" = "$AIRLIFT_ROOT/wheels" && '
    '"$0" -m pip install -q --disable-pip-version-check --target "$AIRLIFT_OUTPUT/site" six==1.16.0 && '
    'echo "tick one"; i=0; while [ ! -f "$AIRLIFT_ROOT/go" ] && [ $i -lt 240 ]; do sleep 0.25; i=$((i+1)); done; echo "tick two"'
)


def test_offline_pip_in_a_job_dry_run_and_streamed_wait(ws, upstream):
    name = f"pip{uuid.uuid4().hex[:6]}"
    spec = ws.write("pip.yaml", f"""name: {name}
images: [{upstream.app_a}]
wheels:
  - requirements: ["six==1.16.0"]
    python: "3.11"
jobs:
  - name: pipjob
    image: {upstream.app_a}
    command: {json.dumps(["sh", "-c", PIP_JOB, sys.executable])}
    outputs: [site]
""")
    ws.run("build", str(spec), "--out", "bundle", extra_env={"DOCKER_HOST": upstream.docker_host})
    root = ws.root / "root"
    site = ws.write("site.yaml", f"shared_root: {root}\nslurm: {{partition: batch, container_runtime: none}}\n")
    ws.run("ingest", "bundle", "--site", str(site))

    dry = ws.run("submit", "bundle", "--site", str(site), "--dry-run").stdout
    assert "### job pipjob: sbatch --parsable" in dry and "#SBATCH --export=NONE" in dry, dry
    assert "export PIP_NO_INDEX=1" in dry and "nothing was submitted" in dry and "### preflight: ok" in dry, dry
    assert not (root / ".airlift" / "jobs" / f"{name}.json").exists(), "a dry run submitted something"

    proc = ws.popen("submit", "bundle", "--site", str(site), "--wait")
    assert proc.stdout is not None
    seen, started = [], time.monotonic()
    for line in proc.stdout:
        seen.append(line)
        if "[pipjob] tick one" in line:
            break
    assert any("[pipjob] tick one" in line for line in seen), "".join(seen) + proc.stderr.read()
    (root / "go").touch()  # the job only finishes once its first line was streamed to us
    rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "[pipjob] tick two" in rest and time.monotonic() - started < 120
    run = next((root / "outputs" / "pipjob").iterdir())
    assert (run / "site" / "six.py").exists(), "pip did not install the bundled wheel with no index"
    records = subprocess.run(["ls", str(root / ".airlift" / "runs" / "pipjob")], capture_output=True, text=True).stdout
    assert f"{run.name}.json" in records


def test_submit_through_a_login_node_over_ssh_quotes_every_remote_word(ws, upstream, services):
    if not services.get("AIRLIFT_SSH_URL") or not services.get("SLURM_CONF"):
        need("sshd", "no sshd or Slurm recorded")
    port = services["AIRLIFT_SSH_URL"].rsplit(":", 1)[1]
    name = f"ssh{uuid.uuid4().hex[:6]}"
    spec = ws.write("ssh.yaml", f"""name: {name}
images: [{upstream.app_a}]
jobs:
  - name: first
    image: {upstream.app_a}
    command: ["sh", "-c", "echo first > \\"$AIRLIFT_OUTPUT/first.txt\\""]
  - name: second
    image: {upstream.app_a}
    command: ["sh", "-c", "echo via-login-node > \\"$AIRLIFT_OUTPUT/done.txt\\""]
    needs: [first]
""")
    ws.run("build", str(spec), "--out", "bundle", extra_env={"DOCKER_HOST": upstream.docker_host})
    pwned = ws.root / "pwned"
    root = ws.root / f"r;touch${{IFS}}{pwned};$(touch${{IFS}}{pwned})"  # a value a remote shell would run unquoted
    site = ws.write("site.yaml", f"""shared_root: '{root}'
slurm:
  partition: batch
  container_runtime: none
  ssh:
    host: 127.0.0.1
    user: root
    port: {port}
    identity: {services['AIRLIFT_SSH_KEY']}
    options: {{StrictHostKeyChecking: "no", UserKnownHostsFile: /dev/null, LogLevel: ERROR}}
    env: {{SLURM_CONF: {services['SLURM_CONF']}}}
""")
    # Without SLURM_CONF here, a local sbatch could not reach the controller: the jobs can only go in over ssh.
    env = {k: v for k, v in ws.env.items() if k != "SLURM_CONF"}
    proc = subprocess.run([AIRLIFT, "submit", "bundle", "--site", str(site), "--wait"], cwd=ws.root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted: first, second" in proc.stdout and proc.stdout.count("COMPLETED") == 2, proc.stdout
    assert not pwned.exists(), "a site value became an unquoted remote shell word"
    done = next((root / "outputs" / "second").iterdir()) / "done.txt"
    assert done.read_text() == "via-login-node\n"
    local = subprocess.run(["squeue"], env=env, capture_output=True, text=True)
    assert local.returncode != 0, "Slurm answers here without SLURM_CONF: the test would not prove the ssh path"


def test_delta_against_a_signed_inventory_takes_the_rest_from_the_store(ws, hub):
    repo = f"acme/inv-{uuid.uuid4().hex[:6]}"
    add_model(hub, repo, weights_size=300_000, seed=251)
    data = ws.root / "data"
    data.mkdir()
    (data / "a.txt").write_text("first\n")
    spec = ws.write("inv.yaml", f"name: inv\nmodels:\n  - hf: {repo}\ndatasets:\n  - path: {data}\n")
    ws.run("build", str(spec), "--out", "b1")
    root, store = ws.root / "root", ws.root / "store"
    site = ws.write("site.yaml", f"shared_root: {root}\nstore: {store}\n")
    ws.run("ingest", "b1", "--site", str(site))
    ws.run("keygen", "--out", "site")
    ws.run("inventory", "--site", str(site), "--out", "inv.json", "--key", "site.key")
    inventory = json.loads((ws.root / "inv.json").read_text())
    assert {a["id"] for a in inventory["artifacts"]} == {f"models/{repo}", "files/data"}
    assert all(a["blobs"] for a in inventory["artifacts"]), "the store holds every ingested blob"

    (data / "b.txt").write_text("second\n")
    ws.run("keygen", "--out", "stranger")
    refused = ws.run("build", str(spec), "--out", "b2", "--since", "inv.json", "--pubkey", "stranger.pub", expect=2)
    assert "inv.json" in refused.stderr and "signature" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    out = ws.run("build", str(spec), "--out", "b2", "--since", "inv.json", "--pubkey", "site.pub").stdout
    old = {b for a in inventory["artifacts"] for b in a["blobs"]}
    held = {p.name for p in (ws.root / "b2" / "blobs" / "sha256").iterdir()}
    assert held and not held & old, "the delta carries a blob the site already holds"
    assert f"{len(old)} blobs left to the old bundle" in out, out

    bare = ws.write("bare.yaml", f"shared_root: {ws.root / 'other'}\n")
    no_store = ws.run("ingest", "b2", "--site", str(bare), expect=2)
    assert "bare.yaml: store: required" in no_store.stderr
    ws.run("ingest", "b2", "--site", str(site))
    assert (root / "files" / "data" / "b.txt").read_text() == "second\n"

    lost = next(iter(old))
    (store / "blobs" / "sha256" / lost).unlink()
    fresh = ws.write("fresh.yaml", f"shared_root: {ws.root / 'fresh'}\nstore: {store}\n")
    broken = ws.run("ingest", "b2", "--site", str(fresh), expect=1)
    assert lost[:12] in broken.stderr or "missing" in broken.stderr, broken.stderr

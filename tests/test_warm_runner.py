"""The warm runner (airlift/cli/warm.py): commands run in a worker forked from a runner that has Prefect
imported, answer exactly as a process of their own would, die with their client, and never run for a
client in another network namespace."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airlift.util.phase import LOG_ENV
from tests.conftest import AIRLIFT, verified
from tests.fixtures import add_model


def _live_runner(ws, timeout: float = 180.0) -> int:
    """The pid of this workspace's runner once it answers (a first command starts it)."""
    directory = Path(ws.env["AIRLIFT_HOME"]) / "runner"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sock in directory.glob("*.sock"):
            pid_file = sock.with_suffix(".pid")
            if pid_file.exists() and Path(f"/proc/{pid_file.read_text().strip()}").exists():
                return int(pid_file.read_text())
        time.sleep(0.2)
    pytest.fail(f"no warm runner answered in {directory}: {(directory / 'runner.log').read_text() if (directory / 'runner.log').exists() else ''}")


def _served(ws) -> set[int]:
    """The workers a runner of this home forked (runner.log: one `served pid N` line per command)."""
    log = Path(ws.env["AIRLIFT_HOME"]) / "runner" / "runner.log"
    return {int(line.split()[-1]) for line in log.read_text().splitlines() if " served pid " in line} if log.exists() else set()


def _worker_pids(log: Path) -> set[int]:
    return {int(line.split()[2]) for line in log.read_text().splitlines()} if log.exists() else set()


def _without_run_ids(text: str) -> str:
    """Output with what differs between any two runs blanked: flow-run ids and receipt timestamps."""
    return re.sub(r"\d{4}-\d\d-\d\dT\d{6}Z", "TIME", re.sub(r"/flow-run/[0-9a-f-]{36}", "/flow-run/ID", text))


def _warm(ws, *args: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set[int]]:
    """`airlift ARGS` through the runner, with the pids that did its work (from the phase log)."""
    log = ws.root / f"phases-{time.monotonic_ns()}.log"
    proc = ws.run(*args, expect=None, extra_env={LOG_ENV: str(log), **(extra_env or {})})
    return proc, _worker_pids(log)


def test_commands_run_in_a_forked_worker_and_answer_as_their_own_process_would(ws, hub):
    add_model(hub, "acme/warm-model", weights_size=300_000, seed=71)
    spec = ws.write("w.yaml", "name: w\nmodels:\n  - hf: acme/warm-model\n")
    ws.run("build", str(spec), "--out", "first")  # starts the runner (if none is up), runs in this process
    runner = _live_runner(ws)

    built, pids = _warm(ws, "build", str(spec), "--out", "bundle")
    assert built.returncode == 0, built.stderr
    assert pids and runner not in pids and all(Path(f"/proc/{pid}").exists() is False for pid in pids), pids
    assert pids <= _served(ws), "the build ran in the client, not in a worker the runner forked"
    assert "1 artifacts" in built.stdout

    warm = ws.json("verify", "bundle")
    cold = ws.json("verify", "bundle", extra_env={"AIRLIFT_WARM_RUNNER": "0"})
    volatile = {"checked_at", "receipt"}
    assert {k: v for k, v in warm.items() if k not in volatile} == {k: v for k, v in cold.items() if k not in volatile}

    # Exit codes and messages: bad input (2) and failed work (1), as a cold run gives them.
    for args, code in ((["verify", "missing-bundle"], 2), (["build", str(ws.write("bad.yaml", "name: [\n")), "--out", "x"], 2)):
        warm_run = ws.run(*args, expect=code)
        cold_run = ws.run(*args, expect=code, extra_env={"AIRLIFT_WARM_RUNNER": "0"})
        assert (warm_run.stdout, warm_run.stderr) == (cold_run.stdout, cold_run.stderr)
    (ws.root / "bundle" / "SHA256SUMS").write_text("0" * 64 + "  manifest.json\n")
    broken = ws.run("verify", "bundle", expect=1)
    broken_cold = ws.run("verify", "bundle", expect=1, extra_env={"AIRLIFT_WARM_RUNNER": "0"})
    assert "BROKEN" in broken.stdout + broken.stderr
    assert _without_run_ids(broken.stdout + broken.stderr) == _without_run_ids(broken_cold.stdout + broken_cold.stderr)

    # The worker takes each client's own environment: a hub address that changed between commands.
    moved = ws.run("build", str(spec), "--out", "again", expect=None,
                   extra_env={"HF_ENDPOINT": "http://127.0.0.1:9", "AIRLIFT_CACHE": str(ws.root / "fresh-cache")})
    assert moved.returncode == 1 and "127.0.0.1:9" in moved.stderr, moved.stderr


def test_the_runner_keeps_no_secret_and_its_socket_is_private(ws, hub):
    add_model(hub, "acme/warm-secret", weights_size=10_000, seed=72)
    spec = ws.write("s.yaml", "name: s\nmodels:\n  - hf: acme/warm-secret\n")
    token = "hf_warmrunnersecret0123456789"
    ws.run("build", str(spec), "--out", "a", extra_env={"HF_TOKEN": token})
    runner = _live_runner(ws)
    _, pids = _warm(ws, "build", str(spec), "--out", "b", extra_env={"HF_TOKEN": token, "AIRLIFT_CACHE": str(ws.root / "c2")})
    assert pids and runner not in pids and pids <= _served(ws)
    directory = Path(ws.env["AIRLIFT_HOME"]) / "runner"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for sock in directory.glob("*.sock"):
        assert stat.S_ISSOCK(sock.lstat().st_mode) and stat.S_IMODE(sock.lstat().st_mode) == 0o600
    assert token.encode() not in Path(f"/proc/{runner}/environ").read_bytes()
    for path in directory.iterdir():
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path


def test_a_client_killed_mid_download_takes_its_worker_with_it_and_a_rerun_completes(ws, hub):
    files = add_model(hub, "acme/warm-kill", weights_size=6_000_000, seed=73)
    spec = ws.write("k.yaml", "name: k\nmodels:\n  - hf: acme/warm-kill\n")
    ws.run("plan", str(spec))  # starts the runner if none is up
    _live_runner(ws)
    hub.set_faults(bytes_per_second=400_000)  # ~15 s of download: the kill lands inside it
    log = ws.root / "phases-kill.log"
    client = subprocess.Popen([AIRLIFT, "build", str(spec), "--out", "bundle"], cwd=ws.root, env={**ws.env, LOG_ENV: str(log)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    big = "model.safetensors"  # 6 MB at 400 kB/s: ~15 s of one stream (below the ranged threshold)
    while not (log.exists() and any(line.startswith("start download") and big in line for line in log.read_text().splitlines())):
        assert client.poll() is None and time.monotonic() < deadline, "the build never began its download"
        time.sleep(0.05)
    worker = next(iter(_worker_pids(log)))
    assert worker != client.pid and worker in _served(ws)
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 30

    def alive() -> bool:  # reaped (gone) or a zombie both count as dead
        try:
            return Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    while alive():
        assert time.monotonic() < deadline, "the worker outlived its killed client"
        time.sleep(0.05)
    assert not [line for line in log.read_text().splitlines() if line.startswith("end download") and big in line], \
        "the kill must land mid-download"
    hub.set_faults()
    ws.run("build", str(spec), "--out", "bundle")
    verified(ws.root / "bundle")
    assert (ws.root / "bundle" / "blobs").exists()
    assert hashlib.sha256(files["model.safetensors"]).hexdigest() in {p.name for p in (ws.root / "bundle" / "blobs").rglob("*")}


def test_a_client_in_another_network_namespace_is_refused_before_anything_runs(ws, hub):
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.fail("unshare -n is not available: this test needs a network namespace")
    data = ws.root / "data.bin"
    data.write_bytes(os.urandom(100_000))
    spec = ws.write("n.yaml", f"name: n\ndatasets:\n  - path: {data}\n")
    ws.run("build", str(spec), "--out", "bundle")
    runner = _live_runner(ws)
    # The runner has a network and this client has none: a worker forked for it would have the runner's.
    # The client's own code (delegate) must come back with None (run it yourself), and the runner's
    # answer on the wire must be a refusal, sent before any descriptor or argument is read.
    # The client keys its runner by its context too, so it looks for one of its own (and would start it:
    # recorded here instead, so no runner is left behind in a namespace that ends with this test).
    probe = (
        "import json, os, socket, sys\n"
        "from pathlib import Path\n"
        "from airlift.cli import warm\n"
        "answers = []\n"
        "for sock in sorted(Path(sys.argv[1]).glob('*.sock')):\n"
        "    c = socket.socket(socket.AF_UNIX); c.connect(str(sock)); answers.append(warm.recv_message(c)[0])\n"
        "starts = []\n"
        "warm._start_runner = lambda directory, key, env: starts.append(key)\n"
        "delegated = warm.delegate(['verify', 'bundle'])\n"
        "print(json.dumps({'delegated': delegated, 'answers': answers, 'starts': starts,\n"
        "                  'sockets': sorted(p.stem for p in Path(sys.argv[1]).glob('*.sock'))}))\n"
    )
    script = 'ip link set lo up && exec "$0" -c "$1" "$2"'
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable, probe, str(Path(ws.env["AIRLIFT_HOME"]) / "runner")],
                          cwd=ws.root, capture_output=True, text=True, env=ws.env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["delegated"] is None
    assert result["starts"] and not set(result["starts"]) & set(result["sockets"]), result  # a key of its own
    assert result["answers"] and all("refused" in a and "namespaces" in a["refused"] for a in result["answers"]), result
    assert os.readlink(f"/proc/{runner}/ns/net") == os.readlink("/proc/self/ns/net")  # and it is still serving
    again, _ = _warm(ws, "verify", "bundle")
    assert again.returncode == 0, again.stderr


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_job_control_and_ignored_signals_reach_the_worker_as_they_would_a_process_of_its_own(ws, hub):
    add_model(hub, "acme/warm-signals", weights_size=4_000_000, seed=74)
    spec = ws.write("j.yaml", "name: j\nmodels:\n  - hf: acme/warm-signals\n")
    ws.run("plan", str(spec))  # starts the runner if none is up
    _live_runner(ws)
    hub.set_faults(bytes_per_second=400_000)  # ~10 s of download
    log = ws.root / "phases-signals.log"
    # As under nohup: SIGHUP ignored by the caller, so the worker must ignore it too.
    client = subprocess.Popen([AIRLIFT, "build", str(spec), "--out", "bundle"], cwd=ws.root, env={**ws.env, LOG_ENV: str(log)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not (log.exists() and "start download" in log.read_text()):
        assert client.poll() is None and time.monotonic() < deadline, "the build never began its download"
        time.sleep(0.05)
    worker = next(iter(_worker_pids(log)))
    assert worker != client.pid and worker in _served(ws)
    os.killpg(worker, signal.SIGHUP)  # the terminal went away: ignored, as the caller ignores it
    client.send_signal(signal.SIGTSTP)  # Ctrl-Z: the worker stops with its caller
    deadline = time.monotonic() + 30
    while _state(worker) != "T" or _state(client.pid) != "T":
        assert time.monotonic() < deadline, (_state(worker), _state(client.pid))
        time.sleep(0.05)
    hub.set_faults()
    client.send_signal(signal.SIGCONT)  # `fg`: both go on
    out, err = client.communicate(timeout=300)
    assert client.returncode == 0, err
    assert "1 artifacts" in out
    verified(ws.root / "bundle")

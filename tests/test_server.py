"""The embedded default: one persistent local Prefect server per AIRLIFT_HOME, shared, self-healing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import AIRLIFT, COMMAND_TIMEOUT, START_TIMEOUTS


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    return {**env, "AIRLIFT_HOME": str(home), "AIRLIFT_CACHE": str(home / "cache"), **START_TIMEOUTS, **extra}


def _servers_for(home: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "prefect server start"], capture_output=True, text=True).stdout.split()
    mine = []
    for pid in out:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PREFECT_HOME={home / 'prefect'}".encode() in environ:
            mine.append(int(pid))
    return mine


def test_two_commands_at_once_share_one_server_and_a_dead_one_is_replaced(tmp_path):
    home = tmp_path / "home"
    spec = tmp_path / "empty.yaml"
    spec.write_text("name: empty\n")
    try:
        first = subprocess.Popen([AIRLIFT, "build", str(spec), "--out", str(tmp_path / "a")], env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        second = subprocess.Popen([AIRLIFT, "build", str(spec), "--out", str(tmp_path / "b")], env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        outs = [p.communicate(timeout=COMMAND_TIMEOUT) for p in (first, second)]
        assert first.returncode == 0 and second.returncode == 0, outs
        state = json.loads((home / "server.json").read_text())
        assert _servers_for(home) == [state["pid"]], "two commands started two servers"
        announced = [err for _, err in outs if "UI at http://127.0.0.1:" in err]
        assert len(announced) == 1, "the UI address is printed once, by the command that started the server"

        started = time.monotonic()
        subprocess.run([AIRLIFT, "build", str(spec), "--out", str(tmp_path / "c")], env=_env(home), check=True, capture_output=True, timeout=COMMAND_TIMEOUT)
        reused = time.monotonic() - started
        assert json.loads((home / "server.json").read_text())["pid"] == state["pid"], "a later command started another server"

        os.killpg(state["pid"], signal.SIGKILL)
        time.sleep(1)
        result = subprocess.run([AIRLIFT, "build", str(spec), "--out", str(tmp_path / "d")], env=_env(home), capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        assert result.returncode == 0, result.stderr
        replaced = json.loads((home / "server.json").read_text())
        assert replaced["pid"] != state["pid"] and _servers_for(home) == [replaced["pid"]]
        status = subprocess.run([AIRLIFT, "server", "status"], env=_env(home), capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and replaced["url"].removesuffix("/api") in status.stdout
        assert reused < 60
    finally:
        subprocess.run([AIRLIFT, "server", "stop"], env=_env(home), capture_output=True, timeout=60)
    assert not _servers_for(home), "airlift server stop left the server running"
    assert subprocess.run([AIRLIFT, "server", "status"], env=_env(home), capture_output=True, timeout=60).returncode == 1


def test_an_explicit_api_url_or_ephemeral_mode_starts_no_embedded_server(tmp_path, prefect_server):
    home = tmp_path / "home"
    spec = tmp_path / "empty.yaml"
    spec.write_text("name: empty\n")
    theirs = subprocess.run([AIRLIFT, "build", str(spec), "--out", str(tmp_path / "a")], env=_env(home, PREFECT_API_URL=prefect_server["api"]),
                            check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert not (home / "server.json").exists()
    # The run's address in that server's UI, once; the API knows the run by that id.
    linked = [line for line in theirs.stderr.splitlines() if line.startswith("flow run: ")]
    ui = prefect_server["api"].removesuffix("/api")
    assert len(linked) == 1 and linked[0].startswith(f"flow run: {ui}/runs/flow-run/"), theirs.stderr
    run_id = linked[0].rsplit("/", 1)[1]
    with urllib.request.urlopen(f"{prefect_server['api']}/flow_runs/{run_id}", timeout=15) as response:
        assert json.loads(response.read())["parameters"]["out"] == str(tmp_path / "a")
    ephemeral = subprocess.run([AIRLIFT, "build", str(spec), "--out", str(tmp_path / "b")], env=_env(home, AIRLIFT_PREFECT="ephemeral", PREFECT_HOME=str(tmp_path / "ph")),
                               check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert not (home / "server.json").exists()
    assert "flow run: " not in ephemeral.stderr, "ephemeral mode has no UI to link to"


def test_first_start_says_so_before_the_wait_and_a_pinned_port_is_kept_across_restarts(tmp_path):
    import socket

    home = tmp_path / "home"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        started = subprocess.run([AIRLIFT, "server", "start", "--port", str(port)], env=_env(home), capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stderr
        assert started.stderr.startswith("airlift: starting the local Prefect server (first use, ~20 s)…"), started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout
        assert subprocess.run([AIRLIFT, "server", "stop"], env=_env(home), capture_output=True, timeout=60).returncode == 0
        # No --port this time: the remembered port is reused because it is free.
        again = subprocess.run([AIRLIFT, "server", "start"], env=_env(home), capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and f"http://127.0.0.1:{port}" in again.stdout, again
        assert "first use" not in again.stderr
        taken = subprocess.run([AIRLIFT, "server", "start"], env=_env(tmp_path / "other", AIRLIFT_SERVER_PORT=str(port)), capture_output=True, text=True, timeout=120)
        assert taken.returncode == 2 and f"port {port}: already in use" in taken.stderr, taken.stderr
    finally:
        subprocess.run([AIRLIFT, "server", "stop"], env=_env(home), capture_output=True, timeout=60)
        subprocess.run([AIRLIFT, "server", "stop"], env=_env(tmp_path / "other"), capture_output=True, timeout=60)

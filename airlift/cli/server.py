"""The embedded default: one persistent local Prefect server per machine (per AIRLIFT_HOME), shared by
every CLI command, so a command pays Prefect's start-up once per machine, not once per command.

Prefect 3.8's ephemeral mode starts a new API server subprocess in every process (about 8 s here). With
no PREFECT_API_URL, the CLI instead starts `prefect server start` once, detached, on loopback with
SQLite under `$AIRLIFT_HOME/prefect/`, and every later command (in any process) finds it through
`server.json`. Starting is race-free (a lock file); a dead or wedged server is detected and replaced.
This module does not import Prefect: it runs it as a program and talks to its health endpoint.

- `PREFECT_API_URL` set: that server is used, nothing is started.
- `AIRLIFT_PREFECT=ephemeral`: Prefect's own ephemeral mode.
- otherwise: this embedded server (`airlift server status|start|stop`).

Its port: `airlift server start --port N` or `AIRLIFT_SERVER_PORT` pins it; otherwise the last port it
used (remembered in `server.port`, also across `stop`) when that is free, else any free port. A pinned
port that is taken is an input error, not a silent move: the UI bookmark would break.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from airlift.util.errors import InputError, WorkError
from airlift.util.fs import write_bytes_atomic
from airlift.util.proc import pid_alive
from airlift.util.settings import settings

Mode = Literal["external", "ephemeral", "embedded"]
# How long a command waits for the local server to answer. A first start migrates its database, which
# on a loaded machine can take minutes; AIRLIFT_SERVER_START_TIMEOUT (seconds) raises it (the test suite does).
START_TIMEOUT = float(os.environ.get("AIRLIFT_SERVER_START_TIMEOUT") or 120.0)
HEALTH_TIMEOUT = 3.0


def airlift_home() -> Path:
    """`$AIRLIFT_HOME`, else `$XDG_DATA_HOME/airlift`, else `~/.local/share/airlift`."""
    return settings().home_dir


@dataclass(frozen=True)
class ServerState:
    """What `server.json` records about the running server."""

    pid: int
    port: int
    url: str
    home: str
    started: float
    ui_api_url: str = ""  # what its UI was told the API is; older airlift left it at Prefect's default port


class EmbeddedServer:
    """The persistent local server of one airlift home.

    Args:
        home: The airlift home (default `airlift_home()`).
    """

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home) if home else airlift_home()
        self.prefect_home = self.home / "prefect"
        self.state_path = self.home / "server.json"
        self.lock_path = self.home / "server.lock"
        self.log_path = self.home / "server.log"
        self.port_path = self.home / "server.port"  # the last port, kept across stop so the UI address stays

    # -- reading ----------------------------------------------------------------------------------
    def state(self) -> ServerState | None:
        try:
            return ServerState(**json.loads(self.state_path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def healthy(self, state: ServerState | None = None) -> bool:
        """True when the recorded server's process is alive and its API answers /health."""
        state = state or self.state()
        if state is None or not _alive(state.pid):
            return False
        try:
            with urllib.request.urlopen(f"{state.url}/health", timeout=HEALTH_TIMEOUT) as response:
                return response.status == 200
        except OSError:
            return False

    # -- lifecycle ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):  # noqa: ANN202 - a context manager
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            yield

    def remembered_port(self) -> int | None:
        try:
            port = int(self.port_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return port if 0 < port < 65536 else None

    def ensure(self, *, announce: bool = True, port: int | None = None) -> ServerState:
        """The running server, started (or replaced, when dead, wedged or its UI misdirected) if need be.

        Two CLIs started at once share one server: check-or-start happens under a lock file.

        Args:
            announce: Print where the UI is when a server is started.
            port: Pin the port (default: `AIRLIFT_SERVER_PORT`, else the remembered one when free).

        Raises:
            InputError: The pinned port is not a port, or another program has it.
            WorkError: The server did not come up (its log is named).
        """
        pinned = port if port is not None else _port_setting()
        with self._locked():
            state = self.state()
            if state is not None and state.ui_api_url == state.url and pinned in (None, state.port) and self.healthy(state):
                return state
            if state is not None:
                _terminate(state.pid)
            if pinned is not None and not _port_free(pinned):
                raise InputError(f"port {pinned}: already in use on 127.0.0.1; pick another (--port or AIRLIFT_SERVER_PORT)")
            first = not (self.prefect_home / "prefect.db").exists()
            # Said before the wait: a silent 20 s looks like a hang to someone on their first command.
            print(f"airlift: starting the local Prefect server ({'first use, ~20 s' if first else '~10 s'})…", file=sys.stderr, flush=True)
            state = self._start(preferred_port=pinned or (state.port if state else None) or self.remembered_port())
        if announce:
            print(f"airlift: started the local Prefect server; UI at {state.url.removesuffix('/api')} (`airlift server stop` stops it)", file=sys.stderr)
        return state

    def _start(self, *, preferred_port: int | None) -> ServerState:
        port = preferred_port if preferred_port and _port_free(preferred_port) else _free_port()
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{port}/api"
        # The UI asks /ui-settings where the API is; unset, Prefect answers with its default port 4200, not --port.
        env = {**os.environ, "PREFECT_HOME": str(self.prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
               "PREFECT_SERVER_UI_API_URL": url}
        for name in ("PREFECT_API_URL", "PREFECT_UI_API_URL"):  # the latter an older alias of the setting above
            env.pop(name, None)
        prefect = Path(sys.executable).with_name("prefect")
        argv = [str(prefect) if prefect.exists() else "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        state = ServerState(pid=proc.pid, port=port, url=url, home=str(self.home), started=time.time(), ui_api_url=url)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise WorkError(f"the local Prefect server exited at start; see {self.log_path}")
            if self.healthy(state):
                write_bytes_atomic(self.state_path, json.dumps(asdict(state)).encode())
                write_bytes_atomic(self.port_path, str(port).encode())
                return state
            time.sleep(0.3)
        _terminate(proc.pid)
        raise WorkError(f"the local Prefect server did not answer within {START_TIMEOUT:.0f}s; see {self.log_path}")

    def stop(self) -> bool:
        """Stop the server and forget it, and this home's warm runners (cli/warm.py); False when no server ran."""
        from airlift.cli.warm_runner import stop_runners

        stop_runners(self.home)
        with self._locked():
            state = self.state()
            if state is None:
                return False
            _terminate(state.pid)
            self.state_path.unlink(missing_ok=True)
            return True


def use_embedded_server() -> Mode:
    """Point this process's Prefect client at the right server; must run before Prefect is imported, which
    reads these variables once (see module doc).

    Returns:
        Which server the runs go to: "external" (PREFECT_API_URL), "ephemeral" or "embedded".
    """
    if os.environ.get("PREFECT_API_URL"):
        return "external"
    if os.environ.get("AIRLIFT_PREFECT", "").lower() == "ephemeral":
        # Prefect waits 20 s for its subprocess server, which migrates a fresh database first: on a loaded
        # machine that takes longer. Give it the embedded server's allowance unless the user set one.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(int(START_TIMEOUT)))
        return "ephemeral"
    server = EmbeddedServer()
    state = server.ensure()
    os.environ["PREFECT_API_URL"] = state.url
    os.environ["PREFECT_UI_URL"] = state.url.removesuffix("/api")  # the runs' links point at this server's UI
    os.environ.setdefault("PREFECT_HOME", str(server.prefect_home))
    # This server was started by this very Prefect installation, so the API-version handshake every
    # client (HTTP and events websocket) would make first (GET /admin/version) can only agree: skip it.
    os.environ.setdefault("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "false")
    return "embedded"


_alive = pid_alive


def _terminate(pid: int) -> None:
    """Stop a server process group: SIGTERM, then SIGKILL if it does not go (a wedged server)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _port_setting() -> int | None:
    """`AIRLIFT_SERVER_PORT`, the configured port of the embedded server, if set."""
    text = os.environ.get("AIRLIFT_SERVER_PORT", "").strip()
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InputError(f"AIRLIFT_SERVER_PORT={text!r}: expected a port number 1-65535")
    return int(text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no owner
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True

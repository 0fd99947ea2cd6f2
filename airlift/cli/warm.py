"""The warm runner: a command's fixed cost (Prefect's import, ~2.2 s a process) paid once, not per command.

`airlift build|verify|...` is a short Python process, and most of its start-up is importing Prefect.
The first command of a session starts, detached, one runner per (interpreter, installed packages,
Python/Prefect environment); it imports Prefect's engine and nothing of airlift's rules, then waits on
a Unix socket in `$AIRLIFT_HOME/runner/` (directory 0700, socket 0600). Later commands connect, pass
their stdin/stdout/stderr and working directory as file descriptors (SCM_RIGHTS), and the runner forks
a worker that takes the command's arguments, full environment, umask and descriptors, imports airlift
fresh, and runs `main()` exactly as the process would have. Exit status and signals travel back: the
client forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the worker's process group, and a worker whose client
dies (kill -9) kills its own group.

The trust rules it keeps:
- Only the same uid reaches it (a 0700 directory; SO_PEERCRED checked on both ends).
- A client that differs in anything a fork would not carry (namespaces, root, cgroup, capabilities,
  seccomp, groups, resource limits, CPU affinity, niceness, OOM score) is refused and runs the
  command itself: an `unshare -n` command inside the air gap never runs in a runner that has a network.
- Secrets are never persisted: the runner's own environment keeps only a short allow-list (no keys,
  tokens or passwords); a client's environment is read by the worker only, in memory.

`AIRLIFT_WARM_RUNNER=0` (or `AIRLIFT_PREFECT=ephemeral`) runs every command in its own process.

Hand-written because no kept library does fork-serving with descriptor passing and peer checks
(Prefect's own workers spawn fresh processes; nailgun-style servers exist for the JVM only). It is
stdlib-only at load time so the client side costs a few milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

FLOW_COMMANDS = frozenset({"plan", "build", "verify", "mirror-refresh", "submit", "keygen", "sign", "transfer",
                           "pack", "unpack", "export", "inventory", "ingest"})
IDLE_SECONDS = 900.0  # a runner with no command for this long exits
MAX_REQUEST = 4 << 20
_HEADER = struct.Struct("!I")
_KEEP = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "AIRLIFT_HOME",
                   "XDG_DATA_HOME", "DO_NOT_TRACK"})
_KEEP_PREFIXES = ("LC_", "PYTHON", "PREFECT_")
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "AUTH", "CREDENTIAL")
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_NAMESPACES = ("net", "mnt", "pid", "user", "ipc", "uts", "cgroup")
_STATUS_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
_PRELOAD = ("prefect.main", "prefect.flows", "prefect.tasks", "prefect.flow_engine", "prefect.task_engine",
            "prefect.client.orchestration", "prefect.results", "prefect.context", "prefect.artifacts",
            "prefect.settings", "prefect.logging.configuration", "fastapi", "cyclonedx.model.bom", "cryptography")


# -- shared by both ends -------------------------------------------------------------------------------
def runner_env(env: dict[str, str]) -> dict[str, str]:
    """The part of an environment a runner process may keep and is keyed by: no secrets."""
    return {k: v for k, v in env.items()
            if (k in _KEEP or k.startswith(_KEEP_PREFIXES)) and not any(word in k for word in _SECRET_WORDS)}


def fingerprint(env: dict[str, str]) -> str:
    """What a runner must share with its clients: interpreter, import path contents and environment."""
    facts: list[str] = [sys.executable, sys.version, str(os.getuid())]
    for entry in [*sys.path, str(Path(__file__).parent.parent)]:
        with contextlib.suppress(OSError):
            facts.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")  # pip install/upgrade touches site-packages
    for own in (Path(__file__), Path(__file__).parent.parent / "__init__.py"):
        facts.append(f"{own}:{own.stat().st_mtime_ns}")
    facts.extend(f"{k}={v}" for k, v in sorted(runner_env(env).items()))
    return hashlib.sha256("\0".join(facts).encode()).hexdigest()[:16]


def runner_dir(env: dict[str, str]) -> Path:
    """`$AIRLIFT_HOME/runner` (the home's rule as util/settings.py `home_dir` states it)."""
    if env.get("AIRLIFT_HOME"):
        home = Path(env["AIRLIFT_HOME"])
    elif env.get("XDG_DATA_HOME"):
        home = Path(env["XDG_DATA_HOME"]) / "airlift"
    else:
        home = Path.home() / ".local" / "share" / "airlift"
    return home / "runner"


def _private_dir(path: Path, *, create: bool) -> bool:
    """True when `path` is a real directory of ours that nobody else can enter."""
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = os.lstat(path)
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077 == 0


def _send(conn: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(conn, [payload], fds)
        conn.sendall(payload[sent:])
    else:
        conn.sendall(payload)


def _recv(conn: socket.socket, *, maxfds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (and the descriptors sent with it); None at end of stream."""
    buffer, fds = b"", []
    if maxfds:
        buffer, fds, _flags, _addr = socket.recv_fds(conn, 65536, maxfds)
    while len(buffer) < _HEADER.size:
        chunk = conn.recv(65536)
        if not chunk:
            return None, fds
        buffer += chunk
    (length,) = _HEADER.unpack_from(buffer)
    if length > MAX_REQUEST:
        raise ValueError(f"message of {length} bytes")
    while len(buffer) < _HEADER.size + length:
        chunk = conn.recv(min(65536, _HEADER.size + length - len(buffer)))
        if not chunk:
            return None, fds
        buffer += chunk
    return json.loads(buffer[_HEADER.size:_HEADER.size + length]), fds


def _peer(conn: socket.socket) -> tuple[int, int, int]:
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid, gid


def _limits() -> dict[str, list[int]]:
    return {name: list(resource.getrlimit(getattr(resource, name))) for name in dir(resource) if name.startswith("RLIMIT_")}


# -- the client ----------------------------------------------------------------------------------------
def delegate(argv: list[str]) -> int | None:
    """Run `airlift ARGV` in a warm runner; its exit code, or None when the caller should run it itself."""
    env = dict(os.environ)
    command = next((a for a in argv if not a.startswith("-")), None)
    if (command not in FLOW_COMMANDS or {"-h", "--help", "--version"} & set(argv) or sys.platform != "linux"
            or env.get("AIRLIFT_WARM_RUNNER", "1").strip().lower() in {"0", "off", "false", "no"}
            or env.get("AIRLIFT_PREFECT", "").lower() == "ephemeral" or not hasattr(os, "pidfd_open")):
        return None
    try:
        directory = runner_dir(env)
        key = fingerprint(env)
        path = directory / f"{key}.sock"
        if len(str(path)) > 100 or not _private_dir(directory, create=True):
            return None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    with conn:
        try:
            conn.connect(str(path))
            if _peer(conn)[1] != os.getuid():
                return None
        except OSError:
            _start_runner(directory, key, env)
            return None
        return _converse(conn, argv, env)


def _converse(conn: socket.socket, argv: list[str], env: dict[str, str]) -> int | None:
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        request = {"argv": argv, "argv0": sys.argv[0], "env": env, "umask": umask, "limits": _limits()}
        _send(conn, request, [0, 1, 2, cwd])
    except OSError:
        return None
    finally:
        os.close(cwd)
    try:
        started, _ = _recv(conn)
    except (OSError, ValueError):
        return None
    if started is None or "pid" not in started:
        return None  # refused (or the runner went away) before anything ran: run it here
    group = int(started["pid"])

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        while True:
            try:
                ended, _ = _recv(conn)
                break
            except InterruptedError:
                continue
    except (OSError, ValueError):
        ended = None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if ended is None or "status" not in ended:
        print("airlift: error: the warm runner went away during the command (AIRLIFT_WARM_RUNNER=0 runs without it)",
              file=sys.stderr)
        return 1
    status = int(ended["status"])
    if status < 0:  # the worker died of a signal: so does this process, as a cold run would have
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        return 128 - status
    return status


def _start_runner(directory: Path, key: str, env: dict[str, str]) -> None:
    """Start this fingerprint's runner, detached, unless one is already starting (it holds the lock)."""
    lock_path = directory / f"{key}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # a runner holds it: it is starting (its socket is not bound yet)
    os.close(fd)
    with contextlib.suppress(OSError), open(directory / "runner.log", "ab", buffering=0) as log:
        os.chmod(log.fileno(), 0o600)
        subprocess.Popen(  # noqa: S603 - a fixed argv of this interpreter
            [sys.executable, "-P", "-m", "airlift.cli.warm", str(directory), key],
            env=runner_env(env), stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
            start_new_session=True, close_fds=True,
        )


def entry() -> None:
    """The `airlift` console script: the warm runner when it can, else this process."""
    argv = sys.argv[1:]
    code = delegate(argv)
    if code is None:
        from airlift.cli.main import main

        code = main(argv)
    raise SystemExit(code)


# -- the runner ----------------------------------------------------------------------------------------
def _status_lines(pid: int | str) -> list[str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return sorted(line for line in lines if line.split(":", 1)[0] in _STATUS_FIELDS)


def _process_facts(pid: int | str) -> list[str]:
    """What a forked worker inherits from the runner rather than from its client."""
    proc = f"/proc/{pid}"
    facts = [f"{ns}={os.readlink(f'{proc}/ns/{ns}')}" for ns in _NAMESPACES]
    root = os.stat(f"{proc}/root")
    facts.append(f"root={root.st_dev}:{root.st_ino}")
    facts.append(Path(f"{proc}/cgroup").read_text())
    facts.append(Path(f"{proc}/oom_score_adj").read_text())
    facts.extend(_status_lines(pid))
    target = 0 if pid == "self" else int(pid)
    facts.append(f"cpus={sorted(os.sched_getaffinity(target))}")
    facts.append(f"nice={os.getpriority(os.PRIO_PROCESS, target)}")
    return facts


class Runner:
    """One runner: the socket, the workers it forked, and their clients' connections."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory, self.key = directory, key
        self.path = directory / f"{key}.sock"
        self.workers: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
        self.stopping = False
        self.facts: list[str] = []

    def serve(self) -> Callable[[], None] | None:
        """Serve until idle or told to stop. In a forked worker it returns the command to run."""
        lock = os.open(self.directory / f"{self.key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # another runner of this key is up
        for module in _PRELOAD:
            with contextlib.suppress(ImportError):
                __import__(module)
        self.facts = _process_facts("self")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staging = self.directory / f"{self.key}.{os.getpid()}.tmp"
        staging.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        listener.bind(str(staging))
        os.umask(old_umask)
        listener.listen(64)
        os.rename(staging, self.path)
        bound = os.stat(self.path).st_ino
        pid_file = self.directory / f"{self.key}.pid"
        pid_file.write_text(str(os.getpid()))  # read by stop_runners, only while this runner holds the lock
        signal.signal(signal.SIGTERM, self._stop)
        print(f"{time.strftime('%FT%T')} runner {self.key} pid {os.getpid()} ready", flush=True)
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        listening, last = True, time.monotonic()
        while True:
            if not self.workers and time.monotonic() - last > IDLE_SECONDS:
                self.stopping = True
            if self.stopping and listening:  # no new clients: they run cold until a new runner is up
                selector.unregister(listener)
                listener.close()
                with contextlib.suppress(OSError):
                    if os.stat(self.path).st_ino == bound:
                        self.path.unlink()
                listening = False
            if self.stopping and not self.workers:
                return None
            for handle, _events in selector.select(timeout=5.0):
                if handle.fileobj is listener:
                    job = self._accept(listener, selector, lock)
                    if job is not None:
                        return job
                else:
                    self._reap(handle.fd, selector)
                last = time.monotonic()

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector, lock: int) -> Callable[[], None] | None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return None
        try:
            pid, uid, _gid = _peer(conn)
            reason = "another user" if uid != os.getuid() else None
            if reason is None and _process_facts(pid) != self.facts:
                reason = "a different process context (namespaces, limits or privileges)"
        except OSError as exc:
            reason = f"unreadable peer ({exc.strerror})"
        if reason is not None:
            with contextlib.suppress(OSError):
                _send(conn, {"refused": reason})
            conn.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:  # the worker: drop everything of the runner's, then run the client's command
            selector.close()
            listener.close()
            os.close(lock)
            for _pid, other in self.workers.values():
                other.close()
            for pidfd in list(self.workers):
                os.close(pidfd)
            return lambda: _work(conn)
        pidfd = os.pidfd_open(child)
        self.workers[pidfd] = (child, conn)
        selector.register(pidfd, selectors.EVENT_READ)
        return None

    def _reap(self, pidfd: int, selector: selectors.BaseSelector) -> None:
        pid, conn = self.workers.pop(pidfd)
        selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            _send(conn, {"status": os.waitstatus_to_exitcode(status)})
        conn.close()


def _stream(fd: int, *, write: bool) -> object:
    import io
    import locale

    encoding = os.environ.get("PYTHONIOENCODING", "").partition(":")[0] or locale.getpreferredencoding(False)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    raw = io.FileIO(fd, "w" if write else "r", closefd=False)
    if write:
        return io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors="backslashreplace" if fd == 2 else "strict",
                                line_buffering=fd == 2 or raw.isatty(), write_through=unbuffered)
    return io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding)


def _work(conn: socket.socket) -> None:
    """In the forked worker: become the client's process, then run the command and exit with its code."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setpgid(0, 0)
    try:
        request, fds = _recv(conn, maxfds=4)
        if request is None or len(fds) != 4:
            raise ValueError("incomplete request")
        wanted = {name: tuple(limits) for name, limits in request["limits"].items()}
        if wanted != {name: tuple(limits) for name, limits in _limits().items()}:
            raise ValueError("different resource limits")
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.fchdir(fds[3])
        for fd in fds:
            os.close(fd)
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        sys.stdin, sys.stdout, sys.stderr = _stream(0, write=False), _stream(1, write=True), _stream(2, write=True)
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        sys.argv = [str(request["argv0"]), *map(str, request["argv"])]
        sys.path.insert(0, str(Path(sys.argv[0]).resolve().parent))  # as the console script's own run would
        _send(conn, {"pid": os.getpid()})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        with contextlib.suppress(OSError):
            _send(conn, {"refused": f"worker set-up: {exc}"})
        os._exit(0)

    def watch() -> None:  # the client is gone (killed): so is this command, with everything it started
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass
        os.killpg(0, signal.SIGKILL)

    import threading

    threading.Thread(target=watch, name="airlift-client-watch", daemon=True).start()
    from airlift.cli.main import main

    raise SystemExit(main(sys.argv[1:]))


def stop_runners(home: Path) -> int:
    """SIGTERM every live runner of an airlift home (`airlift server stop`); how many were told."""
    told = 0
    directory = home / "runner"
    for lock in directory.glob("*.lock") if _private_dir(directory, create=False) else ():
        with contextlib.suppress(OSError, ValueError):
            fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its runner is alive and wrote its pid
                os.kill(int(lock.with_suffix(".pid").read_text()), signal.SIGTERM)
                told += 1
            finally:
                os.close(fd)
    return told


if __name__ == "__main__":
    _job = Runner(Path(sys.argv[1]), sys.argv[2]).serve()
    if _job is not None:
        _job()  # a forked worker: runs the command; SystemExit ends the interpreter normally

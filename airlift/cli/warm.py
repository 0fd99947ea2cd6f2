"""The warm runner: a command's fixed cost (Prefect's import, ~2.2 s a process) paid once, not per command.

`airlift build|verify|...` is a short Python process, and most of its start-up is importing Prefect.
The first command of a session starts, detached, one runner per (interpreter, installed packages,
allow-listed environment, process context); it imports Prefect's engine and nothing of airlift's rules,
then waits on a Unix socket in `$AIRLIFT_HOME/runner/` (directory 0700, socket 0600). Later commands
connect, pass their stdin/stdout/stderr and working directory as file descriptors (SCM_RIGHTS), and the
runner forks a worker that takes the command's arguments, full environment, umask and descriptors,
imports airlift fresh, re-reads Prefect's settings from that environment, and runs `main()`. Exit status
and signals travel back: the client forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT (unless it ignores them, as
under nohup), SIGCONT and SIGWINCH to the worker's process group and stops it with itself on Ctrl-Z; a
worker whose client dies (kill -9) kills its own group.

The trust rules it keeps:
- Only the same uid reaches it (a 0700 directory; SO_PEERCRED checked on both ends).
- Both ends compare the other's process context (namespaces, root, cgroup, capabilities, seccomp,
  groups, resource limits, CPU affinity, niceness, OOM score, LSM label), read through the peer's pidfd:
  a client that differs is refused and runs the command itself (an `unshare -n` command inside the air
  gap never runs in a runner that has a network), and a client sends nothing to a "runner" that differs
  (a sandboxed process that bound the socket's name).
- A client under a seccomp filter or no_new_privs (Docker's default profile, systemd NoNewPrivileges)
  always runs the command itself: what such a filter allows cannot be read, so it cannot be compared.
- Secrets are never persisted: the runner's own environment keeps only a short allow-list (no keys,
  tokens, passwords, nor Prefect's settings); a client's environment is read by the worker only, in memory.

`AIRLIFT_WARM_RUNNER=0` (or `AIRLIFT_PREFECT=ephemeral`) runs every command in its own process.

Hand-written because no kept library does fork-serving with descriptor passing and peer checks
(Prefect's own workers spawn fresh processes; nailgun-style servers exist for the JVM only). It is
stdlib-only at load time so the client side costs a few milliseconds. The runner and its workers are
airlift/cli/warm_runner.py; this module is the client and the wire protocol both ends share.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import resource
import signal
import socket
import stat
import struct
import subprocess
import sys
from pathlib import Path

FLOW_COMMANDS = frozenset({"plan", "build", "verify", "mirror-refresh", "submit", "keygen", "sign", "transfer",
                           "pack", "unpack", "export", "inventory", "ingest"})
MAX_REQUEST = 4 << 20
_HEADER = struct.Struct("!I")
# What the runner keeps and is keyed by: what the interpreter, the loader, OpenSSL and Prefect's import read
# before a command arrives (a CA bundle's path is read into Prefect's settings defaults at import).
_KEEP = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "AIRLIFT_HOME",
                   "XDG_DATA_HOME", "DO_NOT_TRACK", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
                   "CURL_CA_BUNDLE", "OPENSSL_CONF", "OPENSSL_MODULES", "LD_LIBRARY_PATH", "LD_PRELOAD", "TERM",
                   "NO_COLOR", "COLUMNS", "CI", "PREFECT_HOME", "PREFECT_PROFILES_PATH"})
_KEEP_PREFIXES = ("LC_", "PYTHON")
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "AUTH", "CREDENTIAL")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_NAMESPACES = ("net", "mnt", "pid", "user", "ipc", "uts", "cgroup", "time")
_STATUS_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                  "Seccomp_filters")
_SO_PEERPIDFD = 77  # Linux 6.5+: a pidfd of the peer, so a recycled pid cannot stand in for it


# -- shared by both ends -------------------------------------------------------------------------------
def runner_env(env: dict[str, str]) -> dict[str, str]:
    """The part of an environment a runner process may keep and is keyed by: no secrets. Prefect's other
    settings (which can hold an API key, custom headers or a database URL without a telling name) stay out:
    each worker re-reads them from its client's environment (cli/compose.py `_reread_prefect_settings`)."""
    return {k: v for k, v in env.items()
            if (k in _KEEP or k.startswith(_KEEP_PREFIXES)) and not any(word in k for word in _SECRET_WORDS)}


def fingerprint(env: dict[str, str], own: list[str] | None = None) -> str:
    """What a runner must share with its clients: interpreter, installed packages and environment.

    Only the interpreter's own import directories count (pip install/upgrade touches site-packages); a
    script's directory or an editable checkout changes whenever a file is made there, and the worker
    imports airlift's own modules fresh after the fork anyway (the runner preloads only Prefect's)."""
    facts: list[str] = [sys.executable, sys.version, str(os.getuid())]
    for entry in sys.path if sys.flags.safe_path else sys.path[1:]:  # [0] is the script's (or -c's) own
        if entry and entry.startswith((sys.prefix, sys.base_prefix)):
            with contextlib.suppress(OSError):
                facts.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
    for module in (Path(__file__), Path(__file__).with_name("warm_runner.py"), Path(__file__).parent.parent / "__init__.py"):
        facts.append(f"{module}:{module.stat().st_mtime_ns}")
    facts.extend(f"{k}={v}" for k, v in sorted(runner_env(env).items()))
    # One runner per process context, so a client from another cgroup or namespace starts its own rather
    # than being refused by the first one for good (both ends still compare contexts on every connection).
    # `own`: this process's process_facts, when the caller has read them already.
    if own is None:
        with contextlib.suppress(OSError):
            own = process_facts("self")
    facts.extend(own or [])
    return hashlib.sha256("\0".join(facts).encode()).hexdigest()[:16]


def runner_dir(env: dict[str, str]) -> Path:
    """`$AIRLIFT_HOME/runner`: util/settings.py `Settings.home_dir`'s rule, restated so the client stays
    stdlib-only (pydantic-settings costs more than the whole client); tests/fast/test_warm_protocol.py
    holds the two to the same answer."""
    if env.get("AIRLIFT_HOME"):
        home = Path(env["AIRLIFT_HOME"])
    elif env.get("XDG_DATA_HOME"):
        home = Path(env["XDG_DATA_HOME"]) / "airlift"
    else:
        home = Path.home() / ".local" / "share" / "airlift"
    return home / "runner"


def private_dir(path: Path, *, create: bool) -> bool:
    """True when `path` is a real directory of ours that nobody else can enter."""
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077 == 0


def send_message(conn: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(conn, [payload], fds)
        conn.sendall(payload[sent:])
    else:
        conn.sendall(payload)


def recv_message(conn: socket.socket, *, maxfds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (and the descriptors sent with it); None at end of stream.

    Reads exactly its header and then exactly its body, never past it: the next message (a worker's
    status right behind its pid) may already be waiting on the stream."""
    buffer, fds = b"", []
    if maxfds:
        buffer, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, maxfds)
    while len(buffer) < _HEADER.size:
        chunk = conn.recv(_HEADER.size - len(buffer))
        if not chunk:
            return None, fds
        buffer += chunk
    (length,) = _HEADER.unpack(buffer)
    if length > MAX_REQUEST:
        raise ValueError(f"message of {length} bytes")
    body = b""
    while len(body) < length:
        chunk = conn.recv(min(65536, length - len(body)))
        if not chunk:
            return None, fds
        body += chunk
    return json.loads(body), fds


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid, gid


def _status_lines(pid: int | str) -> list[str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return sorted(line for line in lines if line.split(":", 1)[0] in _STATUS_FIELDS)


def process_facts(pid: int | str) -> list[str]:
    """What a forked worker inherits from the runner rather than from its client: both ends compare them."""
    proc = f"/proc/{pid}"
    facts = [f"{ns}={os.readlink(f'{proc}/ns/{ns}')}" for ns in _NAMESPACES]
    root = os.stat(f"{proc}/root")
    facts.append(f"root={root.st_dev}:{root.st_ino}")
    facts.append(Path(f"{proc}/cgroup").read_text())
    facts.append(Path(f"{proc}/oom_score_adj").read_text())
    facts.append(Path(f"{proc}/limits").read_text())
    with contextlib.suppress(OSError):  # the LSM label (AppArmor, SELinux), where one is loaded
        facts.append(Path(f"{proc}/attr/current").read_text())
    facts.extend(_status_lines(pid))
    target = 0 if pid == "self" else int(pid)
    facts.append(f"cpus={sorted(os.sched_getaffinity(target))}")
    facts.append(f"nice={os.getpriority(os.PRIO_PROCESS, target)}")
    return facts


def confined(own: list[str]) -> bool:
    """True under a seccomp filter or no_new_privs (so possibly Landlock), from this process's
    process_facts: what such a filter allows is not observable from /proc, so a runner can never prove it
    carries the same one; the command runs cold."""
    return "Seccomp:\t0" not in own or "NoNewPrivs:\t0" not in own


def peer_facts(conn: socket.socket) -> tuple[int, int, list[str]]:
    """(pid, uid, process facts) of the process at the other end, read while it provably still is that
    process: through its pidfd where the kernel gives one, so a pid recycled after it exited cannot pass."""
    pid, uid, _gid = peer_credentials(conn)
    try:
        pidfd = conn.getsockopt(socket.SOL_SOCKET, _SO_PEERPIDFD)
    except OSError:
        pidfd = -1
    try:
        facts = process_facts(pid)
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, 0)  # ProcessLookupError (an OSError) once the peer has exited
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    return pid, uid, facts


def resource_limits() -> dict[str, list[int]]:
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
        own = process_facts("self")  # read once: for confined(), the runner's key and the runner's check
    except OSError:
        return None
    if confined(own):
        return None
    try:
        directory = runner_dir(env)
        key = fingerprint(env, own)
        path = directory / f"{key}.sock"
        if len(str(path)) > 100 or not private_dir(directory, create=True):
            return None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    with conn:
        try:
            conn.connect(str(path))
        except OSError:
            _start_runner(directory, key, env)
            return None
        try:  # the runner must be in this very context too: a sandboxed process may have bound the name
            _pid, uid, facts = peer_facts(conn)
            if uid != os.getuid() or facts != own:
                return None
        except OSError:
            return None  # a peer this process cannot even inspect (another user namespace): not ours
        return _converse(conn, argv, env)


def _converse(conn: socket.socket, argv: list[str], env: dict[str, str]) -> int | None:
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY)  # fchdir takes an O_PATH descriptor: no read permission needed
    except OSError:
        return None
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        ignored = [int(sig) for sig in FORWARDED_SIGNALS if signal.getsignal(sig) is signal.SIG_IGN]  # nohup, `cmd &`
        request = {"argv": argv, "argv0": sys.argv[0], "env": env, "umask": umask, "limits": resource_limits(),
                   "ignored": ignored}
        send_message(conn, request, [0, 1, 2, cwd])
    except OSError:
        return None
    finally:
        os.close(cwd)
    try:
        started, _ = recv_message(conn)
        group = int(started["pid"]) if isinstance(started, dict) and "pid" in started else None
    except (OSError, ValueError, TypeError):
        return None
    except KeyboardInterrupt:  # before the worker said it runs: closing the connection stops it, if it began
        return 130
    if group is None:
        return None  # refused (or the runner went away) before anything ran: run it here

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)

    def suspend(_signum: int, _frame: object) -> None:  # Ctrl-Z: the worker stops with this process
        # SIGSTOP, not SIGTSTP: the worker's group has no terminal, and the kernel drops SIGTSTP to a group so orphaned.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)

    handlers = {sig: forward for sig in (*FORWARDED_SIGNALS, signal.SIGCONT, signal.SIGWINCH)}
    handlers[signal.SIGTSTP] = suspend
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        ended, _ = recv_message(conn)  # PEP 475: a signal's handler runs and the read goes on
    except (OSError, ValueError):
        ended = None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not isinstance(ended, dict) or not isinstance(ended.get("status"), int):
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
    with contextlib.suppress(OSError):
        log = os.open(directory / "runner.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(log, 0o600)
            _spawn(directory, key, env, log)
        finally:
            os.close(log)


def _spawn(directory: Path, key: str, env: dict[str, str], log: int) -> None:
    """The runner, detached: its own session, `/` as its directory, no secrets in its environment."""
    subprocess.Popen(  # noqa: S603 - a fixed argv of this interpreter
        [sys.executable, "-P", "-m", "airlift.cli.warm_runner", str(directory), key],
        # PREFECT_HOME as the command's will be (cli/server.py): Prefect makes its home at import.
        env={**runner_env(env), "PREFECT_HOME": env.get("PREFECT_HOME") or str(directory.parent / "prefect")},
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
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



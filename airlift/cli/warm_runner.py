"""The warm runner's server side: the runner process, and the worker it forks for each command.

The client, the protocol and the trust rules are described in airlift/cli/warm.py. This module is what
`python -P -m airlift.cli.warm_runner DIR KEY` runs: it takes the key's lock, imports Prefect, listens,
refuses any client whose process context a fork would not carry, and forks a worker per command.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from airlift.cli.warm import (
    FORWARDED_SIGNALS,
    peer_facts,
    private_dir,
    process_facts,
    recv_message,
    resource_limits,
    send_message,
)

IDLE_SECONDS = 900.0  # a runner with no command for this long exits
_PRELOAD = ("prefect.main", "prefect.flows", "prefect.tasks", "prefect.flow_engine", "prefect.task_engine",
            "prefect.client.orchestration", "prefect.results", "prefect.context", "prefect.artifacts",
            "prefect.settings", "prefect.logging.configuration", "fastapi", "cyclonedx.model.bom", "cryptography")


class Runner:
    """One runner: the socket, the workers it forked, and their clients' connections."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory, self.key = directory, key
        self.path = directory / f"{key}.sock"
        self.workers: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
        self.stopping = False
        self.facts: list[str] = []
        self.last_served = time.monotonic()  # refusals do not count: a runner nobody it may serve asks, exits

    def serve(self) -> Callable[[], None] | None:
        """Serve until idle or told to stop. In a forked worker it returns the command to run."""
        lock = os.open(self.directory / f"{self.key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # another runner of this key is up
        pid_file = self.directory / f"{self.key}.pid"
        fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # one left by an older runner keeps its mode otherwise
        with os.fdopen(fd, "w") as out:  # read by stop_runners, only while this runner holds the lock
            out.write(str(os.getpid()))
        runner = os.getpid()
        signal.signal(signal.SIGTERM, self._stop)  # `server stop` may come while Prefect is still importing
        try:
            return self._serve(lock)
        finally:
            if os.getpid() == runner:  # the runner stopping, not a worker returning with its command
                pid_file.unlink(missing_ok=True)

    def _serve(self, lock: int) -> Callable[[], None] | None:
        for module in _PRELOAD:
            with contextlib.suppress(ImportError):
                __import__(module)
        self.facts = process_facts("self")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staging = self.directory / f"{self.key}.{os.getpid()}.tmp"
        staging.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        listener.bind(str(staging))
        os.umask(old_umask)
        listener.listen(64)
        os.rename(staging, self.path)
        bound = os.stat(self.path).st_ino
        print(f"{time.strftime('%FT%T')} runner {self.key} pid {os.getpid()} ready", flush=True)
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        listening, self.last_served = True, time.monotonic()
        while True:
            if not self.workers and time.monotonic() - self.last_served > IDLE_SECONDS:
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
            for handle, _events in selector.select(timeout=1.0):
                if handle.fileobj is listener:
                    job = self._accept(listener, selector, lock)
                    if job is not None:
                        return job
                else:
                    self._reap(handle.fd, selector)

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector, lock: int) -> Callable[[], None] | None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return None
        try:
            _pid, uid, facts = peer_facts(conn)
            reason = "another user" if uid != os.getuid() else None
            if reason is None and facts != self.facts:
                reason = "a different process context (namespaces, limits or privileges)"
        except OSError as exc:
            reason = f"unreadable peer ({exc.strerror})"
        if reason is not None:
            with contextlib.suppress(OSError):
                send_message(conn, {"refused": reason})
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
        self.last_served = time.monotonic()
        print(f"{time.strftime('%FT%T')} runner {self.key} served pid {child}", flush=True)  # no argv: it can hold a token
        selector.register(pidfd, selectors.EVENT_READ)
        return None

    def _reap(self, pidfd: int, selector: selectors.BaseSelector) -> None:
        pid, conn = self.workers.pop(pidfd)
        selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self.last_served = time.monotonic()
        with contextlib.suppress(OSError):
            send_message(conn, {"status": os.waitstatus_to_exitcode(status)})
        conn.close()


def _stream(fd: int, *, write: bool) -> object:
    import io
    import locale

    encoding, _, errors = os.environ.get("PYTHONIOENCODING", "").partition(":")
    encoding = encoding or locale.getpreferredencoding(False)
    if not errors:  # as CPython chooses them at start-up (Python/initconfig.c config_get_stdio_errors)
        c_locale = locale.setlocale(locale.LC_CTYPE) in {"C", "POSIX"}
        errors = "backslashreplace" if fd == 2 else ("surrogateescape" if c_locale or sys.flags.utf8_mode else "strict")
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    raw = io.FileIO(fd, "w" if write else "r", closefd=False)
    if write:
        return io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors=errors,
                                line_buffering=fd == 2 or raw.isatty(), write_through=unbuffered)
    return io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, errors=errors)


def _work(conn: socket.socket) -> None:
    """In the forked worker: become the client's process, then run the command and exit with its code."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setpgid(0, 0)
    try:
        conn.settimeout(10.0)  # a client that connects and never asks must not hold a worker forever
        request, fds = recv_message(conn, maxfds=4)
        conn.settimeout(None)
        if request is None or len(fds) != 4:
            raise ValueError("incomplete request")
        for sig in request.get("ignored", []):  # as the client had them (nohup, a script's `cmd &`)
            if int(sig) in {int(forwarded) for forwarded in FORWARDED_SIGNALS}:
                signal.signal(int(sig), signal.SIG_IGN)
        wanted = {name: tuple(limits) for name, limits in request["limits"].items()}
        if wanted != {name: tuple(limits) for name, limits in resource_limits().items()}:
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
        send_message(conn, {"pid": os.getpid()})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        with contextlib.suppress(OSError):
            send_message(conn, {"refused": f"worker set-up: {exc}"})
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
    for lock in directory.glob("*.lock") if private_dir(directory, create=False) else ():
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

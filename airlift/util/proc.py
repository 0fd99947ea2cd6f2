"""The one way airlift runs another program (git, pip, ssh, rsync, sbatch, docker).

Arguments are always a list (never a shell string), and the caller says which failures are transient
(worth a retry by the caller's retry layer); everything else is a WorkError with the last line of stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from airlift.util.errors import TransientError, WorkError
from airlift.util.settings import environ_with, environ_without


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

_USERINFO = re.compile(r"://[^/@\s]+@")


def run(
    argv: Sequence[str],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    transient: Callable[[int, str], bool] | None = None,
) -> str:
    """Run `argv` and return its stdout.

    Args:
        argv: The program and its arguments; values from a spec or manifest are single list items,
            never parsed by a shell.
        what: Names the action in error messages (an artifact id, "sbatch job.sbatch").
        cwd: Working directory.
        env: Variables added to this process's environment.
        input_text: Text for the program's standard input.
        transient: Given (exit code, stderr), True when a retry may cure the failure.

    Returns:
        The program's standard output.

    Raises:
        TransientError: The program failed and `transient` says a retry may help.
        WorkError: The program failed for any other reason, or could not be started.
    """
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=environ_with(env),
            input=input_text, capture_output=True, text=True,
        )
    except FileNotFoundError:
        raise WorkError(f"{argv[0]} is not installed (not on PATH)", artifact_id=what) from None
    if proc.returncode == 0:
        return proc.stdout
    # A tool may echo a URL it was given, credentials and all: cut userinfo before the text travels.
    stderr = _USERINFO.sub("://", proc.stderr.strip())
    # The last line that is not a warning says what went wrong (pip and git put warnings before it).
    lines = [line for line in stderr.splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if not line.lower().startswith("warning:")), lines[-1] if lines else "")
    message = cause or f"exit {proc.returncode}"
    if transient is not None and transient(proc.returncode, stderr):
        raise TransientError(message, artifact_id=what)
    raise WorkError(message, artifact_id=what)


# Git never prompts (no terminal in a flow run), speaks C so its messages can be classified, and uses
# only real transports: `ext::` and `fd::` would run commands named by whoever wrote the URL.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C", "GIT_ALLOW_PROTOCOL": "https:ssh:git:file"}
_GIT_TRANSIENT = ("could not resolve host", "connection", "timed out", "early eof", "remote end hung up")


def git(*args: str, cwd: Path | None = None, what: str = "git") -> str:
    """Run git with prompts disabled; network hiccups are transient, everything else is a WorkError."""
    return run(
        ["git", *args], what=what, cwd=cwd, env=GIT_ENV,
        transient=lambda _code, stderr: any(word in stderr.lower() for word in _GIT_TRANSIENT),
    )


# -- git over a repository a job may have written to: only its objects are read, never its config
ISOLATED = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")


@contextlib.contextmanager
def isolated_git(objects: Path, *, object_format: str = "sha1") -> Iterator[dict[str, str]]:
    """The environment for git reading the object directory `objects` and nothing else of its repo.

    GIT_DIR is a private, empty repository made here (so the repo's config, hooks, info/attributes and
    refs are never read), no system or global config is read and no GIT_* variable is inherited.
    """
    with tempfile.TemporaryDirectory(prefix="airlift-git-") as private:
        top = Path(private)
        (top / "refs").mkdir()
        (top / "objects").mkdir()
        (top / "HEAD").write_bytes(b"ref: refs/heads/airlift\n")
        if object_format != "sha1":
            (top / "config").write_text(f"[core]\n\trepositoryformatversion = 1\n[extensions]\n\tobjectformat = {object_format}\n")
        env = environ_without("GIT_")
        env.update(GIT_ENV, GIT_DIR=str(top), GIT_OBJECT_DIRECTORY=str(objects), GIT_INDEX_FILE=str(top / "index"),
                   GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_ATTR_NOSYSTEM="1",
                   GIT_NO_REPLACE_OBJECTS="1", HOME=str(top), XDG_CONFIG_HOME=str(top))
        yield env


def git_isolated(env: dict[str, str], *args: str, what: str) -> bytes:
    """`git <args>` in an `isolated_git` environment; its raw standard output."""
    proc = subprocess.run(["git", *ISOLATED, *args], env=env, cwd=env["GIT_DIR"], capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
        raise WorkError(lines[-1] if lines else f"git {args[0]}: exit {proc.returncode}", artifact_id=what)
    return proc.stdout


def git_blobs(env: dict[str, str], oids: list[str], *, what: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(oid, its content in chunks) for each blob of `oids`, in order, from one `git cat-file --batch`."""
    proc = subprocess.Popen(["git", *ISOLATED, "cat-file", "--batch"], env=env, cwd=env["GIT_DIR"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            stdin.write(b"".join(oid.encode() + b"\n" for oid in oids))
        with contextlib.suppress(BrokenPipeError):
            stdin.close()

    def chunks(size: int) -> Iterator[bytes]:
        while size:
            data = stdout.read(min(1 << 20, size))
            if not data:
                raise WorkError("git cat-file ended early", artifact_id=what)
            size -= len(data)
            yield data

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        for oid in oids:
            header = stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob" or header[0].decode() != oid:
                raise WorkError(f"{oid}: not a blob of the repository ({b' '.join(header).decode(errors='replace')})", artifact_id=what)
            body = chunks(int(header[2]))
            yield oid, body
            for _ in body:  # whatever the caller left unread
                pass
            stdout.read(1)  # the newline after each object
    finally:
        stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        feeder.join()

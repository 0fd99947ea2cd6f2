"""The one way airlift runs another program (git, pip, ssh, rsync, sbatch, docker).

Arguments are always a list (never a shell string), and the caller says which failures are transient
(worth a retry by the caller's retry layer); everything else is a WorkError with the last line of stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from airlift.util.errors import TransientError, WorkError
from airlift.util.settings import environ_with


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

"""Which unit of work a process is in, so a kill -9 trial can prove where it landed.

A kill proves resumability only if it lands while work is under way: a kill during start-up or after
the last write proves nothing. The core marks its units of work (`under_way`) and the points inside
them where bytes have moved but the unit is unfinished (`progress`). Both are free unless the
environment asks for them:

- `AIRLIFT_PHASE_LOG=FILE` appends one line per event: `start|end|stop PHASE PID THREAD SUBJECT [DONE/TOTAL]`.
  Each line is one `write()` to a file opened with O_APPEND, so lines from threads never interleave
  and a line written before a kill is on disk after it (the page cache outlives the process).
- `AIRLIFT_PHASE_STOP=PHASE:N` stops the process (SIGSTOP) at the N-th progress point of PHASE, counted
  across threads, after logging a `stop` line. A test then sends SIGKILL: the kill lands exactly there,
  with the unit's temp files, partial uploads and sessions as a real crash would leave them.

Subjects are artifact ids, file paths inside artifacts, blob digests and object keys: never URLs or
anything that can carry a credential.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from airlift.util.settings import settings

LOG_ENV = "AIRLIFT_PHASE_LOG"
STOP_ENV = "AIRLIFT_PHASE_STOP"

_state = threading.local()  # each thread's stack of open phases
_count_lock = threading.Lock()
_counts: dict[str, int] = {}


def _stack() -> list[tuple[str, str]]:
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


def _emit(event: str, phase: str, subject: str, extra: str = "") -> None:
    path = settings().phase_log
    if not path:
        return
    line = f"{event} {phase} {os.getpid()} {threading.get_ident()} {subject.replace(' ', '_') or '-'}{' ' + extra if extra else ''}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # a test aid must never fail (or mask the failure of) the work it watches


def _enabled() -> bool:
    return bool(settings().phase_log or settings().phase_stop)


@contextlib.contextmanager
def under_way(phase: str, subject: str = "") -> Iterator[None]:
    """Mark the block as one unit of `phase` work on `subject` (see the module docstring)."""
    if not _enabled():
        yield
        return
    stack = _stack()
    stack.append((phase, subject))
    _emit("start", phase, subject)
    try:
        yield
    finally:
        stack.pop()
        _emit("end", phase, subject)


def progress(*, done: int | None = None, total: int | None = None) -> None:
    """A point inside the innermost open unit where it has begun and not finished (done < total).

    Stops the process here when `AIRLIFT_PHASE_STOP` names this phase and this is its N-th point.
    """
    wanted = settings().phase_stop
    if not wanted:
        return
    stack = _stack()
    if not stack or (done is not None and (total is None or not 0 < done < total)):
        return  # with bytes counted, a point must leave the unit unfinished: an unknown total proves nothing
    phase, subject = stack[-1]
    name, _, nth = wanted.partition(":")
    if phase != name:
        return
    with _count_lock:
        _counts[phase] = _counts.get(phase, 0) + 1
        hit = str(_counts[phase]) == nth
    if hit:
        _emit("stop", phase, subject, f"{done}/{total}" if done is not None else "")
        # Sent to this thread, not the process: a process-directed stop may be taken by another thread
        # first, and this one could finish its unit (and log `end`) before it stops. The whole process
        # stops either way; SIGCONT resumes it.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def open_at_stop(log_text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """From a phase log: the phase the process was stopped in, and every unit still open at the end."""
    stopped: str | None = None
    open_units: dict[tuple[str, str, str, str], int] = {}
    for line in log_text.splitlines():
        event, phase, pid, thread, subject, *_ = (line.split(" ") + [""] * 5)[:6]
        key = (phase, pid, thread, subject)
        if event == "start":
            open_units[key] = open_units.get(key, 0) + 1
        elif event == "end" and open_units.get(key):
            open_units[key] -= 1
        elif event == "stop":
            stopped = phase
    return stopped, sorted({(phase, subject) for (phase, _, _, subject), n in open_units.items() if n})

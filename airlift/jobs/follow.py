"""`submit --wait` streams each job's output as it is written (NeMo-Run's attached mode).

Each poll reads what the job's log file gained since the last one (bounded per poll, so a job that
writes gigabytes cannot stall the wait loop or fill memory) and passes on whole lines, each prefixed
with the job's name; a last partial line is passed on once the job has ended.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

MAX_BYTES_PER_POLL = 1 << 20


class LogFollower:
    """Tails the log files of a set of jobs.

    Args:
        write: Where the prefixed lines go (the CLI's stdout; never Prefect's log store, which is
            outside the job's trust domain).
        max_bytes: The most read from one log per poll.
    """

    def __init__(self, write: Callable[[str], None], *, max_bytes: int = MAX_BYTES_PER_POLL) -> None:
        self._write, self._max = write, max_bytes
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}

    def poll(self, logs: dict[str, str], *, final: bool = False) -> None:
        """Pass on what each job's log (name -> path) gained; with `final`, everything left, partial lines too."""
        for name, path in logs.items():
            while True:
                got = self._read(name, Path(path))
                if not final or not got:
                    break
            if final and self._partial.get(name):
                self._emit(name, self._partial.pop(name) + b"\n")

    def _read(self, name: str, path: Path) -> int:
        try:
            with open(path, "rb") as log:
                log.seek(self._offsets.get(name, 0))
                chunk = log.read(self._max)
        except OSError:
            return 0  # not written yet (the job is still queued)
        if not chunk:
            return 0
        self._offsets[name] = self._offsets.get(name, 0) + len(chunk)
        data = self._partial.pop(name, b"") + chunk
        whole, _, rest = data.rpartition(b"\n")
        if rest:
            self._partial[name] = rest
        if whole:
            self._emit(name, whole + b"\n")
        return len(chunk)

    def _emit(self, name: str, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        self._write("".join(f"[{name}] {line}\n" for line in text.splitlines()))

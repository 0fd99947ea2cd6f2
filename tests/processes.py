"""Process helpers shared by the phase-marker tests (fast tier) and the kill trials (service tier)."""

from __future__ import annotations

from pathlib import Path


def all_threads_stopped(pid: int) -> bool:
    """Every thread of `pid` is stopped (a group stop reaches the threads one by one)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended
    return bool(states) and all(state in "TZX" for state in states)

"""What every airlift task shares: the transient-only retry condition and throttled progress logging."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger
from prefect.states import State

from airlift.errors import is_transient

RETRY_DELAYS = [2, 10, 30]


def retry_transient(task: Any, task_run: Any, state: State) -> bool:
    """Prefect `retry_condition_fn`: retry connection errors, 429 and 5xx; fail fast on everything else."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as raised:  # noqa: BLE001 - we only classify it
            exc = raised
    return exc is not None and is_transient(exc)


class ProgressLog:
    """Counts bytes from worker threads and logs rate and ETA at most every few seconds."""

    def __init__(self, label: str, total: int | None, every: float = 5.0) -> None:
        self.label, self.total, self.every = label, total, every
        self.done = 0
        self.start = self.last = time.monotonic()
        try:
            self.logger = get_run_logger()
        except Exception:  # noqa: BLE001 - outside a run context, stay silent
            self.logger = None

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.logger is None or now - self.last < self.every:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-6)
        if self.total:
            eta = (self.total - self.done) / rate if rate else float("inf")
            self.logger.info("%s: %.1f%% of %s, %s/s, ETA %.0fs", self.label, 100 * self.done / self.total, human(self.total), human(rate), eta)
        else:
            self.logger.info("%s: %s, %s/s", self.label, human(self.done), human(rate))


def human(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"

"""What every airlift task shares: throttled progress logging.

Tasks do not retry: the core retries each failure domain exactly once (HTTP, registry, git, ssh and pip
calls in airlift.util.net; S3 calls in botocore), so a Prefect retry on top would multiply the budget.
See docs/reliability.md, "Retry policy".
"""

from __future__ import annotations

import sys
import threading
import time

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from airlift.util.units import human


class ProgressLog:
    """Byte progress from worker threads: a Prefect progress artifact, a rich bar on a terminal, and
    a log line with rate and ETA, each updated at most every few seconds."""

    def __init__(self, label: str, total: int | None, every: float = 2.0) -> None:
        self.label, self.total, self.every = label, total, every
        self.done = 0
        self.start = self.last = time.monotonic()
        self._lock = threading.Lock()
        self._artifact_id = None
        self._bar = _terminal_bar(label, total)
        try:
            self.logger = get_run_logger()
        except Exception:  # noqa: BLE001 - outside a run context, stay silent
            self.logger = None

    def __call__(self, count: int) -> None:
        with self._lock:
            self.done += count
            if self._bar is not None:
                self._bar[0].update(self._bar[1], completed=self.done)
            now = time.monotonic()
            if now - self.last < self.every:
                return
            self.last = now
        self._report(now)

    def _report(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6)
        if self.total:
            percent = min(100.0, 100 * self.done / self.total)
            eta = (self.total - self.done) / rate if rate else float("inf")
            message = f"{self.label}: {percent:.1f}% of {human(self.total)}, {human(rate)}/s, ETA {eta:.0f}s"
            self._artifact(percent)
        else:
            message = f"{self.label}: {human(self.done)}, {human(rate)}/s"
        if self.logger is not None:
            self.logger.info(message)

    def _artifact(self, percent: float) -> None:
        try:
            if self._artifact_id is None:
                self._artifact_id = create_progress_artifact(progress=percent, description=self.label)
            else:
                update_progress_artifact(artifact_id=self._artifact_id, progress=percent)
        except Exception:  # noqa: BLE001 - progress must never fail the work
            self._artifact_id = self._artifact_id or False


_PROGRESS = None


def _terminal_bar(label: str, total: int | None):
    """A shared rich progress display, only when stderr is a terminal (never in CI logs)."""
    global _PROGRESS
    if not sys.stderr.isatty():
        return None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    if _PROGRESS is None:
        _PROGRESS = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), transient=True)
        _PROGRESS.start()
    return _PROGRESS, _PROGRESS.add_task(label, total=total)

"""What every airlift task shares: throttled progress logging.

Tasks do not retry: the core retries each failure domain exactly once (HTTP, registry, git, ssh and pip
calls in airlift.util.net; S3 calls in botocore), so a Prefect retry on top would multiply the budget.
See docs/reliability.md, "Retry policy".
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import sys
import threading
import time
import weakref
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from airlift.bundle.manifest import ImageArtifact
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
        self._artifact_failed = False  # the API refused once: no more tries for this download
        # Byte counts arrive from worker threads (range and file workers), which have no Prefect run
        # context: the artifact is made in a copy of the creating task's, so it names its task run.
        self._context = contextvars.copy_context()
        self._artifact_lock = threading.Lock()
        self._bar = _terminal_bar(label, total)
        if self._bar is not None:  # when the task is done with it, its bar goes (and the display, with the last)
            weakref.finalize(self, _release_bar, *self._bar)
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
        # Non-blocking: while one worker reports, another does not wait on the API (nor make a second artifact).
        if not self._artifact_lock.acquire(blocking=False):
            return
        try:
            self._context.copy().run(self._publish, percent)
        except Exception:  # noqa: BLE001 - progress must never fail the work
            self._artifact_failed = True
        finally:
            self._artifact_lock.release()

    def _publish(self, percent: float) -> None:
        if self._artifact_failed:
            return
        if self._artifact_id is None:
            self._artifact_id = create_progress_artifact(progress=percent, description=self.label)
        else:
            update_progress_artifact(artifact_id=self._artifact_id, progress=percent)


_PROGRESS = None  # the one live display of this process, while any bar is alive
_PROGRESS_LOCK = threading.Lock()


def _terminal_bar(label: str, total: int | None):
    """A bar on the shared rich display, only when stderr is a terminal (never in CI logs)."""
    global _PROGRESS
    if not sys.stderr.isatty():
        return None
    with _PROGRESS_LOCK:
        if _PROGRESS is None:
            # Binary units, as every summary prints them (human(): MiB), not rich's decimal MB.
            _PROGRESS = Progress(TextColumn("{task.description}"), BarColumn(), _BytesColumn(), _RateColumn(), TimeRemainingColumn(), transient=True)
            _PROGRESS.start()
            atexit.register(stop_progress)  # Ctrl-C or an error: the cursor comes back all the same
        return _PROGRESS, _PROGRESS.add_task(label, total=total)


def _release_bar(progress, task_id) -> None:  # noqa: ANN001 - a rich Progress and its task id
    """A bar's ProgressLog is gone (its task ended): drop the bar, and the display with the last one."""
    global _PROGRESS
    with _PROGRESS_LOCK:
        if progress is not _PROGRESS:
            return
        with contextlib.suppress(KeyError):
            progress.remove_task(task_id)
        if progress.tasks:
            return
        _PROGRESS = None  # a bar made from now on gets a new display
    progress.stop()


def stop_progress() -> None:
    """Stop the live display: erase it and show the cursor again (ESC[?25h), so nothing redraws later."""
    global _PROGRESS
    with _PROGRESS_LOCK:
        progress, _PROGRESS = _PROGRESS, None
    if progress is not None:
        progress.stop()


def manifest_bytes(manifest: Any) -> int:
    """The bytes of a manifest's blobs, each once: the known total of a verify or pack bar."""
    sizes = {f.sha256: f.size for artifact in manifest.artifacts for f in artifact.files}
    images = sum(artifact.image.size for artifact in manifest.artifacts if isinstance(artifact, ImageArtifact))
    return sum(sizes.values()) + images


class _BytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = human(task.total) if task.total is not None else "?"
        return Text(f"{human(task.completed)}/{total}", style="progress.download")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{human(speed)}/s", style="progress.data.speed")

"""The network layer's shared policy: which failures are transient, how they are retried, and how
many requests one upstream host gets at once. Every source and sink goes through these."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import urlparse

from airlift.util.errors import AirliftError, TransientError, WorkError, is_transient, resource_error

log = logging.getLogger("airlift")
T = TypeVar("T")
R = TypeVar("R")


def with_transient_retries(label: str, *, attempts: int, action: Callable[[], T]) -> T:
    """Run `action`, retrying only transient failures with jittered exponential backoff.

    Downloads keep their partial file between attempts, so a retry resumes rather than restarts.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except AirliftError as exc:
            if not is_transient(exc) or attempt == attempts:
                raise
            delay = min(8.0, 0.2 * 2**attempt) * (0.5 + random.random())
        except Exception as exc:  # noqa: BLE001 - classified right here
            if isinstance(exc, OSError) and (full := resource_error(exc, label)):
                raise full from exc
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise TransientError(f"{label}: still failing after {attempts} attempts: {exc}") from exc
            delay = min(8.0, 0.2 * 2**attempt) * (0.5 + random.random())
        log.warning("%s: transient failure (attempt %d/%d), retrying in %.1fs", label, attempt, attempts, delay)
        time.sleep(delay)
    raise WorkError(f"{label}: unreachable")  # pragma: no cover


_HOST_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_HOST_LOCK = threading.Lock()


def max_per_host() -> int:
    """Parallel downloads per upstream host (AIRLIFT_MAX_PER_HOST, default 8)."""
    return max(1, int(os.environ.get("AIRLIFT_MAX_PER_HOST", "8")))


@contextlib.contextmanager
def host_slot(url: str) -> Iterator[None]:
    """Cap parallel downloads per upstream host (AIRLIFT_MAX_PER_HOST, default 8) across all
    artifacts of this process, so parallel artifacts never hammer one server."""
    host = urlparse(url).netloc or url
    with _HOST_LOCK:
        slot = _HOST_SLOTS.setdefault(host, threading.BoundedSemaphore(max_per_host()))
    with slot:
        yield


def bounded_map(func: Callable[[T], R], items: Iterable[T], *, workers: int) -> list[R]:
    """Map over items on a bounded thread pool; the first failure propagates after the rest settle."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [func(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(func, items))

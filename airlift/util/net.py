"""The network layer's shared policy: which failures are transient, how they are retried, and how
many requests one upstream host gets at once. Every source and sink goes through these."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import urlparse

from airlift.util.errors import AirliftError, TransientError, WorkError, is_transient, resource_error
from airlift.util.redact import redact_url
from airlift.util.settings import settings

log = logging.getLogger("airlift")
T = TypeVar("T")
R = TypeVar("R")


# The one attempt count for every call the core retries (HTTP, registry, git, pip, ssh, rsync, Slurm's
# controller): 6 attempts, 5 waits of 0.4, 0.8, 1.6, 3.2 and 6.4 s, each jittered x0.5 to x1.5.
ATTEMPTS = 6
_FIRST_DELAY = 0.4
_MAX_DELAY = 8.0


def backoff(attempt: int) -> float:
    """The jittered wait after failed attempt number `attempt` (1-based)."""
    return min(_MAX_DELAY, _FIRST_DELAY * 2 ** (attempt - 1)) * (0.5 + random.random())


def with_transient_retries(label: str, *, action: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Run `action`, retrying only transient failures with jittered exponential backoff.

    Downloads keep their partial file between attempts, so a retry resumes rather than restarts.

    Args:
        label: Names the work in log lines and in the final error.
        action: The call to make; it is made again only after a transient failure.
        attempts: How many calls at most (default ATTEMPTS).

    Returns:
        What `action` returned.

    Raises:
        TransientError: Still transient after `attempts` calls (the message says so and keeps the cause).
        ResourceError: The local disk is full, over quota or read-only (never retried).
        Exception: Any non-transient failure, at once and unchanged.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - classified right here
            if isinstance(exc, OSError) and (full := resource_error(exc, label)):
                raise full from exc
            if not is_transient(exc):
                raise
            cause = str(exc) if isinstance(exc, AirliftError) else f"{label}: {_cause(exc)}"
            if attempt == attempts:
                if isinstance(exc, AirliftError):
                    raise TransientError(f"{exc.message} (gave up after {attempts} attempts)", artifact_id=exc.artifact_id) from exc
                raise TransientError(f"{_cause(exc)} (gave up after {attempts} attempts)", artifact_id=label) from exc
            delay = backoff(attempt)
        log.warning("%s (attempt %d/%d), retrying in %.1fs", cause, attempt, attempts, delay)
        time.sleep(delay)
    raise WorkError(f"{label}: unreachable")  # pragma: no cover


def _cause(exc: BaseException) -> str:
    """`ConnectError: [Errno 111] Connection refused (http://host:port/path)`: the URL an HTTP error lacks."""
    text = f"{type(exc).__name__}: {exc}"
    try:
        url = redact_url(str(exc.request.url))  # httpx keeps the request; its property raises when unset
    except (AttributeError, RuntimeError):
        return text
    return text if url in text else f"{text} ({url})"


_HOST_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_HOST_LOCK = threading.Lock()


def max_per_host() -> int:
    """Parallel downloads per upstream host (AIRLIFT_MAX_PER_HOST, default 8)."""
    return settings().max_per_host


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

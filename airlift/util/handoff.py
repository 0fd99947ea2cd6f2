"""A one-slot hand-off from the CLI to the flow it starts in the same process.

The CLI reads a command's input (spec, site, keys, signature) to refuse bad input before any flow
run; the flow needs the same values. Rather than read everything twice, the CLI leaves what it
prepared here and the flow's own `prepare_*` call takes it, when it asks with the same arguments and
no input file changed in between (device, inode, size, mtime). A flow started any other way (a
deployment, a worker) finds nothing and reads its input itself, so correctness never depends on it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any


def fingerprint(path: str | Path | None) -> tuple[int, int, int, int] | None:
    """What would change if the file at `path` changed: (device, inode, size, mtime_ns); None when absent."""
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class Handoff:
    """One prepared value, taken at most once, only by a caller asking with the same key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slot: tuple[Hashable, Any] | None = None

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._slot = (key, value)

    def take(self, key: Hashable) -> Any | None:
        with self._lock:
            slot, self._slot = self._slot, None
        return slot[1] if slot is not None and slot[0] == key else None

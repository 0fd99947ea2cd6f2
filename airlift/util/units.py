"""Human-readable byte counts, shared by the CLI and the Prefect progress logs."""

from __future__ import annotations


def human(count: float) -> str:
    """A byte count as `12.3 MiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"

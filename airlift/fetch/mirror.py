"""A mirror's bundles: `<spec name>-<UTC time>` directories under one folder, newest last.

A refresh writes into `<name>-<time>.partial` and renames it when complete, so an unfinished refresh
is never mistaken for a bundle, and the next refresh finishes it (its blobs are kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

PARTIAL = ".partial"


@dataclass(frozen=True)
class MirrorState:
    """The mirror's complete bundles (oldest first) and the unfinished one to resume, if any."""

    complete: list[Path]
    unfinished: Path | None

    @property
    def newest(self) -> Path | None:
        return self.complete[-1] if self.complete else None


def mirror_state(directory: Path, name: str) -> MirrorState:
    """Read `directory` for the bundles of spec `name` (names carry a sortable UTC timestamp)."""
    if not directory.is_dir():
        return MirrorState([], None)
    mine = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(f"{name}-"))
    complete = [p for p in mine if not p.name.endswith(PARTIAL) and (p / "manifest.json").is_file()]
    unfinished = [p for p in mine if p.name.endswith(PARTIAL)]
    return MirrorState(complete, unfinished[-1] if unfinished else None)


def next_bundle_dir(directory: Path, name: str, *, now: datetime | None = None) -> Path:
    """Where a refresh builds: the unfinished bundle to resume, or a new timestamped `.partial` one."""
    state = mirror_state(directory, name)
    if state.unfinished is not None:
        return state.unfinished
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return directory / f"{name}-{stamp}{PARTIAL}"


def final_name(partial: Path) -> Path:
    """The complete bundle's name: the `.partial` suffix dropped."""
    return partial.with_name(partial.name.removesuffix(PARTIAL))


class MirrorResult(BaseModel):
    """What a mirror refresh did: a new bundle (and its lineage), or nothing because nothing changed."""

    changed: bool
    bundle: str | None = None
    since: str | None = None
    blobs_written: int = 0

"""A mirror's bundles: `<spec name>-<UTC time>` directories under one folder, newest last.

A refresh writes into `<name>-<time>.partial` and renames it when complete, so an unfinished refresh
is never mistaken for a bundle, and the next refresh finishes it (its blobs are kept). A refresh whose
resolved references match the newest complete bundle's writes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from airlift.bundle.layout import Bundle

PARTIAL = ".partial"


@dataclass(frozen=True)
class MirrorState:
    """The mirror's complete bundles (oldest first) and the unfinished one to resume, if any."""

    complete: list[Path]
    unfinished: Path | None

    @property
    def newest(self) -> Path | None:
        """The newest complete bundle, which a new one is a delta of."""
        return self.complete[-1] if self.complete else None


def mirror_state(directory: Path, name: str) -> MirrorState:
    """Read `directory` for the bundles of spec `name` (names carry a sortable UTC timestamp).

    Args:
        directory: The mirror's folder (it may not exist yet).
        name: The spec's name.

    Returns:
        The complete bundles (those with a manifest and no `.partial` suffix) and the newest unfinished one.
    """
    if not directory.is_dir():
        return MirrorState([], None)
    mine = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(f"{name}-"))
    complete = [p for p in mine if not p.name.endswith(PARTIAL) and (p / "manifest.json").is_file()]
    unfinished = [p for p in mine if p.name.endswith(PARTIAL)]
    return MirrorState(complete, unfinished[-1] if unfinished else None)


def next_bundle_dir(directory: Path, name: str, *, now: datetime | None = None) -> Path:
    """Where a refresh builds: the unfinished bundle to resume, or a new timestamped `.partial` one.

    Args:
        directory: The mirror's folder.
        name: The spec's name.
        now: The time that names a new bundle (default: now, UTC).

    Returns:
        A `<name>-<YYYYmmddTHHMMSSZ>.partial` directory (not created).
    """
    state = mirror_state(directory, name)
    if state.unfinished is not None:
        return state.unfinished
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return directory / f"{name}-{stamp}{PARTIAL}"


def final_name(partial: Path) -> Path:
    """The complete bundle's name: the `.partial` suffix dropped."""
    return partial.with_name(partial.name.removesuffix(PARTIAL))


@dataclass(frozen=True)
class RefreshPlan:
    """What a refresh does: nothing when `target` is None, otherwise build into `target` as a delta since `since`."""

    since: Path | None
    target: Path | None

    @property
    def changed(self) -> bool:
        """Whether upstream changed, so a bundle is to be written."""
        return self.target is not None


def plan_refresh(directory: Path, name: str, *, resolution: str, now: datetime | None = None) -> RefreshPlan:
    """Decide a refresh from what upstream resolves to now and the newest complete bundle.

    Args:
        directory: The mirror's folder (created when a bundle is to be written).
        name: The spec's name.
        resolution: The digest of every resolved reference now (`airlift.fetch.bundle_writer.resolution_digest`).
        now: The time that names a new bundle (default: now, UTC).

    Returns:
        No target when the newest bundle was built from the same resolution; otherwise the directory to
        build (an unfinished one is resumed) and the bundle it is a delta of.
    """
    newest = mirror_state(directory, name).newest
    if newest is not None and Bundle(newest).read_manifest().resolution == resolution:
        return RefreshPlan(since=newest, target=None)
    directory.mkdir(parents=True, exist_ok=True)
    return RefreshPlan(since=newest, target=next_bundle_dir(directory, name, now=now))


def complete(partial: Path) -> Path:
    """Give a finished `.partial` bundle its final name (atomically), so it counts as complete.

    Returns:
        The bundle's final path.
    """
    final = final_name(partial)
    os.replace(partial, final)
    return final


class MirrorResult(BaseModel):
    """What a mirror refresh did: a new bundle (and its lineage), or nothing because nothing changed."""

    changed: bool
    bundle: str | None = None
    since: str | None = None
    blobs_written: int = 0

    def summary(self) -> str:
        """One sentence for the log and the run's Markdown artifact."""
        since = Path(self.since).name if self.since else None
        if not self.changed:
            return f"Nothing changed upstream since `{since}`: no bundle written."
        delta = f", a delta since `{since}`" if since else ""
        return f"New bundle `{Path(self.bundle or '').name}`: {self.blobs_written} blobs written{delta}."

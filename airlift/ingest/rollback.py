"""Rollback protection: the site's high-water mark per bundle name, under `shared_root/.airlift/trust/`.

A validly signed bundle created in January, ingested after one created in June under the same name,
would silently put the old content back. So each site remembers, per bundle name, the newest bundle
it ingested (its signed `created` time and manifest sha256), and `ingest` refuses an older one with
exit 1, naming both, unless `--allow-older` is given; every override is recorded in the same file.

"Older" (docs/security.md): the incoming manifest's `created` is earlier than the mark's, and the
incoming bundle is not a delta built on the marked one (`since.manifest_sha256`). Both fields are
inside manifest.json, which the signature covers, so whoever lacks the signing key cannot make an old
bundle look new. The mark itself is written only by ingest, atomically, through ConfinedRoot.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airlift.bundle.manifest import Manifest, now_iso
from airlift.util.confine import ConfinedRoot, EscapeError, read_regular
from airlift.util.errors import WorkError

TRUST_DIR = ".airlift/trust"
MAX_MARK_BYTES = 1 << 20


class Override(BaseModel):
    """One `--allow-older` ingest: what was let in, over which mark, and when."""

    at: str
    manifest_sha256: str
    created: str
    over_manifest_sha256: str
    over_created: str


class Mark(BaseModel):
    """The newest bundle of one name this site has ingested, and every override of it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    created: str
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    ingested_at: str
    overrides: list[Override] = Field(default_factory=list)


class RollbackError(WorkError):
    """An older bundle than the site already holds under the same name (exit 1)."""


def mark_path(name: str) -> str:
    """The mark's path relative to shared_root (the name quoted, so any bundle name is one file name)."""
    return f"{TRUST_DIR}/{quote(name, safe='')}.json"


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def read_mark(shared_root: Path, name: str) -> Mark | None:
    """The mark for `name`, or None when there is none.

    Raises:
        WorkError: A mark is there but unreadable or invalid: refusing is safer than forgetting it
            (a deleted or broken mark would otherwise let any old bundle back in).
    """
    relative = mark_path(name)
    try:
        data = read_regular(Path(shared_root), relative, max_bytes=MAX_MARK_BYTES)
    except FileNotFoundError:
        return None
    except (OSError, EscapeError) as exc:
        raise WorkError(f"{Path(shared_root) / relative}: the rollback mark is unreadable ({exc}); repair or remove it by hand") from None
    try:
        return Mark.model_validate_json(data)
    except ValidationError:
        raise WorkError(f"{Path(shared_root) / relative}: the rollback mark is not valid; repair or remove it by hand") from None


def is_older(manifest: Manifest, manifest_sha256: str, mark: Mark) -> bool:
    """True when the incoming bundle is older than the mark (see the module docstring)."""
    if manifest_sha256 == mark.manifest_sha256:
        return False  # the same bundle again (a rerun)
    if manifest.since is not None and manifest.since.manifest_sha256 == mark.manifest_sha256:
        return False  # a delta built on the marked bundle is its successor by lineage
    incoming, marked = _instant(manifest.created), _instant(mark.created)
    if incoming is None or marked is None:
        return True  # an unparseable time cannot prove it is newer
    return incoming < marked


def check(shared_root: Path, manifest: Manifest, manifest_sha256: str, *, origin: str, allow_older: bool = False) -> Mark | None:
    """Refuse a rollback before anything is written; return the current mark (None: first of its name).

    Raises:
        RollbackError: The bundle is older than the mark and `allow_older` is False.
    """
    mark = read_mark(shared_root, manifest.name)
    if mark is not None and is_older(manifest, manifest_sha256, mark) and not allow_older:
        raise RollbackError(
            f"{origin}: refused: bundle {manifest.name!r} created {manifest.created} (manifest {manifest_sha256[:12]}) is older "
            f"than the one already ingested, created {mark.created} (manifest {mark.manifest_sha256[:12]}, ingested {mark.ingested_at}); "
            "a rollback. Pass --allow-older to ingest it anyway (recorded)"
        )
    return mark


def record(shared_root: Path, manifest: Manifest, manifest_sha256: str) -> Mark:
    """After a successful ingest: raise the mark to this bundle, or record the override of an older one."""
    mark = read_mark(shared_root, manifest.name)
    now = now_iso()
    if mark is None:
        mark = Mark(name=manifest.name, created=manifest.created, manifest_sha256=manifest_sha256, ingested_at=now)
    elif is_older(manifest, manifest_sha256, mark):
        # The mark stays at the newest bundle: the next ingest of this older one needs --allow-older again.
        mark.overrides.append(Override(
            at=now, manifest_sha256=manifest_sha256, created=manifest.created,
            over_manifest_sha256=mark.manifest_sha256, over_created=mark.created,
        ))
    else:
        mark = Mark(name=manifest.name, created=manifest.created, manifest_sha256=manifest_sha256, ingested_at=now, overrides=mark.overrides)
    confined = ConfinedRoot(Path(shared_root))
    confined.write_bytes(mark_path(manifest.name), (json.dumps(mark.model_dump(mode="json"), indent=1) + "\n").encode(), mode=0o644)
    return mark

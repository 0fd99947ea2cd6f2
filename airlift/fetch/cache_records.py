"""Evicting cache records on purpose (`airlift cache prune --records | --artifact ID | --all`).

Prune alone never removes a blob a record names, so without eviction nothing downloaded could ever
leave the cache. A record counts as used when a build reuses it (Cache.load touches it), so
`--records --older-than 7d` evicts what no build has reused for a week, while a build running now
keeps its records, and with them its blobs. The blobs of evicted records then go by prune's usual
rules (younger than the age stays; partials in use stay under their locks).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def records_to_evict(records_dir: Path, *, cutoff: float | None, artifacts: Iterable[str] = ()) -> list[Path]:
    """Record files last used before `cutoff` (None: not by age), or recording one of `artifacts` (ids)."""
    wanted = set(artifacts)
    out: list[Path] = []
    for path in sorted(records_dir.glob("*.json")) if records_dir.is_dir() else []:
        try:
            old = cutoff is not None and path.stat().st_mtime < cutoff
            if not old and wanted:
                with open(path, "rb") as handle:  # bounded: a record is a small JSON document
                    old = json.loads(handle.read(64 << 20)).get("id") in wanted
        except (OSError, ValueError, AttributeError):
            continue  # gone meanwhile, or not a record: prune's other rules apply to it
        if old:
            out.append(path)
    return out


def evict(paths: Iterable[Path], *, dry_run: bool) -> int:
    """Remove these record files (a record is one atomic file: a build sees it whole or not at all)."""
    count = 0
    for path in paths:
        if not dry_run:
            path.unlink(missing_ok=True)
        count += 1
    return count

"""Where things live under `shared_root` (the contract's air-gapped layouts), and the ingest markers.

Ingest writes these paths; `serve` and job preflight read them. Keeping the conventions here lets the
air-gapped side's packages share them without importing each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

MARKER_DIR = ".airlift/ingested"


def marker_path(root: Path, artifact_id: str) -> Path:
    return root / MARKER_DIR / f"{quote(artifact_id, safe='')}.json"


def read_marker(root: Path, artifact_id: str) -> dict | None:
    try:
        return json.loads(marker_path(root, artifact_id).read_text())
    except (FileNotFoundError, ValueError):
        return None

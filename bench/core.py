"""The engine without Prefect: transfer and verify of the bench bundle, against rsync -a and sha256sum -c.

Separates what airlift's own code costs from Prefect's per-command start-up. Needs the bundle that
bench/build_local.sh builds. Usage: .venv/bin/python bench/core.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from airlift.bundle.layout import Bundle  # noqa: E402
from airlift.bundle.verify import verify_bundle  # noqa: E402
from airlift.transport.engine import transfer as engine_transfer  # noqa: E402
from airlift.transport.local import DirEndpoint  # noqa: E402

ROOT = Path(os.environ.get("BENCH_DIR", "/tmp/airlift-bench"))
SRC = Bundle(ROOT / "build" / "bundle")


def timed(action) -> float:
    os.sync()
    started = time.monotonic()
    action()
    os.sync()
    return time.monotonic() - started


def main() -> None:
    if not SRC.exists():
        sys.exit("run bench/build_local.sh first")
    for name in ("core-rsync", "core-airlift"):
        shutil.rmtree(ROOT / name, ignore_errors=True)
    rsync = timed(lambda: subprocess.run(["rsync", "-a", f"{SRC.root}/", str(ROOT / "core-rsync")], check=True))

    def transfer() -> None:
        engine_transfer(DirEndpoint(str(SRC.root)), DirEndpoint(str(ROOT / "core-airlift"), workers=2))

    ours = timed(transfer)
    sums = timed(lambda: subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=SRC.root, check=True))
    verify = timed(lambda: verify_bundle(SRC))
    size = sum(p.stat().st_size for p in (SRC.root / "blobs" / "sha256").iterdir()) / 2**20
    print(f"| engine only, no Prefect ({size:.0f} MiB) | seconds | ratio |")
    print("|---|---|---|")
    print(f"| rsync -a (baseline) | {rsync:.2f} | 1.00 |")
    print(f"| airlift transfer engine (copy + hash + verify at DEST) | {ours:.2f} | {rsync / ours:.2f}x rsync speed |")
    print(f"| sha256sum -c SHA256SUMS (baseline) | {sums:.2f} | 1.00 |")
    print(f"| airlift verify engine | {verify:.2f} | {sums / verify:.2f}x faster |")


if __name__ == "__main__":
    main()

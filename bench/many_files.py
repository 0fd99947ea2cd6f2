"""Bench 7: per-file overhead on a dataset of 10,000 small files (local path and Hugging Face).

Per-file cost = (build of N files - build of 1 file) / N, so Prefect start-up cancels out.
Usage: .venv/bin/python bench/many_files.py [N]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from airlift.testing.hubserver import HubServer  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
WORK = Path(os.environ.get("BENCH_DIR", "/tmp/airlift-bench")) / "many"
AIRLIFT = str(Path(sys.executable).parent / "airlift")


def build(spec: Path, out: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([AIRLIFT, "build", str(spec), "--out", str(out)], env=env, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    hub = HubServer().start()
    files = {f"data/part-{i:05d}.jsonl": f'{{"id": {i}, "text": "row {i}"}}\n'.encode() for i in range(N)}
    hub.add_repo("dataset", "bench/many", files=files)
    hub.add_repo("dataset", "bench/one", files={"data/part-00000.jsonl": b'{"id": 0}\n'})
    local = WORK / "local"
    for name, data in files.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    (WORK / "one").mkdir()
    (WORK / "one" / "x.jsonl").write_bytes(b"{}\n")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    rows = []
    for label, body_many, body_one in (
        ("local path", f"datasets:\n  - path: {local}\n", f"datasets:\n  - path: {WORK / 'one'}\n"),
        ("Hugging Face dataset", "datasets:\n  - hf: bench/many\n", "datasets:\n  - hf: bench/one\n"),
    ):
        key = label.split()[0]
        many, one = WORK / f"{key}-many.yaml", WORK / f"{key}-one.yaml"
        many.write_text(f"name: many\n{body_many}")
        one.write_text(f"name: one\n{body_one}")
        env["AIRLIFT_CACHE"] = str(WORK / f"cache-{key}")
        t_one = build(one, WORK / f"{key}-b1", env)
        t_many = build(many, WORK / f"{key}-bn", env)
        t_noop = build(many, WORK / f"{key}-bn", env)
        rows.append((label, t_one, t_many, t_noop, (t_many - t_one) / N * 1000))
    hub.stop()
    mode = os.environ.get("PREFECT_API_URL") or "ephemeral"
    print(f"| {N} small files (Prefect: {mode}) | 1-file build s | {N}-file build s | no-op rebuild s | per-file ms |")
    print("|---|---|---|---|---|")
    for label, t_one, t_many, t_noop, per in rows:
        print(f"| {label} | {t_one:.2f} | {t_many:.2f} | {t_noop:.2f} | {per:.3f} |")


if __name__ == "__main__":
    main()

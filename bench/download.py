"""Download figures for `make bench` (bench/suite.py calls `run`), each beside its baselines in the same run.

- One 128 MiB file on the Hub stand-in with a per-connection cap (4 MB/s, as CDNs and proxies cap one
  connection): `airlift build` as a Hub model and as a `url:` dataset, against
  `huggingface_hub.snapshot_download` and `curl`; upstream bytes (the stand-in's count) / file size.
- A dataset of 10,000 small files (a few KB each, uncapped) against `snapshot_download`; ms per file.

Every airlift figure is the real CLI (embedded persistent Prefect server, warmed), cold cache.
Standalone: .venv/bin/python bench/download.py (prints the rows).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from airlift.testing.hubserver import HubServer  # noqa: E402

BIG = int(os.environ.get("BENCH_DOWNLOAD_MIB", "128")) << 20
CAP = float(os.environ.get("BENCH_CONNECTION_CAP", str(4_000_000)))  # bytes/s per connection
SMALL = int(os.environ.get("BENCH_SMALL_FILES", "10000"))
TARGETS = {"download": 4.0, "upstream": 1.05, "small": 1.5}
PY = Path(sys.executable)

SNAPSHOT = (
    "import sys, time; from huggingface_hub import snapshot_download as s; "
    "s(sys.argv[1], repo_type=sys.argv[2], cache_dir=sys.argv[3])"
)

Timed = Callable[..., tuple[float, int]]


def _serve(conn) -> None:  # noqa: ANN001 - a multiprocessing Connection
    """The stand-in in a process of its own: the bench process stays small, so a child's peak RSS
    (which Linux carries over from the forking parent) is airlift's own, and the stand-in's threads
    do not share a GIL with anything timed."""
    hub = HubServer().start()
    conn.send(hub.url)
    while True:
        op, args = conn.recv()
        if op == "big":
            data = random.Random(128).randbytes(args)
            hub.add_repo("model", "bench/big", files={"model.safetensors": data, "config.json": b"{}\n"})
            conn.send(hub.add_file("big.bin", data))
        elif op == "many":
            hub.add_repo("dataset", "bench/many", files={f"data/part-{i:05d}.jsonl": random.Random(i).randbytes(2000 + i % 3000) for i in range(args)})
            conn.send(None)
        elif op == "faults":
            hub.set_faults(**args)
            conn.send(None)
        elif op == "reset":
            hub.reset_counters()
            conn.send(None)
        elif op == "counts":
            conn.send((hub.content_bytes, hub.peak_streams))
        else:
            hub.stop()
            conn.send(None)
            return


class _Remote:
    def __init__(self) -> None:
        self.conn, child = multiprocessing.get_context("fork").Pipe()
        self.proc = multiprocessing.get_context("fork").Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        self.url = self.conn.recv()

    def __call__(self, op: str, args: object = None) -> object:
        self.conn.send((op, args))
        return self.conn.recv()

    def stop(self) -> None:
        self("stop")
        self.proc.join(10)
Figure = Callable[..., None]


def _spec(path: Path, body: str) -> Path:
    path.write_text(f"name: dl\n{body}")
    return path


def run(results: list[dict], *, root: Path, timed: Timed, figure: Figure, env: Callable[[], dict[str, str]], airlift: str) -> None:
    """Append the download figures to `results` (through `figure`), timing each command with `timed`."""
    work = root / "download"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    hub = _Remote()
    hf = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ENABLE_HF_TRANSFER": "0"}
    try:
        url = hub("big", BIG)
        mib = BIG >> 20
        hub("faults", {"bytes_per_second": CAP})

        snap = timed([PY.as_posix(), "-c", SNAPSHOT, "bench/big", "model", str(work / "hf-cache")], extra=hf)[0]
        shutil.rmtree(work / "hf-cache")
        curl = timed(["curl", "-sSf", "-o", str(work / "curl.bin"), url])[0]
        (work / "curl.bin").unlink()

        for kind, body, baseline, baseline_s in (
            ("Hub model", "models:\n  - hf: bench/big\n", "snapshot_download", snap),
            ("URL", f"datasets:\n  - url: {url}\n", "curl", curl),
        ):
            key = kind.split()[0].lower()
            spec = _spec(work / f"{key}.yaml", body)
            hub("reset")
            seconds, rss = timed([airlift, "build", str(spec), "--out", str(work / f"{key}-bundle")],
                                 extra={**hf, "AIRLIFT_CACHE": str(work / f"cache-{key}")}, sync=True)
            sent, peak = hub("counts")
            upstream = sent / (BIG + (3 if key == "hub" else 0))
            figure(results, id=f"download_{key}", size_gib=0,
                   label=f"download, one {mib} MiB file as a {kind}, {CAP / 1e6:g} MB/s per connection "
                         f"({peak} connections at once, peak RSS {rss} MiB)",
                   seconds=seconds, baseline=baseline, baseline_s=baseline_s, ratio=baseline_s / seconds,
                   target=TARGETS["download"], better="higher")
            figure(results, id=f"upstream_{key}", size_gib=0, label=f"bytes read from upstream / file size, {kind}",
                   seconds=None, baseline="", baseline_s=None, ratio=upstream, target=TARGETS["upstream"], better="lower", unit="x")
            shutil.rmtree(work / f"cache-{key}")
            shutil.rmtree(work / f"{key}-bundle")
        hub("faults", {})
        hub("many", SMALL)
        snap = timed([PY.as_posix(), "-c", SNAPSHOT, "bench/many", "dataset", str(work / "hf-many")], extra=hf)[0]
        shutil.rmtree(work / "hf-many")
        spec = _spec(work / "many.yaml", "datasets:\n  - hf: bench/many\n")
        seconds, _ = timed([airlift, "build", str(spec), "--out", str(work / "many-bundle")],
                           extra={**hf, "AIRLIFT_CACHE": str(work / "cache-many")}, sync=True)
        figure(results, id="small_files", size_gib=0,
               label=f"{SMALL} small files as a Hub dataset ({seconds / SMALL * 1000:.2f} ms/file; "
                     f"snapshot_download {snap / SMALL * 1000:.2f} ms/file)",
               seconds=seconds, baseline="snapshot_download", baseline_s=snap, ratio=snap / seconds,
               target=TARGETS["small"], better="higher")
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:  # pragma: no cover - by hand
    import suite  # bench/suite.py, beside this file

    results: list[dict] = []
    suite.ROOT.mkdir(parents=True, exist_ok=True)
    suite.timed([suite.AIRLIFT, "server", "start"])
    try:
        started = time.monotonic()
        run(results, root=suite.ROOT, timed=suite.timed, figure=suite.figure, env=suite.env, airlift=suite.AIRLIFT)
        print(f"[bench] download figures in {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        subprocess.run([suite.AIRLIFT, "server", "stop"], env=suite.env(), capture_output=True)


if __name__ == "__main__":
    main()

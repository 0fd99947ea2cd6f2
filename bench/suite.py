"""The benchmark suite behind `make bench`: every figure beside its by-hand baseline, in one run.

Per size (GiB of random data in 8 files): build vs `tar czf` + `sha256sum`; no-op rebuild; verify vs
`sha256sum -c`; transfer to a directory vs `rsync -a`; peak RSS of each airlift command. Once: the
start-up figures, a flow-run command (`airlift verify` of a tiny bundle) and `airlift inspect`, each
vs `python -c "import prefect"`; and the download figures (bench/download.py: one 128 MiB file over a
per-connection cap vs snapshot_download and curl, 10,000 small files vs snapshot_download). Every airlift command is the real CLI with its default, the embedded
persistent Prefect server under AIRLIFT_HOME (started and warmed first; its start is not timed).

Writes $BENCH_DIR/results.json for bench/report.py. Usage: .venv/bin/python bench/suite.py [GIB ...]
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import download  # bench/download.py, beside this file

REPO = Path(__file__).resolve().parent.parent
PY = Path(sys.executable)
AIRLIFT = str(PY.with_name("airlift"))
ROOT = Path(os.environ.get("BENCH_DIR", "/tmp/airlift-bench"))
FILES = int(os.environ.get("BENCH_FILES", "8"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
TARGETS = {  # figure -> (comparison, target); "x" = times faster than the baseline, "of" = times the baseline
    "build": {1: 8.0, 10: 12.0}, "verify": {1: 1.5, 10: 4.0}, "transfer": {1: 1.0, 10: 1.5},
    "noop": 3.0, "rss": 300.0, "flow_cli": 2.5, "inspect": 1.2, "noop_warm": 1.5,
}
COLD = {"AIRLIFT_WARM_RUNNER": "0"}  # a process of its own: wait4's ru_maxrss is the command's own peak


def env() -> dict[str, str]:
    """The CLI's default environment (no PREFECT_API_URL, so the embedded server under AIRLIFT_HOME), with
    every command in a process of its own: a warm runner's client (airlift/cli/warm.py) is a few MB, and
    wait4 would report its peak, not the worker's. `fixed_cost` measures the warm runner beside that."""
    out = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "AIRLIFT_PREFECT", "PREFECT_HOME")}
    out.update(AIRLIFT_HOME=str(ROOT / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", **COLD)
    return out


def timed(argv: list[str], *, cwd: Path | None = None, extra: dict[str, str] | None = None, sync: bool = False) -> tuple[float, int]:
    """Run argv to completion: (wall seconds, peak RSS of that process in MiB, from wait4's ru_maxrss).

    ru_maxrss covers the process itself (and children it waited for), not the detached Prefect server.
    """
    os.sync()
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env={**env(), **(extra or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if sync:
        os.sync()
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({proc.returncode}):\n{err.decode(errors='replace')[-3000:]}")
    return elapsed, usage.ru_maxrss // 1024


def shell(command: str, **kwargs: object) -> float:
    return timed(["bash", "-c", f"set -euo pipefail; {command}"], **kwargs)[0]  # type: ignore[arg-type]


def warm(directory: Path) -> None:
    """Read every file under `directory` once (untimed), so each figure and its baseline start alike:
    with the data in the page cache, whatever the step before them wrote and evicted."""
    subprocess.run(f"find {directory} -type f -exec cat {{}} + > /dev/null", shell=True, check=True)


def median_of(argv: list[str], count: int = REPEAT, **kwargs: object) -> float:
    return statistics.median(timed(argv, **kwargs)[0] for _ in range(count))  # type: ignore[arg-type]


def figure(results: list[dict], **row: object) -> None:
    results.append(row)
    print(f"[bench] {row}", file=sys.stderr, flush=True)


def startup(results: list[dict]) -> None:
    """The fixed per-command cost: a tiny bundle's flow run and inspect vs importing Prefect."""
    work = ROOT / "tiny"
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    (work / "data" / "a.txt").write_text("tiny\n")
    (work / "spec.yaml").write_text(f"name: tiny\ndatasets:\n  - path: {work / 'data'}\n")
    cache = {"AIRLIFT_CACHE": str(work / "cache")}
    timed([AIRLIFT, "server", "start"])
    timed([AIRLIFT, "build", str(work / "spec.yaml"), "--out", str(work / "bundle")], extra=cache)
    for _ in range(2):  # warm: .pyc files, the server's database, the page cache
        timed([AIRLIFT, "verify", str(work / "bundle")])
        timed([PY.as_posix(), "-c", "import prefect"])
    prefect_s, verify_s, inspect_s = [], [], []
    for _ in range(REPEAT):  # interleaved, so a burst of load from elsewhere hits all three alike
        prefect_s.append(timed([PY.as_posix(), "-c", "import prefect"])[0])
        verify_s.append(timed([AIRLIFT, "verify", str(work / "bundle")])[0])
        inspect_s.append(timed([AIRLIFT, "inspect", str(work / "bundle")])[0])
    base = statistics.median(prefect_s)
    flow, insp = statistics.median(verify_s), statistics.median(inspect_s)
    figure(results, id="flow_cli", size_gib=0, label="CLI flow run (`airlift verify` of a tiny bundle)", seconds=flow,
           baseline='python -c "import prefect"', baseline_s=base, ratio=flow / base, target=TARGETS["flow_cli"], better="lower")
    figure(results, id="inspect", size_gib=0, label="`airlift inspect` of a tiny bundle", seconds=insp,
           baseline='python -c "import prefect"', baseline_s=base, ratio=insp / base, target=TARGETS["inspect"], better="lower")


def fixed_cost(results: list[dict]) -> None:
    """A no-op rebuild of a tiny bundle through the warm runner (the default), beside the same command in a
    process of its own (AIRLIFT_WARM_RUNNER=0), interleaved. Run after `startup`, whose bundle it reuses."""
    work = ROOT / "tiny"
    spec, bundle, cache = work / "spec.yaml", work / "bundle", {"AIRLIFT_CACHE": str(work / "cache")}
    argv = [AIRLIFT, "build", str(spec), "--out", str(bundle)]
    default = {"AIRLIFT_WARM_RUNNER": "1", **cache}
    log = ROOT / "home" / "runner" / "runner.log"

    def served() -> int:  # the runner logs one line per command it forked a worker for
        return log.read_text().count(" served pid ") if log.exists() else 0

    deadline = time.monotonic() + 120
    while True:  # the first call starts this environment's runner, detached; wait until one serves
        before = served()
        timed(argv, extra=default)
        if served() > before:
            break
        if time.monotonic() > deadline:
            sys.exit(f"bench: no warm runner served a command (see {log})")
        time.sleep(1.0)
    warm_s, cold_s = [], []
    before = served()
    for _ in range(REPEAT):
        warm_s.append(timed(argv, extra=default)[0])
        cold_s.append(timed(argv, extra={**COLD, **cache})[0])
    if served() - before != REPEAT:  # a refused or cold sample must not pass for a warm one
        sys.exit(f"bench: {served() - before} of {REPEAT} warm samples ran in the runner (see {log})")
    warm, cold = statistics.median(warm_s), statistics.median(cold_s)
    figure(results, id="noop_warm", size_gib=0, label=f"no-op rebuild of a tiny bundle, warm runner (median of {REPEAT})", seconds=warm,
           baseline="a process of its own", baseline_s=cold, ratio=warm, target=TARGETS["noop_warm"], better="lower", unit="s")


def one_size(results: list[dict], gib: int) -> None:
    work = ROOT / f"size-{gib}"
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    data.mkdir(parents=True)
    per = (gib << 30) // FILES
    for i in range(FILES):
        subprocess.run(f"head -c {per} /dev/urandom > {data}/shard-{i:02d}.bin", shell=True, check=True)
    spec = work / "spec.yaml"
    spec.write_text(f"name: bench\ndatasets:\n  - path: {data}\n")
    bundle = work / "bundle"
    cache = {"AIRLIFT_CACHE": str(work / "cache")}
    try:
        warm(data)
        tar = shell(f"tar czf {work}/data.tgz -C {work} data && sha256sum {work}/data.tgz > /dev/null", sync=True)
        (work / "data.tgz").unlink()
        warm(data)
        build, rss_build = timed([AIRLIFT, "build", str(spec), "--out", str(bundle)], extra=cache, sync=True)
        figure(results, id="build", size_gib=gib, label=f"build, {gib} GiB (cold cache)", seconds=build, baseline="tar czf + sha256sum",
               baseline_s=tar, ratio=tar / build, target=TARGETS["build"][gib if gib in (1, 10) else 10], better="higher")
        noop = median_of([AIRLIFT, "build", str(spec), "--out", str(bundle)], count=3, extra=cache)
        figure(results, id="noop", size_gib=gib, label=f"no-op rebuild, {gib} GiB (median of 3)", seconds=noop, baseline="",
               baseline_s=None, ratio=noop, target=TARGETS["noop"], better="lower", unit="s")

        warm(bundle / "blobs")
        sums = shell("sha256sum --quiet -c SHA256SUMS", cwd=bundle)
        warm(bundle / "blobs")
        verify, rss_verify = timed([AIRLIFT, "verify", str(bundle)])
        figure(results, id="verify", size_gib=gib, label=f"verify, {gib} GiB", seconds=verify, baseline="sha256sum -c",
               baseline_s=sums, ratio=sums / verify, target=TARGETS["verify"][gib if gib in (1, 10) else 10], better="higher")

        warm(bundle / "blobs")
        rsync = shell(f"rsync -a {bundle}/ {work}/rsync-dest/", sync=True)
        shutil.rmtree(work / "rsync-dest")
        warm(bundle / "blobs")
        transfer, rss_transfer = timed([AIRLIFT, "transfer", str(bundle), "--to", str(work / "dest")], sync=True)
        figure(results, id="transfer", size_gib=gib, label=f"transfer to a directory, {gib} GiB", seconds=transfer, baseline="rsync -a",
               baseline_s=rsync, ratio=rsync / transfer, target=TARGETS["transfer"][gib if gib in (1, 10) else 10], better="higher")
        rss = max(rss_build, rss_verify, rss_transfer)
        figure(results, id="rss", size_gib=gib, label=f"peak RSS, {gib} GiB (build {rss_build}, verify {rss_verify}, transfer {rss_transfer} MiB)",
               seconds=None, baseline="", baseline_s=None, ratio=float(rss), target=TARGETS["rss"], better="lower", unit="MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    fs = subprocess.run(["df", "-T", str(ROOT)], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    prefect = subprocess.run([PY.as_posix(), "-c", "import prefect; print(prefect.__version__)"], capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem / 2**20), "filesystem": fs, "kernel": platform.release(),
            "python": platform.python_version(), "prefect": prefect, "load_before": os.getloadavg()[0]}


def main() -> None:
    sizes = [int(s) for s in sys.argv[1:]] or [1]
    ROOT.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    info = machine()
    started = time.time()
    try:
        startup(results)
        fixed_cost(results)
        download.run(results, root=ROOT, timed=timed, figure=figure, env=env, airlift=AIRLIFT)
        for gib in sizes:
            one_size(results, gib)
    finally:
        subprocess.run([AIRLIFT, "server", "stop"], env=env(), capture_output=True)
    info["load_after"] = os.getloadavg()[0]
    out = {"date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(started)), "minutes": round((time.time() - started) / 60, 1),
           "sizes_gib": sizes, "machine": info, "figures": results}
    (ROOT / "results.json").write_text(json.dumps(out, indent=1))
    print(f"[bench] wrote {ROOT / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()

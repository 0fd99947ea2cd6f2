"""kill -9 trials that land: each kill hits a unit of work while it is under way, and the rerun completes.

A kill at a random time may land in Prefect's start-up or after the last write, and prove nothing. Here
each trial picks (seeded) a phase of the command and a point inside it, and the process stops itself
there (AIRLIFT_PHASE_STOP, airlift/util/phase.py) with the unit's temp files, partial uploads and
registry sessions as a crash leaves them; then it gets SIGKILL. The phase log must show that unit still
open, and each trial checks evidence on disk or at the service that the work was cut mid-way.

CI runs AIRLIFT_KILL_TRIALS (default 3: every phase of every command once); the full run is
`AIRLIFT_KILL_TRIALS=20 AIRLIFT_KILL_REPORT=/tmp/kills.jsonl make test PYTEST_ARGS="tests/test_kill_trials.py"`,
and docs/reliability.md shows its histogram.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import httpx
import pytest

from airlift.layouts.shared_root import marker_path
from airlift.util.phase import LOG_ENV, STOP_ENV, open_at_stop
from tests.conftest import AIRLIFT, sha256sum_check, verified
from tests.fixtures import add_dataset, add_model, pseudo_random
from tests.processes import all_threads_stopped

TRIALS = int(os.environ.get("AIRLIFT_KILL_TRIALS", "3"))


def _blob_bytes(store: Path) -> int:
    directory = store / "blobs" / "sha256"
    return sum(p.stat().st_size for p in directory.iterdir()) if directory.is_dir() else 0


def _plan(phases: dict[str, int], seed: int) -> list[tuple[str, int]]:
    """TRIALS (phase, point) pairs: the phases in turn, each at a seeded point 1..most."""
    rng = random.Random(seed)
    names = sorted(phases)
    return [(names[i % len(names)], rng.randint(1, phases[names[i % len(names)]])) for i in range(TRIALS)]


def _kill_in(ws, args: list[str], *, phase: str, point: int, tag: str, extra_env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Run `airlift ARGS` until it stops at `point` of `phase`, SIGKILL it there; the units then open."""
    log = ws.root / f"phases-{tag}.log"
    # A process of its own (no warm runner): the stop and the kill are observed and sent by its pid.
    env = {**ws.env, **(extra_env or {}), LOG_ENV: str(log), STOP_ENV: f"{phase}:{point}", "AIRLIFT_WARM_RUNNER": "0"}
    with open(ws.root / f"out-{tag}.log", "w+") as out:
        proc = subprocess.Popen([AIRLIFT, *args], cwd=ws.root, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not all_threads_stopped(proc.pid):
            if proc.poll() is not None:
                out.seek(0)
                pytest.fail(f"airlift {args[0]} exited {proc.returncode} before point {point} of {phase}: the kill would miss\n{out.read()[-3000:]}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"airlift {args[0]} never reached point {point} of {phase}")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    log_text = log.read_text()
    stopped, open_units = open_at_stop(log_text)
    assert stopped == phase and any(name == phase for name, _ in open_units), (phase, open_units)
    if report := os.environ.get("AIRLIFT_KILL_REPORT"):
        stop_line = next(line for line in log_text.splitlines() if line.startswith("stop "))
        with open(report, "a") as handle:
            handle.write(json.dumps({"command": args[0], "phase": phase, "point": point, "at": stop_line.split(" ", 5)[-1], "open": open_units}) + "\n")
    return open_units


def test_kill_9_in_every_phase_of_build(ws, hub):
    files = add_model(hub, "acme/kill-model", weights_size=3_000_000, seed=301)
    data = add_dataset(hub, "acme/kill-data", seed=302)
    total = sum(map(len, files.values())) + sum(map(len, data.values()))
    spec = ws.write("kb.yaml", "name: kb\nmodels:\n  - hf: acme/kill-model\ndatasets:\n  - hf: acme/kill-data\n")
    # resolve: one point per artifact; download: a point per network read that leaves a file unfinished;
    # assemble: one per blob linked into the bundle, but the last.
    for trial, (phase, point) in enumerate(_plan({"resolve": 2, "download": 40, "assemble": 6}, seed=4242)):
        cache = ws.root / f"cache-{trial}"
        env = {"AIRLIFT_CACHE": str(cache)}
        _kill_in(ws, ["build", str(spec), "--out", f"b{trial}"], phase=phase, point=point, tag=f"b{trial}", extra_env=env)
        complete = _blob_bytes(cache)
        if phase == "download":
            assert 0 < complete + _partial_bytes(cache) < total, "the kill must land with the download part-way"
        if phase == "assemble":
            linked = list((ws.root / f"b{trial}" / "blobs" / "sha256").iterdir())
            assert linked and not (ws.root / f"b{trial}" / "manifest.json").exists(), "the kill must land with the bundle part-assembled"
        hub.reset_counters()
        ws.run("build", str(spec), "--out", f"b{trial}", extra_env=env)
        assert hub.content_bytes <= total - complete, f"trial {trial} ({phase}): refetched {hub.content_bytes} with {complete} of {total} stored"
        assert sha256sum_check(ws.root / f"b{trial}").returncode == 0
        ws.run("verify", f"b{trial}", extra_env=env)
        hub.reset_counters()
        ws.run("build", str(spec), "--out", f"b{trial}", extra_env=env)
        assert hub.content_bytes == 0


def test_kill_9_mid_range_refetches_only_unfinished_ranges(ws, hub):
    """A kill inside a ranged download (two connections on one 40 MiB file, ten 4 MiB ranges): the stop
    lands inside a range that is part-way, and the rerun fetches only the ranges not recorded done."""
    files = add_model(hub, "acme/kill-ranged", weights_size=40 << 20, seed=601)
    total = sum(map(len, files.values()))
    range_size = 4 << 20
    spec = ws.write("kr.yaml", "name: kr\nmodels:\n  - hf: acme/kill-ranged\n")
    # range: a point per network read (64 KiB or less) that leaves a range unfinished, ~64+ per range.
    done_counts: list[int] = []
    for trial, (phase, point) in enumerate(_plan({"range": 450}, seed=6060)):
        point = max(point, 130)  # past the first two ranges' worth of reads, so some range is done
        cache = ws.root / f"cache-r{trial}"
        env = {"AIRLIFT_CACHE": str(cache), "AIRLIFT_MAX_PER_HOST": "2"}
        _kill_in(ws, ["build", str(spec), "--out", f"r{trial}"], phase=phase, point=point, tag=f"r{trial}", extra_env=env)
        log_text = (ws.root / f"phases-r{trial}.log").read_text()
        stop = next(line for line in log_text.splitlines() if line.startswith("stop range "))
        got, _, length = stop.rsplit(" ", 1)[-1].partition("/")
        assert 0 < int(got) < int(length) <= range_size, f"the kill must land mid-range: {stop}"
        records = list(cache.rglob("*.ranges"))  # none yet when the kill came before the first record
        done = json.loads(records[0].read_text())["done"] if records else []
        assert len(done) < 10, "the kill must land with ranges left to fetch"
        done_counts.append(len(done))
        hub.reset_counters()
        ws.run("build", str(spec), "--out", f"r{trial}", extra_env=env)
        weights_left = (40 << 20) - len(done) * range_size
        # Only the ranges not recorded done crossed the wire again (plus the small files, if they were not in).
        assert weights_left <= hub.content_bytes <= weights_left + total - (40 << 20), (trial, done, hub.content_bytes)
        assert sha256sum_check(ws.root / f"r{trial}").returncode == 0
        assert not list(cache.rglob("*.ranges")) and not list(cache.rglob("*-r.part"))
        if report := os.environ.get("AIRLIFT_KILL_REPORT"):
            with open(report, "a") as handle:
                handle.write(json.dumps({"command": "build", "phase": "range", "point": point, "ranges_done": len(done), "refetched": hub.content_bytes}) + "\n")
    assert any(done_counts), f"no trial landed with a range recorded done: {done_counts}"


def _partial_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file() and "blobs" not in p.parts and p.suffix in (".part", ".tmp", ".partial"))


def test_kill_9_in_every_phase_of_transfer(ws):
    src = ws.root / "data"
    src.mkdir()
    for i in range(12):  # 10 MB each: two 4 MiB copy steps leave each file unfinished
        (src / f"shard-{i:02d}.bin").write_bytes(pseudo_random(10_000_000, 400 + i))
    ws.run("build", str(ws.write("t.yaml", f"name: t\ndatasets:\n  - path: {src}\n")), "--out", "bundle")
    for trial, (phase, point) in enumerate(_plan({"copy": 22}, seed=777)):
        dest = ws.root / f"dest-{trial}"
        _kill_in(ws, ["transfer", "bundle", "--to", str(dest)], phase=phase, point=point, tag=f"t{trial}")
        assert list(dest.glob(".tmp/*.tmp")), "the kill must land mid-copy, with a temp file written part-way"
        present = len(list((dest / "blobs" / "sha256").iterdir())) if (dest / "blobs" / "sha256").is_dir() else 0
        out = ws.json("transfer", "bundle", "--to", str(dest))
        assert out["blobs_present"] == present, (present, out)
        verified(dest)
        assert not list(dest.glob(".tmp/*.tmp")), "no temp file may survive a completed transfer"


def test_kill_9_in_every_phase_of_ingest(ws, hub, s3_endpoint, upstream, services):
    add_model(hub, "acme/kill-ingest-model", weights_size=12_000_000, seed=501)  # 3 parts of 5 MiB
    hub.add_repo("dataset", "acme/kill-ingest-data", files={f"p{i}.bin": pseudo_random(400_000, 510 + i) for i in range(10)})
    spec = ws.write("ki.yaml", f"name: ki\nmodels:\n  - hf: acme/kill-ingest-model\ndatasets:\n  - hf: acme/kill-ingest-data\nimages:\n  - {upstream.app_a}\n")
    ws.run("build", str(spec), "--out", "bundle", extra_env={"DOCKER_HOST": upstream.docker_host})
    image = json.loads((ws.root / "bundle" / "manifest.json").read_text())
    digest = next(a["source"]["digest"] for a in image["artifacts"] if a["kind"] == "image")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    airgap = services["AIRLIFT_AIRGAP_REGISTRY"]
    env = {"AIRLIFT_S3_PART_SIZE": "5MiB"}
    # upload: a point per read of a part's body; push: one per 1 MiB piece of a layer PATCH that leaves
    # the layer unfinished (the 3 MiB base has two); materialize: one per file placed, but an artifact's last.
    for trial, (phase, point) in enumerate(_plan({"upload": 60, "push": 2, "materialize": 10}, seed=9090)):
        bucket, prefix = f"kill-{uuid.uuid4().hex[:10]}", f"kill{uuid.uuid4().hex[:8]}"
        root = ws.root / f"root-{trial}"
        site = ws.write(
            f"site-{trial}.yaml",
            f"s3: {{endpoint_url: '{s3_endpoint}', bucket: {bucket}, prefix: p}}\nshared_root: {root}\nregistry: {{url: {airgap}/{prefix}, insecure: true}}\n",
        )
        open_units = _kill_in(ws, ["ingest", "bundle", "--site", str(site)], phase=phase, point=point, tag=f"i{trial}", extra_env=env)
        if phase == "upload":
            pending = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            assert pending, "the kill must land with a multipart upload begun and unfinished"
        if phase == "materialize":
            cut = next(subject for name, subject in open_units if name == "materialize")
            placed = list((root / "hf" / "hub").glob(f"*--{cut.rsplit('/', 1)[-1]}/snapshots/*/*"))
            assert placed and not marker_path(root, cut).exists(), "the kill must land with an artifact part-placed, unmarked"
        ws.run("ingest", "bundle", "--site", str(site), extra_env=env)
        keys = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
        assert len(keys) == 14 and not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), keys
        again = ws.json("ingest", "bundle", "--site", str(site), extra_env=env)
        assert (again["s3_uploaded"], again["materialized"], again["images_pushed"], again["images_present"]) == (0, 0, 0, 1), again
        pushed = httpx.head(
            f"http://{airgap}/v2/{prefix}/{upstream.app_a.split('/', 1)[1].rsplit(':', 1)[0]}/manifests/{digest}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"},
        )
        assert pushed.status_code == 200 and pushed.headers["docker-content-digest"] == digest
        probe = "from huggingface_hub import snapshot_download as s; import pathlib; p=pathlib.Path(s('acme/kill-ingest-model')); print(len((p/'model.safetensors').read_bytes()))"
        offline = {k: v for k, v in ws.env.items() if k != "HF_ENDPOINT"} | {"HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1"}
        got = subprocess.run([str(Path(AIRLIFT).parent / "python"), "-c", probe], env=offline, capture_output=True, text=True)
        assert got.stdout.strip() == "12000000", got.stderr

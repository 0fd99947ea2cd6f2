"""The hostile-input corpus: each attack on the trust boundary, tried as an attacker would.

Every test asserts the exit code, the message, and that nothing was written, run or served outside
its place. Real clients check the results where one applies (git, a real Slurm job, curl).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import AIRLIFT

CANARY = "AIRLIFT_CANARY_SECRET_do_not_leak"


def run(tmp_path: Path, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRLIFT_CACHE": str(tmp_path / "cache"), **(extra_env or {})}
    return subprocess.run([AIRLIFT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def assert_refused(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- spec values never become command options or shell words ----------------------------------------
@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"git": "--upload-pack=touch {pwned}"}, "repos[0].git"),
        ({"git": "ext::sh -c touch% {pwned}"}, "repos[0].git"),
        ({"git": "https://example.invalid/x.git", "ref": "--upload-pack=touch {pwned}"}, "repos[0].ref"),
    ],
)
def test_git_options_in_a_spec_are_refused_before_git_runs(tmp_path, entry, field):
    pwned = tmp_path / "pwned"
    entry = {k: v.format(pwned=pwned) for k, v in entry.items()}
    (tmp_path / "spec.yaml").write_text(json.dumps({"name": "evil", "repos": [entry]}))
    for command in ("plan", "build"):
        args = [command, "spec.yaml"] + (["--out", "bundle"] if command == "build" else [])
        assert_refused(run(tmp_path, *args), 2, "spec.yaml", field)
    assert not pwned.exists(), "a spec value reached git as an option"
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(
    "requirement",
    ["--index-url=http://127.0.0.1:9/simple", "-r /etc/passwd", "six @ https://127.0.0.1:9/six.whl", "six; os.system('x')"],
)
def test_wheel_requirements_must_be_pep_508(tmp_path, requirement):
    (tmp_path / "spec.yaml").write_text(json.dumps({"name": "evil", "wheels": [{"requirements": [requirement]}]}))
    assert_refused(run(tmp_path, "plan", "spec.yaml"), 2, "spec.yaml", "wheels[0].requirements")


def test_a_requirements_file_with_pip_options_is_refused(tmp_path):
    (tmp_path / "reqs.txt").write_text("six==1.16.0\n--extra-index-url http://127.0.0.1:9/simple\n")
    (tmp_path / "spec.yaml").write_text(json.dumps({"name": "evil", "wheels": [{"requirements": str(tmp_path / "reqs.txt")}]}))
    assert_refused(run(tmp_path, "plan", "spec.yaml"), 2, "reqs.txt:2", "pip options are not allowed")


@pytest.mark.parametrize(
    ("job_patch", "field"),
    [
        ({"env": {"A=1 B": "x"}}, "jobs[0].env"),
        ({"env": {"OK": "line\nexport EVIL=1"}}, "jobs[0].env"),
        ({"resources": {"mem": "1G\n#SBATCH --uid=0"}}, "jobs[0].resources.mem"),
        ({"resources": {"time": "1:00:00 --wrap=id"}}, "jobs[0].resources.time"),
        ({"name": "-x"}, "jobs[0].name"),
    ],
)
def test_job_fields_that_would_reach_a_script_are_validated(tmp_path, job_patch, field):
    job = {"name": "j", "image": "busybox:1", "command": ["true"], **job_patch}
    (tmp_path / "spec.yaml").write_text(json.dumps({"name": "evil", "images": ["busybox:1"], "jobs": [job]}))
    assert_refused(run(tmp_path, "plan", "spec.yaml"), 2, "spec.yaml", field)


def test_hub_revision_cannot_name_a_path(tmp_path):
    (tmp_path / "spec.yaml").write_text(json.dumps({"name": "evil", "models": [{"hf": "acme/m", "revision": "../../../../tmp/x"}]}))
    assert_refused(run(tmp_path, "plan", "spec.yaml"), 2, "spec.yaml", "models[0].revision")


# -- jobs get a minimal, explicit environment ---------------------------------------------------------
def test_a_real_slurm_job_sees_no_submitter_variable_beyond_the_allow_list(ws):
    printer = ["sh", "-c", "env | sort > $AIRLIFT_ROOT/job.env; echo \"$MSG\" > $AIRLIFT_ROOT/msg"]
    spec = ws.write("envjob.yaml", json.dumps({
        "name": "envjob",
        "jobs": [{"name": "show", "image": "busybox:1", "command": printer, "env": {"MSG": "it's $(touch /tmp/pwned-by-msg) `id`"}}],
        "images": ["busybox:1"],
    }))
    # The image is never pulled: the runtime is a plain process. Build records the spec in the manifest.
    root = ws.root / "root"
    site = ws.write("site.yaml", f"shared_root: {root}\nslurm: {{partition: batch, container_runtime: none}}\n")
    bundle = _bundle_with_spec(ws.root / "bundle", json.loads(spec.read_text()))
    secrets = {"AWS_SECRET_ACCESS_KEY": CANARY, "HF_TOKEN": CANARY, "NGC_API_KEY": CANARY, "HTTPS_PROXY": "http://leak:1", "LD_PRELOAD": "/leak.so"}
    ws.run("submit", str(bundle), "--site", str(site), "--wait", timeout=300, extra_env=secrets)
    seen = dict(line.split("=", 1) for line in (root / "job.env").read_text().splitlines() if "=" in line)
    assert CANARY not in (root / "job.env").read_text()
    allowed = {"PATH", "HOME", "LANG", "TZ", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
               "WANDB_MODE", "AIRLIFT_ROOT", "MSG", "PWD", "SHLVL", "_", "OLDPWD"}
    extra = {k for k in seen if k not in allowed and not k.startswith("SLURM_")}
    assert not extra, f"job saw variables beyond the allow-list: {sorted(extra)}"
    assert seen["HF_HUB_OFFLINE"] == "1" and seen["AIRLIFT_ROOT"] == str(root)
    assert (root / "msg").read_text().strip() == "it's $(touch /tmp/pwned-by-msg) `id`"
    assert not Path("/tmp/pwned-by-msg").exists()
    script = (root / ".airlift" / "jobs" / "envjob" / "show.sbatch").read_text()
    assert "#SBATCH --export=NONE" in script and CANARY not in script


def _bundle_with_spec(path: Path, spec: dict) -> Path:
    """A bundle with no artifacts whose manifest carries `spec` (jobs with runtime none need no image)."""
    from airlift.bundle.layout import Bundle
    from airlift.bundle.manifest import Manifest, now_iso

    bundle = Bundle(path)
    bundle.store.ensure_dirs()
    bundle.write_manifest(Manifest(name=spec["name"], created=now_iso(), artifacts=[], spec=spec))
    return path



# -- volumes are hostile until checked ---------------------------------------------------------------
def test_unpack_stops_a_zstd_bomb_at_its_declared_size_and_recovers_the_rest(tmp_path):
    import hashlib

    import zstandard

    good = os.urandom(50_000)
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (256 << 20))  # 256 MiB of zeros in a few KiB
    volume = good + bomb
    vols = tmp_path / "vols"
    vols.mkdir()
    (vols / "vol-00001.bin").write_bytes(volume)
    good_sha = hashlib.sha256(good).hexdigest()
    bomb_sha = "b" * 64
    index = {
        "schema_version": 1, "volume_size": len(volume),
        "volumes": [{"name": "vol-00001.bin", "size": len(volume), "sha256": hashlib.sha256(volume).hexdigest()}],
        "blobs": {
            good_sha: {"size": len(good), "codec": "raw", "segments": [[0, 0, len(good)]]},
            bomb_sha: {"size": 1000, "codec": "zstd", "segments": [[0, len(good), len(bomb)]]},
        },
    }
    (vols / "index.json").write_text(json.dumps(index))
    proc = run(tmp_path, "unpack", "vols", "--out", "out")
    assert proc.returncode == 1, proc.stderr
    assert f"LOST blob {bomb_sha}" in proc.stdout and "beyond its declared 1000 bytes" in proc.stdout, proc.stdout
    assert "1 blobs recovered" in proc.stdout
    assert (tmp_path / "out" / "blobs" / "sha256" / good_sha).read_bytes() == good
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written < 10 << 20, f"unpack wrote {written} bytes for a bomb declared as 1000"


# -- credentials in URLs never persist ----------------------------------------------------------------
def test_url_userinfo_and_query_tokens_reach_no_manifest_record_log_or_result(ws, hub, prefect_server):
    from tests.fixtures import pseudo_random

    data = pseudo_random(120_000, 77)
    plain = hub.add_file("secret-file.bin", data)
    scheme, rest = plain.split("://", 1)
    url = f"{scheme}://svc-user:{CANARY}@{rest}?X-Amz-Signature={CANARY}&token={CANARY}"
    spec = ws.write("creds.yaml", f"name: creds\ndatasets:\n  - url: '{url}'\n    name: secret-file.bin\n")
    built = ws.run("build", str(spec), "--out", "bundle", "-v")
    bundle = ws.root / "bundle"
    assert (bundle / "blobs" / "sha256" / __import__("hashlib").sha256(data).hexdigest()).read_bytes() == data
    manifest = (bundle / "manifest.json").read_text()
    assert CANARY not in manifest and "svc-user" not in manifest
    assert f"{scheme}://{rest}" in manifest, "the manifest keeps the redacted URL"
    assert CANARY not in built.stdout + built.stderr
    for root in (ws.root / "cache", Path(prefect_server["home"])):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 200_000_000:  # the Prefect database and its logs included
                assert CANARY.encode() not in path.read_bytes(), f"{path} holds the URL's credentials"
    inspected = ws.run("inspect", "bundle", "--json").stdout
    assert CANARY not in inspected

"""The hostile-input corpus: each attack on the trust boundary, tried as an attacker would.

Every test asserts the exit code, the message, and that nothing was written, run or served outside
its place. Real clients check the results where one applies (git, a real Slurm job, curl).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
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
               "WANDB_MODE", "AIRLIFT_ROOT", "MSG", "PWD", "SHLVL", "_", "OLDPWD",
               # v1.1: offline pip/uv and W&B, and where the run's outputs go (contract: Jobs)
               "PIP_NO_INDEX", "PIP_FIND_LINKS", "UV_OFFLINE", "UV_FIND_LINKS", "AIRLIFT_OUTPUT", "WANDB_DIR"}
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


# -- serve hands out regular files inside its root only ---------------------------------------------
def _built(ws, hub, name: str, *, seed: int) -> Path:
    from tests.fixtures import add_model

    add_model(hub, f"acme/{name}", weights_size=150_000, seed=seed)
    ws.run("build", str(ws.write(f"{name}.yaml", f"name: {name}\nmodels:\n  - hf: acme/{name}\n")), "--out", name)
    return ws.root / name


def _curl(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url], capture_output=True, text=True, timeout=30)


def test_serve_never_follows_a_symlink_out_of_the_bundle_or_the_shared_root(ws, hub):
    from tests.test_serve import serving

    bundle = _built(ws, hub, "serve-evil", seed=901)
    secret = ws.root / "outside-secret.txt"
    secret.write_text(CANARY)
    manifest = json.loads((bundle / "manifest.json").read_text())
    config = next(f for f in manifest["artifacts"][0]["files"] if f["path"] == "config.json")
    blob = bundle / "blobs" / "sha256" / config["sha256"]
    blob.unlink()
    blob.symlink_to(secret)
    with serving(ws, bundle) as url:
        got = _curl(f"{url}/files/models/acme/serve-evil/config.json")
        hub_got = _curl(f"{url}/acme/serve-evil/resolve/main/config.json")
        healthy = _curl(f"{url}/files/models/acme/serve-evil/tokenizer.json")
    assert CANARY not in got.stdout and got.stdout.endswith("404"), got.stdout
    assert CANARY not in hub_got.stdout and hub_got.stdout.endswith("404"), hub_got.stdout
    assert healthy.stdout.endswith("200"), "the other files are still served"

    root = ws.root / "root"
    blob.unlink()
    shutil.copy(ws.root / "cache" / "blobs" / "sha256" / config["sha256"], blob)
    site = ws.write("site.yaml", f"shared_root: {root}\n")
    ws.run("ingest", str(bundle), "--site", str(site))
    planted = root / "hf" / "hub" / "models--acme--serve-evil" / "blobs" / (config.get("etag") or config["sha256"])
    planted.unlink()
    planted.symlink_to(secret)  # a job with write access to shared_root plants a link
    with serving(ws, root) as url:
        got = _curl(f"{url}/acme/serve-evil/resolve/main/config.json")
        files = _curl(f"{url}/files/models/acme/serve-evil/config.json")
        other = _curl(f"{url}/acme/serve-evil/resolve/main/tokenizer.json")
    assert CANARY not in got.stdout + files.stdout
    assert got.stdout.endswith("404"), got.stdout
    assert other.stdout.endswith("200"), "the other files are still served"


def test_serve_escapes_names_in_the_simple_index(ws, hub):
    from airlift.bundle.layout import Bundle
    from airlift.bundle.manifest import FileArtifact, FileEntry, Manifest, now_iso
    from tests.test_serve import serving

    bundle = Bundle(ws.root / "xss")
    data = b"not really a wheel"
    blob = bundle.store.put_bytes(data)
    evil = "<script>alert(1)<!---1.0-py3-none-any.whl"
    wheels = FileArtifact(id="wheels", kind="wheels", source={"targets": [], "wheels": {}}, files=[FileEntry(path=evil, size=len(data), sha256=blob.sha256)])
    bundle.write_manifest(Manifest(name="xss", created=now_iso(), artifacts=[wheels]))
    with serving(ws, bundle.root) as url:
        index = _curl(f"{url}/simple/").stdout
    assert "<script>" not in index and "&lt;script&gt;" in index, index


def test_serve_drops_half_open_connections_and_keeps_answering(ws, hub):
    import socket

    bundle = _built(ws, hub, "serve-slow", seed=903)
    port = __import__("tests.conftest", fromlist=["_free_port"])._free_port()
    proc = subprocess.Popen([AIRLIFT, "serve", str(bundle), "--port", str(port), "--header-timeout", "1", "--max-connections", "16"],
                            cwd=ws.root, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _curl(f"http://127.0.0.1:{port}/healthz").stdout[-3:] != "200":
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.2)
        sockets = []
        for _ in range(40):  # more than --max-connections, each sending half a request line
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x")
            sockets.append(s)
        time.sleep(3)
        closed = 0
        for s in sockets:
            try:
                closed += s.recv(1024) == b""  # EOF: the server hung up on it
            except TimeoutError:
                pass  # still held open by the server
            except ConnectionResetError:
                closed += 1
            s.close()
        assert closed == len(sockets), "half-open connections were kept"
        assert _curl(f"http://127.0.0.1:{port}/healthz").stdout.endswith("200")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- a bundle is hostile until its signature is checked -----------------------------------------------
def _resum(bundle: Path) -> None:
    """What an attacker does after editing manifest.json: make SHA256SUMS agree again."""
    import hashlib

    sums = bundle / "SHA256SUMS"
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    lines = [line for line in sums.read_text().splitlines() if not line.endswith("  manifest.json")]
    sums.write_text("\n".join([*lines, f"{digest}  manifest.json"]) + "\n")


def test_with_trusted_keys_only_bundles_signed_by_them_ingest(ws, hub):
    bundle = _built(ws, hub, "trust-model", seed=905)
    ws.run("keygen", "--out", "keys/site")
    ws.run("keygen", "--out", "keys/rogue")
    root = ws.root / "root"
    site = ws.write("site.yaml", f"shared_root: {root}\ntrust: {{keys: [keys/site.pub]}}\n")

    unsigned = ws.run("ingest", str(bundle), "--site", str(site), expect=1)
    assert "not signed" in unsigned.stderr and "Traceback" not in unsigned.stderr
    ws.run("sign", str(bundle), "--key", "keys/rogue.key")
    rogue = ws.run("ingest", str(bundle), "--site", str(site), expect=1)
    assert "does not match its signature" in rogue.stderr
    ws.run("sign", str(bundle), "--key", "keys/site.key")
    manifest = bundle / "manifest.json"
    original = manifest.read_text()
    manifest.write_text(original.replace('"name": "trust-model"', '"name": "trust-modex"'))
    _resum(bundle)
    tampered = ws.run("ingest", str(bundle), "--site", str(site), expect=1)
    assert "does not match its signature" in tampered.stderr
    jobs_site = ws.write("jobs-site.yaml", f"shared_root: {root}\nslurm: {{container_runtime: none}}\ntrust: {{keys: [keys/site.pub]}}\n")
    for command in (["submit", str(bundle), "--site", str(jobs_site)], ["serve", str(bundle), "--site", str(site), "--port", "1"]):
        refused = ws.run(*command, expect=1)
        assert "does not match its signature" in refused.stderr, (command, refused.stderr)
    assert not root.exists() or not any((root / ".airlift").rglob("*.json")), "a refused bundle ingested something"

    manifest.write_text(original)
    _resum(bundle)
    ok = ws.run("ingest", str(bundle), "--site", str(site))
    assert "ingested 1 artifacts" in ok.stdout
    rotated = ws.write("rotated.yaml", f"shared_root: {root}\ntrust: {{keys: [keys/rogue.pub, keys/site.pub]}}\n")
    ws.run("ingest", str(bundle), "--site", str(rotated))  # either of several keys may have signed it


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda a: a["source"].update(commit="../../../../../tmp/airlift-escape"), "commit"),
        (lambda a: a["source"].update(revision="../../../../../tmp/airlift-escape"), "revision"),
        (lambda a: a["source"].update(repo="../../x"), "repo"),
        (lambda a: a["files"][0].update(etag="../../../../x" + "0" * 28), "etag"),
    ],
)
def test_a_manifest_cannot_steer_ingest_out_of_shared_root(ws, hub, mutate, field):
    bundle = _built(ws, hub, "escape-model", seed=907)
    manifest = json.loads((bundle / "manifest.json").read_text())
    mutate(manifest["artifacts"][0])
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _resum(bundle)
    root = ws.root / "deep" / "a" / "b" / "root"
    site = ws.write("site.yaml", f"shared_root: {root}\n")
    before = {p for p in ws.root.parent.rglob("*")}
    result = ws.run("ingest", str(bundle), "--site", str(site), expect=2)
    assert field in result.stderr and "manifest.json" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    after = {p for p in ws.root.parent.rglob("*")}
    assert not [p for p in after - before if not p.is_relative_to(ws.root)], "ingest wrote outside its place"
    assert not Path("/tmp/airlift-escape").exists()


def test_concurrent_ingests_of_the_same_artifact_both_succeed(ws, hub):
    bundle = _built(ws, hub, "twice-model", seed=909)
    root = ws.root / "root"
    site = ws.write("site.yaml", f"shared_root: {root}\n")
    first = ws.popen("ingest", str(bundle), "--site", str(site))
    second = ws.popen("ingest", str(bundle), "--site", str(site))
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    snapshot = next((root / "hf" / "hub" / "models--acme--twice-model" / "snapshots").iterdir())
    files = json.loads((bundle / "manifest.json").read_text())["artifacts"][0]["files"]
    for entry in files:
        assert (snapshot / entry["path"]).read_bytes() == (bundle / "blobs" / "sha256" / entry["sha256"]).read_bytes()
    assert not [p for p in root.rglob("*") if p.name.endswith((".tmp", ".tmp-link"))], "temp files were left behind"


# -- smaller holes ------------------------------------------------------------------------------------
def test_an_oversized_manifest_is_refused_before_it_is_read(tmp_path):
    bundle = tmp_path / "huge"
    bundle.mkdir()
    with open(bundle / "manifest.json", "wb") as handle:
        handle.truncate(1 << 40)  # a sparse 1 TiB manifest: reading it would never end
    started = time.monotonic()
    for command in (["verify", "huge"], ["inspect", "huge"]):
        assert_refused(run(tmp_path, *command), 2, "manifest.json", "larger than")
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    ("image", "field"),
    [({"repository": "../../escape"}, "repository"), ({"tag": "-x"}, "tag"), ({"repository": "a/../../b"}, "repository")],
)
def test_an_image_cannot_be_pushed_outside_the_site_prefix(tmp_path, image, field):
    digest = "sha256:" + "a" * 64
    info = {"ref": "registry.example/team/app:1", "digest": digest, "platform": "linux/amd64", "media_type": "application/vnd.oci.image.manifest.v1+json",
            "size": 1, "config": digest, "layers": [], "repository": "team/app", "tag": "1", **image}
    source = {"ref": "registry.example/team/app:1", "from": "registry", "registry": "registry.example", "repository": "team/app", "tag": "1",
              "digest": digest, "platform": "linux/amd64"}
    manifest = {"schema_version": 1, "name": "evil", "created": "2026-01-01T00:00:00Z",
                "artifacts": [{"id": "images/registry.example/team/app:1", "kind": "image", "source": source, "image": info, "blobs": []}]}
    bundle = tmp_path / "bundle"
    (bundle / "blobs" / "sha256").mkdir(parents=True)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    site = tmp_path / "site.yaml"
    site.write_text("registry: {url: 127.0.0.1:9/mirror, insecure: true}\n")
    assert_refused(run(tmp_path, "ingest", "bundle", "--site", str(site)), 2, "manifest.json", field)

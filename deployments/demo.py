"""`make demo`: the whole pipeline on this machine, with no internet.

It starts the project's hub stand-in (generated model, dataset and a plain file), then runs the
real CLI: build (airlift itself included) → sign → transfer (to a directory standing in for removable
media) → install airlift from the bundle with its install.sh → ingest with that airlift into
the local S3 server and a shared root → read the model back with huggingface_hub, offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import boto3

from airlift.testing.hubserver import HubServer

OUT = Path(os.environ.get("AIRLIFT_DEMO_DIR", "demo-out")).resolve()
BIN = Path(sys.executable).parent / "airlift"
# The far side's airlift: installed from the bundle by its own install.sh (step 5), not from this checkout.
FAR = OUT / "far-side" / "bin" / "airlift"


def demo_image() -> str:
    """A tiny image built from Debian's busybox-static and pushed to the upstream registry stand-in."""
    from airlift.testing.images import busybox_image, docker

    host = os.environ["AIRLIFT_DOCKER_HOST"]
    ref = f"{os.environ.get('AIRLIFT_UPSTREAM_REGISTRY', '127.0.0.1:5101')}/nvidia/nemo-demo:25.11"
    docker(host, "tag", busybox_image(host), ref)
    docker(host, "push", ref)
    return ref


def demo_repo(path: Path) -> Path:
    """A local git repository with a v1.0 tag: the trainer code a job mounts, checked out at the pinned commit."""
    if not (path / ".git").exists():
        path.mkdir(parents=True, exist_ok=True)
        git = {**os.environ, "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid",
               "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid"}
        for argv in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "v1.0"], ["tag", "v1.0"]):
            if argv[0] == "add":
                (path / "VERSION").write_text("trainer v1.0 (pinned)\n")
            subprocess.run(["git", *argv], cwd=path, env=git, check=True)
    return path


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def sh(*args: str, env: dict[str, str]) -> str:
    names = {str(BIN): "airlift", str(FAR): "far-side/bin/airlift"}
    print(f"$ {shlex.join([names.get(a, a) for a in args])}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(list(args), env=env, capture_output=True, text=True)
    print(proc.stdout.rstrip())
    if proc.returncode != 0:
        print(proc.stderr.rstrip(), file=sys.stderr)
        raise SystemExit(f"demo step failed with exit {proc.returncode}")
    print(f"   ({time.monotonic() - started:.1f}s)", flush=True)
    return proc.stdout


def main() -> None:
    s3_endpoint = os.environ.get("AIRLIFT_S3_ENDPOINT", "http://127.0.0.1:5103")
    OUT.mkdir(parents=True, exist_ok=True)
    hub = HubServer().start()
    rng = __import__("random").Random(7)
    model = {
        "config.json": b'{"architectures": ["NemotronForCausalLM"], "hidden_size": 256}\n',
        "tokenizer.json": b'{"version": "1.0"}\n',
        "model-00001-of-00002.safetensors": rng.randbytes(24 << 20),
        "model-00002-of-00002.safetensors": rng.randbytes(8 << 20),
    }
    hub.add_repo("model", "nvidia/tiny-nemotron", files=model, tags=("v1.0",))
    hub.add_repo("dataset", "acme/sft-corpus", files={"README.md": b"# SFT corpus\n", "data/train.parquet": rng.randbytes(6 << 20)})
    tarball = rng.randbytes(4 << 20)
    url = hub.add_file("tokenizer-extras.tar", tarball)
    image = demo_image()
    trainer = demo_repo(OUT / "trainer-src")

    spec = OUT / "airgap.yaml"
    spec.write_text(f"""name: nemotron-sft
models:
  - hf: nvidia/tiny-nemotron
    revision: v1.0
    allow: ["*.json", "*.safetensors"]
datasets:
  - hf: acme/sft-corpus
  - url: {url}
    sha256: {hashlib.sha256(tarball).hexdigest()}
images:
  - {image}
installer: {{}}                    # airlift itself travels too (this host's Python and platform)
repos:
  - git: file://{trainer}
    ref: v1.0
    name: trainer
jobs:
  - name: finetune
    image: {image}
    command: ["sh", "-c", "cat $HF_HOME/hub/models--nvidia--tiny-nemotron/snapshots/*/config.json && echo fine-tuned with HF_HUB_OFFLINE=$HF_HUB_OFFLINE && cat /opt/trainer/VERSION | tee $AIRLIFT_OUTPUT/checkpoints/trained-with.txt"]
    uses: [models/nvidia/tiny-nemotron]
    mounts: [{{from: repos/trainer, to: /opt/trainer}}]
    outputs: [checkpoints]
""")
    site = OUT / "site.yaml"
    site.write_text(f"""registry: {{url: "{os.environ.get('AIRLIFT_AIRGAP_REGISTRY', '127.0.0.1:5102')}/mirror", insecure: true}}
s3: {{endpoint_url: "{s3_endpoint}", bucket: tao-storage, prefix: shared-storage/airgap}}
shared_root: {OUT / "gpfs" / "airgap"}
slurm: {{partition: batch, container_runtime: docker}}
docker: {{host: "{os.environ.get('AIRLIFT_DOCKER_HOST', 'unix:///var/run/docker.sock')}"}}
""")
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "AIRLIFT_CACHE": str(OUT / "cache"),
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "demo"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "demo-secret"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DOCKER_HOST": os.environ.get("AIRLIFT_DOCKER_HOST", ""),
    }

    step("0. Plan: resolve every reference (tag -> commit, image tag -> digest); no content downloaded")
    sh(str(BIN), "plan", str(spec), env=env)
    step("1. Networked side: build a content-addressed bundle (HF model + dataset + pinned URL + image)")
    sh(str(BIN), "build", str(spec), "--out", str(OUT / "bundle"), env=env)
    print(f"   upstream content bytes sent by the hub stand-in: {hub.content_bytes}")
    step("2. Rebuild: a no-op, zero content bytes")
    hub.reset_counters()
    sh(str(BIN), "build", str(spec), "--out", str(OUT / "bundle"), env=env)
    print(f"   upstream content bytes this time: {hub.content_bytes}")
    step("3. The bundle checks with plain sha256sum, and with airlift verify")
    print(subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=OUT / "bundle", capture_output=True, text=True).stdout or "   sha256sum -c SHA256SUMS: OK")
    sh(str(BIN), "inspect", str(OUT / "bundle"), env=env)
    step("4. Sign, then transfer to the removable disk (only missing blobs; verified at the destination)")
    if not (OUT / "demo.key").exists():
        sh(str(BIN), "keygen", "--out", str(OUT / "demo"), env=env)
    sh(str(BIN), "sign", str(OUT / "bundle"), "--key", str(OUT / "demo.key"), env=env)
    sh(str(BIN), "transfer", str(OUT / "bundle"), "--to", str(OUT / "usb-disk"), env=env)
    step("5. Inside the air gap: install airlift from the bundle itself (signature and wheels checked first, no network)")
    if not FAR.exists():
        sh("sh", str(OUT / "usb-disk" / "install.sh"), "--prefix", str(FAR.parents[1]), "--pubkey", str(OUT / "demo.pub"), env=env)
    sh(str(FAR), "--version", env=env)
    step("6. With that airlift: verify, push the image (same digest), upload to S3 and materialize the shared root")
    sh(str(FAR), "ingest", str(OUT / "usb-disk"), "--site", str(site), env=env)
    step("6b. Ingest again: nothing is re-uploaded")
    sh(str(FAR), "ingest", str(OUT / "usb-disk"), "--site", str(site), env=env)
    hub.stop()

    step("7. Submit the spec's job to Slurm: preflight, then a container from the air-gapped registry, offline")
    sh(str(FAR), "submit", str(OUT / "usb-disk"), "--site", str(site), "--wait", env=env)
    log = sorted((OUT / "gpfs" / "airgap" / "logs").glob("nemotron-sft-finetune-*.out"))[-1]
    print(f"   job log {log}:\n" + "".join(f"     {line}\n" for line in log.read_text().splitlines()))

    step("7b. Results out: the job's declared outputs as a signed bundle, for the trip back")
    if not (OUT / "site.key").exists():
        sh(str(BIN), "keygen", "--out", str(OUT / "site"), env=env)
    sh(str(BIN), "export", "--site", str(site), "--out", str(OUT / "results"), "--key", str(OUT / "site.key"), env=env)
    sh(str(BIN), "verify", str(OUT / "results"), "--pubkey", str(OUT / "site.pub"), env=env)

    step("8. A job's view: huggingface_hub, offline, finds the model by repo id (hub stand-in now stopped)")
    probe = "from huggingface_hub import snapshot_download; print(snapshot_download('nvidia/tiny-nemotron', revision='v1.0'))"
    job_env = {k: v for k, v in env.items() if k != "HF_ENDPOINT"}
    job_env.update(HF_HOME=str(OUT / "gpfs" / "airgap" / "hf"), HF_HUB_OFFLINE="1")
    snapshot = subprocess.run([sys.executable, "-c", probe], env=job_env, capture_output=True, text=True, check=True).stdout.strip()
    for name, data in sorted(model.items()):
        same = (Path(snapshot) / name).read_bytes() == data
        print(f"   {name:40} {'identical' if same else 'DIFFERENT'}")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tao-storage").get("Contents", [])]
    print(f"   S3 s3://tao-storage has {len(keys)} objects, e.g. {keys[0] if keys else '-'}")

    step("9. airlift serve: the shared root as a Hugging Face endpoint for tools that insist on one")
    port = 8808
    server = subprocess.Popen([str(BIN), "serve", str(OUT / "gpfs" / "airgap"), "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        served_env = {k: v for k, v in env.items() if k != "HF_HUB_OFFLINE"} | {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(OUT / "client-hf")}
        got = subprocess.run([sys.executable, "-c", "from huggingface_hub import snapshot_download; print(snapshot_download('nvidia/tiny-nemotron', revision='v1.0'))"],
                             env=served_env, capture_output=True, text=True)
        print(f"   HF_ENDPOINT=http://127.0.0.1:{port} snapshot_download -> {got.stdout.strip() or got.stderr.strip()[-300:]}")
    finally:
        server.terminate()

    step("Where to look")
    print(f"   bundle        {OUT / 'bundle'}  (manifest.json, SHA256SUMS, blobs/sha256/)")
    print(f"   transferred   {OUT / 'usb-disk'}")
    print(f"   shared root   {OUT / 'gpfs' / 'airgap'}  (hf/hub/, files/)")
    print(f"   S3            {s3_endpoint}  bucket tao-storage, prefix shared-storage/airgap/")
    print(f"   manifest      {json.loads((OUT / 'bundle' / 'manifest.json').read_text())['name']}")


if __name__ == "__main__":
    main()

"""`make services` started real services on loopback; each answers its real client."""

from __future__ import annotations

import os
import subprocess
import uuid

import boto3

from tests.conftest import busybox_image, need


def _ok(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_docker_engine_answers(services):
    host = services.get("AIRLIFT_DOCKER_HOST")
    proc = _ok(["docker", "-H", host or "unix:///nonexistent", "version", "--format", "{{.Server.Version}}"])
    if proc.returncode != 0:
        need("docker", proc.stderr.strip())
    assert proc.stdout.strip()


def test_both_registries_take_and_serve_an_image_via_skopeo(services):
    docker_host = services.get("AIRLIFT_DOCKER_HOST", "")
    image = busybox_image(docker_host)
    for key in ("AIRLIFT_UPSTREAM_REGISTRY", "AIRLIFT_AIRGAP_REGISTRY"):
        registry = services.get(key)
        if _ok(["curl", "-fsS", f"http://{registry}/v2/"]).returncode != 0:
            need(key, f"no registry at {registry}")
        dest = f"docker://{registry}/airlift-health/busybox:1"
        proc = _ok(["skopeo", "copy", "--dest-tls-verify=false", "--src-daemon-host", docker_host, f"docker-daemon:{image}", dest])
        assert proc.returncode == 0, proc.stderr
        proc = _ok(["skopeo", "inspect", "--tls-verify=false", dest])
        assert proc.returncode == 0, proc.stderr
        assert '"Digest": "sha256:' in proc.stdout


def test_s3_server_round_trip(s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="y")
    bucket = f"health-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_sshd_accepts_the_key(services):
    key = services.get("AIRLIFT_SSH_KEY", "")
    url = services.get("AIRLIFT_SSH_URL", "")
    if not key or not url:
        need("sshd", "no endpoint recorded")
    userhost, _, port = url.removeprefix("ssh://").rpartition(":")
    proc = _ok(["ssh", "-F", "/dev/null", "-i", key, "-p", port, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", userhost, "echo", "ssh-ok"])
    if proc.returncode != 0:
        need("sshd", proc.stderr.strip())
    assert proc.stdout.strip() == "ssh-ok"


def test_slurm_runs_a_job(services):
    conf = services.get("SLURM_CONF")
    env = {"SLURM_CONF": conf or "/nonexistent"}
    proc = _ok(["sinfo", "-h", "-o", "%t"], env=env)
    if proc.returncode != 0:
        need("slurm", proc.stderr.strip())
    proc = _ok(["srun", "-N1", "-t", "1", "echo", "slurm-ok"], env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "slurm-ok" in proc.stdout

"""Container images for tests and the demo, made locally: no registry on the internet is needed.

`busybox_image` imports a one-layer image from Debian's busybox-static into a Docker engine; `docker`
runs the docker CLI against an engine and fails loudly.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

APPLETS = ("sh", "echo", "cat", "ls", "test", "true", "env", "sleep", "wc", "sha256sum")


class ImageToolError(RuntimeError):
    """The Docker engine or busybox-static is not there, or the docker CLI failed."""


def docker(host: str, *args: str, input: bytes | None = None, cwd: Path | None = None) -> str:
    """Run `docker -H host ARGS...` (legacy builder) and return its stdout; raise with stderr on failure."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    proc = subprocess.run(["docker", "-H", host, *args], input=input, capture_output=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise ImageToolError(f"docker {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode()


def busybox_image(docker_host: str, tag: str = "airlift-test/busybox:base") -> str:
    """A tiny image built locally from Debian's busybox-static (imported once, then reused by tag)."""
    probe = subprocess.run(["docker", "-H", docker_host, "image", "inspect", tag], capture_output=True)
    if probe.returncode == 0:
        return tag
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        raise ImageToolError("Debian busybox-static is not installed")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    docker(docker_host, "import", "-", tag, input=buffer.getvalue())
    return tag

"""Shared fixtures: the real local services, the hub stand-in, a Prefect server, and a CLI runner.

Under CI (CI=true) a missing service fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from airlift.testing.hubserver import HubServer

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
AIRLIFT = str(VENV_BIN / "airlift")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Start-up timeouts, stated once and generous: the suite runs beside six other engineers' on two cores,
# where a Prefect server's first start (database migrations) has taken well over a minute.
SERVER_START_TIMEOUT = 300
START_TIMEOUTS = {
    "AIRLIFT_SERVER_START_TIMEOUT": str(SERVER_START_TIMEOUT),  # the embedded local server (airlift/cli/server.py)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(SERVER_START_TIMEOUT),  # Prefect's ephemeral mode
}
COMMAND_TIMEOUT = SERVER_START_TIMEOUT + 300  # one CLI command: a server start-up, then its work


def service_env() -> dict[str, str]:
    """The endpoints `make services` wrote to $AIRLIFT_SERVICES_DIR/env."""
    env_file = Path(os.environ.get("AIRLIFT_SERVICES_DIR", "/tmp/airlift-services")) / "env"
    values: dict[str, str] = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export "):].partition("=")
                values[key] = value
    return values


def resumable_bytes(parts: Path) -> int:
    """What a rerun keeps of the largest partial download in `parts` (a cache's .tmp): a plain partial's
    length, or a ranged one's recorded ranges (util/ranged.py; its file length is only the furthest
    range begun, since ranges are written at their offsets)."""
    best = 0
    for part in parts.glob("*.part") if parts.exists() else ():
        if part.name.endswith("-r.part"):
            record = part.with_suffix(".ranges")
            try:
                state = json.loads(record.read_text())
                size, step = state["size"], state["range_size"]
                kept = sum(min(step, size - i * step) for i in state["done"])
            except (OSError, ValueError, KeyError):
                kept = 0  # no record yet (or one being replaced): nothing is kept
        else:
            kept = part.stat().st_size
        best = max(best, kept)
    return best


def need(service: str, reason: str) -> None:
    message = f"service {service} is not available: {reason} (run `make services`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def started_registry(registry):  # noqa: ANN001, ANN201 - a LocalRegistry, returned started
    """`registry` (a LocalRegistry) started, or the test skipped (failed under CI) when docker-registry cannot run."""
    try:
        registry.start()
    except (OSError, RuntimeError) as exc:
        need("docker-registry", str(exc))
    return registry


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status < 500
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    return service_env()


@pytest.fixture(scope="session")
def s3_endpoint(services) -> str:
    endpoint = services.get("AIRLIFT_S3_ENDPOINT")
    if not endpoint or not _http_ok(f"{endpoint}/moto-api/"):
        need("s3", f"no S3 server answering at {endpoint}")
    return endpoint


@pytest.fixture(scope="session")
def hub():
    server = HubServer().start()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def airlift_home(tmp_path_factory) -> Path:
    """The session's AIRLIFT_HOME: CLI runs use the embedded default, one persistent local Prefect server."""
    return tmp_path_factory.mktemp("airlift-home")


@pytest.fixture(scope="session")
def prefect_server(airlift_home):
    """The embedded local Prefect server that every CLI run of the session shares (started once)."""
    from airlift.cli import server as embedded

    embedded.START_TIMEOUT = float(SERVER_START_TIMEOUT)  # this process read the default at import
    server = embedded.EmbeddedServer(airlift_home)
    state = server.ensure(announce=False)
    yield {"api": state.url, "home": str(server.prefect_home), "airlift_home": str(airlift_home)}
    server.stop()


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    program: tuple[str, ...] = (AIRLIFT,)

    def with_ngc_double(self) -> Workspace:
        """This workspace, running the CLI with the NGC SDK double injected (tests/ngc_cli.py)."""
        return replace(self, program=(sys.executable, "-m", "tests.ngc_cli"))

    def run(self, *args: str, expect: int | None = 0, timeout: float = COMMAND_TIMEOUT, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*self.program, *args], cwd=self.root, env={**self.env, **(extra_env or {})},
            capture_output=True, text=True, timeout=timeout,
        )
        if expect is not None and proc.returncode != expect:
            raise AssertionError(
                f"airlift {' '.join(args)} exited {proc.returncode}, expected {expect}\n"
                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def json(self, *args: str, expect: int | None = 0, **kwargs) -> dict:  # noqa: ANN003 - as run()
        """`airlift ARGS --json` (contract v1.1): the result object, parsed (verify, transfer, ingest)."""
        import json

        proc = self.run(*args, "--json", expect=expect, **kwargs)
        result = json.loads(proc.stdout)
        assert result["schema"] == "airlift/v1.1" and result["command"] == args[0], result
        return result

    def popen(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """The command as a process of its own (no warm runner): kill trials signal and measure its pid."""
        return subprocess.Popen(
            [*self.program, *args], cwd=self.root, env={**self.env, "AIRLIFT_WARM_RUNNER": "0", **(extra_env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def ws(tmp_path, hub, prefect_server, services) -> Workspace:
    """A clean working directory with its own airlift cache, pointed at the hub stand-in."""
    hub.set_faults()
    hub.reset_counters()
    env = {
        **os.environ,
        "AIRLIFT_CACHE": str(tmp_path / "cache"),
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "AIRLIFT_HOME": prefect_server["airlift_home"],  # the embedded default: the CLI finds the server itself
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "AWS_ACCESS_KEY_ID": "airlift-test",
        "AWS_SECRET_ACCESS_KEY": "airlift-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": str(REPO),  # so `python -m tests.ngc_cli` finds the SDK double in tests/
        **START_TIMEOUTS,
    }
    env.pop("HF_TOKEN", None)
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    return Workspace(tmp_path, env)


def verified(bundle: Path, *, store: Path | None = None, ok: bool = True):  # noqa: ANN201 - a VerifyReport
    """`airlift verify BUNDLE [--store STORE]` as the core call it makes (no CLI, no flow run), as an assertion.

    Returns the report; `problems(report)` gives the lines the CLI would print after BROKEN.
    """
    from airlift.bundle.checked import verify_and_stamp

    report = verify_and_stamp(bundle, store=store)
    assert report.ok is ok, f"verify {bundle}: expected ok={ok}: " + "; ".join(p.describe() for p in report.problems)
    return report


def problems(report) -> str:  # noqa: ANN001 - a VerifyReport
    """What `airlift verify` prints for each problem (after BROKEN), one per line."""
    return "\n".join(p.describe() for p in report.problems)


def sha256sum_check(bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every regular file below root (following symlinks, as a reader would), by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True)


def build_with_container_site(ws, spec: Path, upstream, services, *, runner: str, prefix: str) -> tuple[Path, Path, str]:
    """Build `spec` (engine images too), then write a site that runs its jobs in containers.

    The site has the air-gapped registry under `<prefix>-<random>`, the upstream engine, shared_root
    `ws.root/root` and `runner` (a `slurm: {...}` or `prefect: {...}` line).
    Returns (shared_root, the site file, the registry prefix).
    """
    import uuid

    ws.run("build", str(spec), "--out", "bundle", extra_env={"DOCKER_HOST": upstream.docker_host})
    root, prefix = ws.root / "root", f"{prefix}-{uuid.uuid4().hex[:8]}"
    registry = f"{services['AIRLIFT_AIRGAP_REGISTRY']}/{prefix}"
    site = ws.write("site.yaml", f'registry: {{url: {registry}, insecure: true}}\ndocker: {{host: "{upstream.docker_host}"}}\nshared_root: {root}\n{runner}\n')
    return root, site, prefix


def busybox_image(docker_host: str, tag: str = "airlift-test/busybox:base") -> str:
    """The busybox test image (airlift/testing/images.py); a missing engine or busybox is a missing service."""
    from airlift.testing.images import ImageToolError
    from airlift.testing.images import busybox_image as build

    if not docker_host:
        need("docker", "no engine recorded")
    try:
        return build(docker_host, tag)
    except ImageToolError as exc:
        need("docker", str(exc))
        raise


@pytest.fixture(scope="session")
def upstream(services, tmp_path_factory):
    """Fixture images in the upstream registry (see tests/images.py)."""
    from tests.images import prepare

    if not services.get("AIRLIFT_DOCKER_HOST"):
        need("docker", "no engine recorded")
    return prepare(services, tmp_path_factory.mktemp("images"))

"""Helpers for the fast tier: small bundles, git repositories and artifacts built in tmp, in-process.

Nothing here starts a service or touches the network. Artifacts are built through the public models
(`Artifact.model_validate` on the JSON a manifest would carry), blobs through the real `BlobStore`,
and bundles through `Bundle.write_manifest`, so these tests see what `airlift build` would write.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import ipaddress
import os
import socket
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Artifact, Manifest, now_iso, parse_artifact
from airlift.bundle.store import BlobStore

FAST_DIR = Path(__file__).resolve().parent
TOP_CONFTEST = FAST_DIR.parent / "conftest.py"
HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "fast", "GIT_AUTHOR_EMAIL": "fast@example.invalid",
    "GIT_COMMITTER_NAME": "fast", "GIT_COMMITTER_EMAIL": "fast@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
}


def git_blob_id(data: bytes) -> str:
    """The id git (and the Hub, for non-LFS files) gives these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Draft:
    """An artifact before its blobs are stored: its id, kind, source and files (path -> bytes)."""

    id: str
    kind: str
    source: dict[str, Any]
    files: dict[str, bytes]
    layout: str = "tree"
    lfs: tuple[str, ...] = ()  # hub files stored in LFS: their etag is the sha256, others the git blob id

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for path, data in self.files.items():
            entry: dict[str, Any] = {"path": path, "size": len(data), "sha256": sha256(data)}
            if self.kind in ("hf-model", "hf-dataset"):
                entry["etag"] = sha256(data) if path in self.lfs else git_blob_id(data)
            out.append(entry)
        return out

    def artifact(self) -> Artifact:
        return parse_artifact(
            {"id": self.id, "kind": self.kind, "layout": self.layout, "source": self.source, "files": self.entries()}
        )


def hf_model(repo: str = "acme/tiny", files: dict[str, bytes] | None = None, *, revision: str = "main") -> Draft:
    files = files if files is not None else {
        "config.json": b'{"hidden_size": 8}\n',
        "model.safetensors": b"\x00weights" * 64,
        "tokenizer/vocab.txt": b"hello\nworld\n",
    }
    return Draft(
        id=f"models/{repo}", kind="hf-model",
        source={"repo": repo, "repo_type": "model", "revision": revision, "commit": HF_COMMIT},
        files=files, lfs=tuple(p for p in files if p.endswith(".safetensors")),
    )


def url_file(name: str = "notes.txt", data: bytes = b"plain notes\n") -> Draft:
    return Draft(
        id=f"files/{name}", kind="url", layout="file",
        source={"url": f"https://files.example.invalid/{name}", "sha256": sha256(data)}, files={name: data},
    )


def path_tree(name: str = "corpus", files: dict[str, bytes] | None = None) -> Draft:
    files = files if files is not None else {"a.txt": b"first\n", "dir/b.txt": b"second\n"}
    return Draft(id=f"files/{name}", kind="path", source={"path": f"/data/{name}"}, files=files)


def make_wheel(project: str = "Foo_Bar", version: str = "1.0", value: int = 42) -> tuple[str, bytes]:
    """A real, installable pure-Python wheel whose module `foo_bar` holds VALUE: (file name, bytes)."""
    module = project.lower().replace("-", "_")
    dist_info = f"{project}-{version}.dist-info"
    members = {
        f"{module}/__init__.py": f"VALUE = {value}\n".encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: airlift-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip('=')},{len(data)}"
        for name, data in members.items()
    ]
    members[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return f"{project}-{version}-py3-none-any.whl", buffer.getvalue()


def wheels(files: dict[str, bytes] | None = None) -> Draft:
    files = files if files is not None else dict([make_wheel()])
    return Draft(
        id="wheels", kind="wheels",
        source={
            "targets": [{"python": "3.11", "platform": "manylinux_2_28_x86_64", "implementation": "cp"}],
            "wheels": {name: {"url": f"https://pypi.example.invalid/{name}", "sha256": sha256(data)} for name, data in files.items()},
        },
        files=files,
    )


@dataclass
class Built:
    """A bundle on disk, with what went into it."""

    bundle: Bundle
    manifest: Manifest
    drafts: list[Draft] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.bundle.root

    def blob(self, artifact_id: str, path: str) -> Path:
        """The bundle's blob holding one file of one artifact."""
        draft = next(d for d in self.drafts if d.id == artifact_id)
        return self.bundle.store.blob_path(sha256(draft.files[path]))


def build_bundle(root: Path, drafts: list[Draft], *, name: str = "fast", store_only: set[str] | None = None) -> Built:
    """Store every draft's files as blobs of a bundle at `root` and write its manifest and SHA256SUMS.

    Args:
        root: The bundle directory.
        drafts: The artifacts.
        name: The manifest's name.
        store_only: When given, only these artifact ids get their blobs written (a delta bundle).

    Returns:
        The bundle, its manifest and the drafts.
    """
    bundle = Bundle(root)
    for draft in drafts:
        if store_only is not None and draft.id not in store_only:
            continue
        for data in draft.files.values():
            bundle.store.put_bytes(data)
    manifest = Manifest(name=name, created=now_iso(), artifacts=[d.artifact() for d in drafts])
    bundle.write_manifest(manifest)
    return Built(bundle, manifest, list(drafts))


def make_writable(path: Path) -> None:
    """Blobs are read-only; tests that damage one on purpose first make it writable."""
    os.chmod(path, 0o644)


def run(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, inherit: bool = True,
) -> subprocess.CompletedProcess:
    """Run a real program (sha256sum, git, bash, pip) and fail the test with its stderr if it fails.

    Args:
        argv: The program and its arguments.
        cwd: Working directory.
        env: Variables for the program, on top of this process's environment unless `inherit` is False.
        inherit: Start from this process's environment.

    Returns:
        The finished process, its output as text.
    """
    base = dict(os.environ) if inherit else {"PATH": os.environ["PATH"]}
    proc = subprocess.run(argv, cwd=cwd, env={**base, **GIT_ENV, **(env or {})}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}"
    return proc


@dataclass
class GitBundle:
    """A real git repository made in tmp, and a `git bundle` of all its refs."""

    path: Path
    commit: str
    tag_commit: str
    files: dict[str, bytes]


def make_git_bundle(tmp: Path, name: str = "tool") -> GitBundle:
    work = tmp / f"{name}-work"
    work.mkdir()
    run(["git", "init", "-q", "-b", "main", str(work)])
    (work / "README.md").write_bytes(b"version one\n")
    run(["git", "add", "README.md"], cwd=work)
    run(["git", "commit", "-q", "-m", "one"], cwd=work)
    run(["git", "tag", "v1"], cwd=work)
    tag_commit = run(["git", "rev-parse", "HEAD"], cwd=work).stdout.strip()
    (work / "README.md").write_bytes(b"version two\n")
    (work / "src").mkdir()
    (work / "src" / "main.py").write_bytes(b"print('hi')\n")
    run(["git", "add", "-A"], cwd=work)
    run(["git", "commit", "-q", "-m", "two"], cwd=work)
    commit = run(["git", "rev-parse", "HEAD"], cwd=work).stdout.strip()
    path = tmp / f"{name}.bundle"
    run(["git", "bundle", "create", "-q", str(path), "refs/heads/main", "refs/tags/v1"], cwd=work)
    return GitBundle(path, commit, tag_commit, {"README.md": b"version two\n", "src/main.py": b"print('hi')\n"})


def git_artifact(bundle: GitBundle, name: str = "tool", *, ref: str = "main", full_ref: str = "refs/heads/main", commit: str | None = None) -> Draft:
    return Draft(
        id=f"repos/{name}", kind="git", layout="file",
        source={"url": f"https://git.example.invalid/{name}.git", "ref": ref, "full_ref": full_ref, "commit": commit or bundle.commit},
        files={f"{name}.bundle": bundle.path.read_bytes()},
    )


def git_repo_bundle(tmp: Path) -> tuple[GitBundle, Built]:
    """A local git repository (make_git_bundle) and a bundle at `tmp/bundle` carrying it as `repos/tool`."""
    repo = make_git_bundle(tmp)
    return repo, build_bundle(tmp / "bundle", [git_artifact(repo)])


def ingested_repo(tmp_path: Path):
    """A git repo and a url file, built into a bundle and materialized into `tmp_path/root` (the layouts
    a job's checkout starts from): (the git bundle, the built bundle, the shared root)."""
    from airlift.ingest.sharedfs import materialize

    gb = make_git_bundle(tmp_path)
    built = build_bundle(tmp_path / "bundle", [git_artifact(gb), url_file()])
    root = tmp_path / "root"
    for artifact in built.manifest.artifacts:
        materialize(root, artifact, blob_path=built.bundle.store.blob_path)
    return gb, built, root


@contextmanager
def serving(app: object) -> Iterator[str]:
    """Serve an ASGI app on a loopback port from a thread of this process; yields its base URL."""
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the loopback server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What a CLI subprocess would have had: its own cache, no API URL, cwd `tmp_path`; main()'s env defaults undone afterwards."""
    monkeypatch.setenv("AIRLIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    for name in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "DO_NOT_TRACK"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`airlift ARGS` in this process (use with `cli_env`): exit code, stdout and stderr as a process would give them.

    Only for commands refused before their flow (bad input, a refused signature): the fast tier runs no Prefect.
    """
    import contextlib

    from airlift.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's errors exit
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["airlift", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def small_bundle(tmp_path: Path) -> Built:
    """A bundle of an HF model, a single URL file, a directory tree and a wheel."""
    return build_bundle(tmp_path / "bundle", [hf_model(), url_file(), path_tree(), wheels()])


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


# -- isolation: the fast tier uses no services and no network -------------------------------------------
def top_level_fixtures() -> tuple[set[str], set[str]]:
    """(every fixture, the autouse ones) that tests/conftest.py defines: the service fixtures."""
    names: set[str] = set()
    autouse: set[str] = set()
    for node in ast.walk(ast.parse(TOP_CONFTEST.read_text())):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if ast.unparse(target) in ("pytest.fixture", "fixture"):
                names.add(node.name)
                keywords = decorator.keywords if isinstance(decorator, ast.Call) else []
                if any(k.arg == "autouse" and ast.unparse(k.value) != "False" for k in keywords):
                    autouse.add(node.name)
    return names, autouse


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a fast test that asks for a service fixture of tests/conftest.py."""
    service_fixtures, _ = top_level_fixtures()
    for item in items:
        if FAST_DIR in item.path.parents:
            used = set(getattr(item, "fixturenames", ())) & service_fixtures
            if used:
                raise pytest.UsageError(f"{item.nodeid}: the fast tier must not use service fixtures {sorted(used)}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or name lookup beyond loopback fails the test (servers it starts on loopback are fine)."""
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and not _loopback(str(address[0])):
            raise OSError(f"fast tier: network access to {address[0]} refused")

    def connect(self: socket.socket, address: object) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - socket.getaddrinfo's signature
        if host is not None and not _loopback(host.decode() if isinstance(host, bytes) else str(host)):
            raise OSError(f"fast tier: name lookup of {host} refused")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def small_ranges(monkeypatch):
    """Ranged downloads (airlift/util/ranged.py) cut into 256 KiB ranges, so a test file of a few MiB has many."""
    from airlift.util import ranged

    monkeypatch.setattr(ranged, "RANGE_SIZE", 256 << 10)
    monkeypatch.setattr(ranged, "RANGED_MIN", 2 * (256 << 10))

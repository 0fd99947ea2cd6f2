"""Acceptance of issue 21: airlift crosses the gap itself.

A bundle built with `installer:` and signed is installed with its own install.sh inside a network
namespace that has only loopback (`unshare -n`), under `env -i PATH=/usr/bin:/bin`, with the system
Python; the installed airlift then verifies, ingests to a shared_root and inspects. The same with one
installer wheel altered (same size) is refused before anything is made. A wheel made by `python -m
build` and installed outside the checkout runs `airlift build` and `airlift ingest`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AIRLIFT = [str(Path(sys.executable).parent / "airlift")]
SYSTEM_PYTHON = "/usr/bin/python3"


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 1200)
    return subprocess.run(argv, **kwargs)


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result.stdout


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and _run(["unshare", "-n", "true"]).returncode == 0


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory) -> tuple[Path, Path, Path]:
    if not _can_unshare():
        pytest.fail("unshare -n is not available: this acceptance test needs a network namespace")
    base = tmp_path_factory.mktemp("installer")
    (base / "data.txt").write_text("carried across\n")
    spec = base / "airgap.yaml"
    spec.write_text(f"name: installer-accept\ndatasets:\n  - path: {base / 'data.txt'}\ninstaller: {{python: '3.11'}}\n")
    env = {**os.environ, "AIRLIFT_CACHE": str(base / "cache")}
    _ok(_run([*AIRLIFT, "build", str(spec), "--out", str(base / "bundle")], env=env, cwd=base))
    _ok(_run([*AIRLIFT, "keygen", "--out", str(base / "k")], env=env, cwd=base))
    _ok(_run([*AIRLIFT, "sign", str(base / "bundle"), "--key", str(base / "k.key")], env=env, cwd=base))
    return base, base / "bundle", base / "k.pub"


def _inside_gap(script: str, base: Path) -> subprocess.CompletedProcess:
    """`script` in a network namespace with only loopback, with no environment but PATH."""
    return _run(["unshare", "-n", "sh", "-c", f"/usr/sbin/ip link set lo up && exec env -i PATH=/usr/bin:/bin HOME={base}/home sh -c '{script}'"], cwd=base)


def test_install_sh_installs_and_runs_offline(signed_bundle) -> None:
    base, bundle, pub = signed_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    tools = next(a for a in manifest["artifacts"] if a["id"] == "tools/airlift")
    wheels = [f for f in tools["files"] if f["path"].endswith(".whl")]
    assert all(not f["path"].endswith((".tar.gz", ".zip")) for f in tools["files"])
    assert manifest["airlift_version"] and tools["source"]["built_from"] == "checkout"
    (base / "site.yaml").write_text(f"shared_root: {base / 'shared'}\n")
    (base / "home").mkdir()
    prefix = base / "far"
    started = time.monotonic()
    out = _ok(_inside_gap(f"sh {bundle}/install.sh --prefix {prefix} --pubkey {pub} --python {SYSTEM_PYTHON}", base))
    install_seconds = time.monotonic() - started
    assert "signature valid" in out and (prefix / "bin" / "airlift").exists()
    size = sum(f["size"] for f in wheels)
    print(f"\ninstaller: {len(wheels)} wheels, {size} bytes; install.sh took {install_seconds:.1f} s")
    far = prefix / "bin" / "airlift"
    checks = (
        f"{far} verify {bundle} --pubkey {pub} && {far} ingest {bundle} --site {base}/site.yaml && {far} inspect {bundle} && "
        f"{prefix}/bin/python -c \"import airlift, airlift_flows; print(airlift.__file__, airlift_flows.__file__)\""
    )
    out = _ok(_inside_gap(checks, base))
    where = out.strip().splitlines()[-1].split()
    assert all(path.startswith(str(prefix)) for path in where), where
    assert not any(path.startswith(str(REPO)) for path in where)
    assert (base / "shared" / "files" / "data.txt").read_text() == "carried across\n"
    assert "tools/airlift" in out


def test_altered_wheel_is_refused_and_nothing_is_installed(signed_bundle) -> None:
    base, bundle, pub = signed_bundle
    copy = base / "altered"
    shutil.copytree(bundle, copy, copy_function=shutil.copy2)  # a copy: blobs are hard links into the cache
    manifest = json.loads((copy / "manifest.json").read_text())
    tools = next(a for a in manifest["artifacts"] if a["id"] == "tools/airlift")
    victim = next(f for f in tools["files"] if f["path"].startswith("pydantic_core"))
    blob = copy / "blobs" / "sha256" / victim["sha256"]
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert blob.stat().st_size == victim["size"]
    (base / "home").mkdir(exist_ok=True)
    prefix = base / "refused"
    result = _inside_gap(f"sh {copy}/install.sh --prefix {prefix} --pubkey {pub} --python {SYSTEM_PYTHON}", base)
    assert result.returncode != 0
    assert victim["path"] in result.stderr and "does not match" in result.stderr
    assert not (prefix / "bin" / "airlift").exists() and not prefix.exists()


def test_tiny_installer_with_an_odd_prefix(tmp_path) -> None:
    """install.sh end to end on a one-module airlift wheel, into a DIR with a space, a quote and a glob."""
    from airlift.bundle.signing import keygen, sign
    from tests.fast.test_installer import install, tiny_bundle

    bundle = tiny_bundle(tmp_path / "b")
    key, pub = keygen(tmp_path / "k")
    sign(bundle, key)
    prefix = tmp_path / "odd 'dir; *"
    result = install(bundle, prefix, "--pubkey", str(pub))
    assert result.returncode == 0, result.stderr
    assert "signature valid" in result.stdout and "1 wheels" in result.stdout
    assert _run([str(prefix / "bin" / "airlift")]).stdout == "airlift 0.0.1\n"


def test_wheel_from_python_m_build_runs_outside_the_checkout(tmp_path) -> None:
    dist = tmp_path / "dist"
    _ok(_run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], cwd=tmp_path))
    wheel = next(dist.glob("airlift-*.whl"))
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", str(venv)]))
    _ok(_run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)], cwd=tmp_path))
    (tmp_path / "data.txt").write_text("from an installed wheel\n")
    (tmp_path / "airgap.yaml").write_text(f"name: wheel-accept\ndatasets:\n  - path: {tmp_path / 'data.txt'}\n")
    (tmp_path / "site.yaml").write_text(f"shared_root: {tmp_path / 'shared'}\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["AIRLIFT_CACHE"] = str(tmp_path / "cache")
    airlift = str(venv / "bin" / "airlift")
    _ok(_run([airlift, "build", "airgap.yaml", "--out", "bundle"], cwd=tmp_path, env=env))
    _ok(_run([airlift, "ingest", "bundle", "--site", "site.yaml"], cwd=tmp_path, env=env))
    assert (tmp_path / "shared" / "files" / "data.txt").read_text() == "from an installed wheel\n"
    where = _ok(_run([str(venv / "bin" / "python"), "-c", "import airlift_tasks; print(airlift_tasks.__file__)"], cwd=tmp_path, env=env))
    assert where.startswith(str(venv))
    # An installed airlift carries itself on: its wheel is recreated from the installed RECORD, the same
    # files as the wheel it was installed from, byte-identical each time.
    again = tmp_path / "again"
    again.mkdir()
    probe = (
        "import hashlib, sys; from pathlib import Path; from airlift.fetch.installer_wheel import build_airlift_wheel\n"
        "for d in ('a', 'b'):\n"
        "    (Path(sys.argv[1]) / d).mkdir()\n"
        "    p, how = build_airlift_wheel(Path(sys.argv[1]) / d); print(how, p, hashlib.sha256(p.read_bytes()).hexdigest())\n"
    )
    lines = _ok(_run([str(venv / "bin" / "python"), "-c", probe, str(again)], cwd=tmp_path, env=env)).split("\n")
    (how_a, path_a, sha_a), (how_b, _, sha_b) = lines[0].split(), lines[1].split()
    assert how_a == how_b == "installed" and sha_a == sha_b
    with zipfile.ZipFile(wheel) as original, zipfile.ZipFile(path_a) as recreated:
        def names(z: zipfile.ZipFile) -> set[str]:
            return {n for n in z.namelist() if not n.endswith("/RECORD")}
        assert names(original) == names(recreated)
        for name in names(original):
            assert original.read(name) == recreated.read(name), name

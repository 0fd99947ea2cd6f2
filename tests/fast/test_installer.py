"""The installer without services: spec key, version, schema guard, pins, and install.sh run for real
on a tiny bundle (a one-module airlift wheel), including tampering and hostile names."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from airlift import __version__
from airlift.bundle.install_sh import INSTALL_SH, render_install_sh
from airlift.bundle.layout import DERIVED_FILES, Bundle
from airlift.bundle.manifest import FileArtifact, FileEntry, Manifest, ManifestError, now_iso
from airlift.bundle.signing import keygen, sign
from airlift.config.spec import Spec, artifact_id_of
from airlift.fetch.installer import compatible_platforms, marker_gaps, pins, runtime_requirements
from airlift.util.errors import InputError

REPO = Path(__file__).resolve().parents[2]
AIRLIFT = str(Path(sys.executable).parent / "airlift")


def _record(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def tiny_airlift_wheel() -> tuple[str, bytes]:
    """A real (if tiny) airlift wheel: one module and the `airlift` console script."""
    info = "airlift-0.0.1.dist-info"
    files = {
        "tinyairlift.py": b"import sys\ndef main():\n    print('airlift 0.0.1')\n    return 0\n",
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: airlift\nVersion: 0.0.1\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[console_scripts]\nairlift = tinyairlift:main\n",
    }
    record = "".join(f"{n},{_record(d)},{len(d)}\n" for n, d in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"tiny-{os.getpid()}.whl"
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = out.read_bytes()
    out.unlink()
    return "airlift-0.0.1-py3-none-any.whl", data


def tiny_bundle(root: Path, *, wheel_name: str | None = None) -> Bundle:
    name, data = tiny_airlift_wheel()
    bundle = Bundle(root)
    bundle.store.ensure_dirs()
    wheel = bundle.store.put_bytes(data)
    script = bundle.store.put_bytes(render_install_sh())
    files = [
        FileEntry(path="install.sh", size=script.size, sha256=script.sha256, executable=True),
        FileEntry(path=wheel_name or name, size=wheel.size, sha256=wheel.sha256),
    ]
    source = {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}", "platform": "manylinux_2_28_x86_64",
        "airlift_version": "0.0.1", "airlift_wheel": name, "airlift_sha256": wheel.sha256, "built_from": "checkout",
    }
    artifact = FileArtifact(id="tools/airlift", kind="installer", source=source, files=files)
    bundle.write_manifest(Manifest(name="tiny", created=now_iso(), airlift_version=__version__, artifacts=[artifact]))
    return bundle


def install(bundle: Bundle, prefix: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(prefix.parent)}
    argv = ["sh", str(bundle.root / INSTALL_SH), "--prefix", str(prefix), "--python", sys.executable, *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def test_spec_installer_key_and_artifact_id() -> None:
    spec = Spec.model_validate({"name": "x", "installer": {"python": "3.12", "platform": "manylinux_2_28_aarch64"}})
    assert spec.artifact_ids() == ["tools/airlift"] and artifact_id_of(spec.installer, "installer") == "tools/airlift"
    assert spec.installer.target() == ("3.12", "manylinux_2_28_aarch64")
    python, platform = Spec.model_validate({"name": "x", "installer": {}}).installer.target()
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}" and platform != "any"
    for bad in ({"pyton": "3.11"}, {"python": "3"}, {"platform": "../x"}):
        with pytest.raises(ValueError):
            Spec.model_validate({"name": "x", "installer": bad})


def test_version_and_manifest_records_it(tmp_path) -> None:
    out = subprocess.run([AIRLIFT, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"airlift {__version__}" == f"airlift {importlib.metadata.version('airlift')}"
    bundle = tiny_bundle(tmp_path / "b")
    assert json.loads(bundle.manifest_bytes())["airlift_version"] == __version__


def test_newer_schema_version_names_both(tmp_path) -> None:
    raw = {"schema_version": 7, "name": "n", "created": "x", "artifacts": [], "airlift_version": "9.1"}
    with pytest.raises(ManifestError, match=r"schema_version 7 \(written by airlift 9\.1\) is newer than this airlift .* \(schema_version 1\)"):
        Manifest.parse(json.dumps(raw).encode(), origin="m.json")
    assert issubclass(ManifestError, InputError)  # exit 2
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(raw | {"airlift_version": "$(reboot)"}))
    result = subprocess.run([AIRLIFT, "inspect", str(tmp_path / "b")], capture_output=True, text=True)
    assert result.returncode == 2 and "schema_version 7 is newer" in result.stderr and "reboot" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pins_are_constraints_txt() -> None:
    """In a checkout the pins (installed versions) are constraints.txt's, for every runtime dependency."""
    pinned = dict(line.split("==") for line in pins())
    wanted = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            wanted[name.strip().lower().replace("_", "-")] = version.strip()
    names = [r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower().replace("_", "-") for r in runtime_requirements()]
    assert "prefect" in names
    for name in names:
        assert pinned[name] == wanted[name], name


def test_compatible_platforms_and_marker_gaps() -> None:
    assert compatible_platforms("manylinux_2_19_x86_64") == ("manylinux_2_18_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
    assert compatible_platforms("macosx_11_0_arm64") == ()
    report = [{"metadata": {"name": "redis", "requires_dist": ['async-timeout>=4.0.3; python_full_version < "3.11.3"', 'hiredis; extra == "x"']}}]
    assert marker_gaps(report, "3.11") == ["async-timeout>=4.0.3"]
    assert marker_gaps(report, "3.12") == []


def test_install_sh_has_no_manifest_text_and_is_listed(tmp_path) -> None:
    bundle = tiny_bundle(tmp_path / "b")
    assert INSTALL_SH in DERIVED_FILES
    assert (bundle.root / INSTALL_SH).read_bytes() == render_install_sh()
    sums = (bundle.root / "SHA256SUMS").read_text()
    assert f"{hashlib.sha256(render_install_sh()).hexdigest()}  install.sh" in sums
    assert bundle.layout_problems(bundle.read_manifest()) == {}
    (bundle.root / INSTALL_SH).write_bytes(b"#!/bin/sh\necho evil\n")
    assert bundle.layout_problems(bundle.read_manifest()) == {"install.sh": "corrupt"}


def test_install_sh_refuses_before_making_anything(tmp_path) -> None:
    """Every refusal here happens before DIR exists (the successful install: tests/test_installer.py)."""
    bundle = tiny_bundle(tmp_path / "b")
    _, pub = keygen(tmp_path / "k")
    unsigned = install(bundle, tmp_path / "p0", "--pubkey", str(pub))
    assert unsigned.returncode == 1 and "not signed" in unsigned.stderr and not (tmp_path / "p0").exists()
    sign(bundle, tmp_path / "k.key")
    hostile = install(bundle, tmp_path / "x$(touch pwned)", "--pubkey", str(pub))
    assert hostile.returncode == 2 and "must not contain" in hostile.stderr and not (tmp_path / "pwned").exists()
    _, other_pub = keygen(tmp_path / "other")
    refused = install(bundle, tmp_path / "p2", "--pubkey", str(other_pub))
    assert refused.returncode == 1 and "does not match its signature" in refused.stderr and not (tmp_path / "p2").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    busy = install(bundle, tmp_path / "full", "--pubkey", str(pub))
    assert busy.returncode == 1 and "not empty" in busy.stderr and (tmp_path / "full" / "keep").exists()


def test_install_sh_refuses_tampered_blob_and_hostile_names(tmp_path) -> None:
    bundle = tiny_bundle(tmp_path / "b")
    wheel = next(f for f in bundle.read_manifest().artifacts[0].files if f.path.endswith(".whl"))
    blob = bundle.store.blob_path(wheel.sha256)
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[10] ^= 1
    blob.write_bytes(bytes(data))
    result = install(bundle, tmp_path / "p")
    assert result.returncode == 1 and "does not match its sha256" in result.stderr and not (tmp_path / "p").exists()
    manifest = json.loads(bundle.manifest_bytes())
    manifest["artifacts"][0]["files"][1]["path"] = "../$(touch pwned).whl"
    (bundle.root / "manifest.json").write_text(json.dumps(manifest))
    result = install(bundle, tmp_path / "p4")
    assert result.returncode == 1 and "is not a wheel file name" in result.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "p4").exists()


def test_install_sh_names_the_python_it_needs(tmp_path) -> None:
    bundle = tiny_bundle(tmp_path / "b")
    manifest = json.loads(bundle.manifest_bytes())
    manifest["artifacts"][0]["source"]["python"] = "3.99"
    (bundle.root / "manifest.json").write_text(json.dumps(manifest))
    result = install(bundle, tmp_path / "p")
    assert result.returncode == 1 and "Python 3.99" in result.stderr and "--python" in result.stderr


def test_install_sh_never_imports_code_planted_beside_it(tmp_path) -> None:
    """`python -m venv` run from inside the bundle would import a planted venv.py (no signature covers it)."""
    bundle = tiny_bundle(tmp_path / "b")
    _, pub = keygen(tmp_path / "k")
    sign(bundle, tmp_path / "k.key")
    for name in ("venv.py", "pip.py", "ensurepip.py"):
        (bundle.root / name).write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').write('{name}')\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    argv = ["sh", "install.sh", "--prefix", str(tmp_path / "p"), "--python", sys.executable, "--pubkey", str(pub)]
    result = subprocess.run(argv, cwd=bundle.root, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "PWNED").exists()
    assert (tmp_path / "p" / "bin" / "airlift").exists()


def test_install_sh_checks_a_signature_with_an_expiry(tmp_path) -> None:
    bundle = tiny_bundle(tmp_path / "b")
    _, pub = keygen(tmp_path / "k")
    sign(bundle, tmp_path / "k.key", expires_in=3600)
    valid = install(bundle, tmp_path / "p1", "--pubkey", str(pub))
    assert valid.returncode == 0 and "signature valid" in valid.stdout, valid.stderr
    sign(bundle, tmp_path / "k.key", expires_in=-60)
    expired = install(bundle, tmp_path / "p2", "--pubkey", str(pub))
    assert expired.returncode == 1 and "expired" in expired.stderr and not (tmp_path / "p2").exists()
    sig = bundle.root / "manifest.json.sig"
    lines = sig.read_text().splitlines()
    later = lines[1].replace(lines[1][8:12], str(int(lines[1][8:12]) + 5))  # push the expiry out: the signature breaks
    sig.write_text(f"{lines[0]}\n{later}\n")
    moved = install(bundle, tmp_path / "p3", "--pubkey", str(pub))
    assert moved.returncode == 1 and "does not match its signature" in moved.stderr and not (tmp_path / "p3").exists()

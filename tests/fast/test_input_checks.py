"""Input errors found before any flow run (exit 2, one line with file:line), with Prefect never imported."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.fast.test_cli_startup import PROBE


def _run(tmp_path, *args: str) -> tuple[dict, str]:
    env = {"AIRLIFT_HOME": str(tmp_path / "home"), "AIRLIFT_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr.strip()


def test_missing_path_is_refused_at_spec_load_with_its_line(tmp_path):
    (tmp_path / "there.txt").write_text("x")
    (tmp_path / "spec.yaml").write_text(
        "name: paths\ndatasets:\n  - url: https://example.com/a\n  - path: there.txt\n  - path: /x/nope\n"
    )
    for command in (["plan", "spec.yaml"], ["build", "spec.yaml", "--out", "b"]):
        result, err = _run(tmp_path, *command)
        assert result == {"code": 2, "prefect": False}, (command, err)
        assert err == "airlift: error: spec.yaml:5: datasets[2].path: /x/nope does not exist"
    assert not (tmp_path / "home" / "server.json").exists()


def test_sign_with_a_public_key_is_refused_before_any_flow(tmp_path):
    from airlift.bundle.layout import Bundle
    from airlift.bundle.manifest import Manifest, now_iso
    from airlift.bundle.signing import keygen

    bundle = Bundle(tmp_path / "bundle")
    bundle.store.ensure_dirs()
    bundle.write_manifest(Manifest(name="tiny", created=now_iso(), artifacts=[]))
    _, pub = keygen(tmp_path / "site")
    result, err = _run(tmp_path, "sign", "bundle", "--key", str(pub))
    assert result == {"code": 2, "prefect": False}
    assert err == f"airlift: error: --key {pub}: is a public key; sign needs the private key (PREFIX.key from keygen)"
    (tmp_path / "junk.key").write_text("not a key\n")
    result, err = _run(tmp_path, "sign", "bundle", "--key", "junk.key")
    assert result == {"code": 2, "prefect": False} and "not a PEM private key" in err


def test_build_out_into_a_non_empty_non_bundle_directory_is_refused(tmp_path):
    (tmp_path / "spec.yaml").write_text("name: empty\n")
    (tmp_path / "home-dir").mkdir()
    (tmp_path / "home-dir" / "thesis.tex").write_text("years of work")
    result, err = _run(tmp_path, "build", "spec.yaml", "--out", "home-dir")
    assert result == {"code": 2, "prefect": False}
    assert err == "airlift: error: --out home-dir: an existing directory that is neither empty nor a bundle; choose a new one"
    (tmp_path / "afile").write_text("x")
    result, err = _run(tmp_path, "build", "spec.yaml", "--out", "afile")
    assert result == {"code": 2, "prefect": False} and "not a directory" in err
    assert (tmp_path / "home-dir" / "thesis.tex").read_text() == "years of work"

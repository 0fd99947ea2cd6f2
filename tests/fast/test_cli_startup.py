"""`airlift --help`, input errors and `inspect` never import Prefect (they cost no start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import sys
from airlift.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
import json
print(json.dumps({"code": code, "prefect": any(m == "prefect" or m.startswith("prefect.") for m in sys.modules)}))
"""


def _run(tmp_path, *args: str) -> dict:
    env = {"AIRLIFT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_does_not_import_prefect(tmp_path):
    result = _run(tmp_path, "--help")
    assert result == {"code": 0, "prefect": False}


def test_an_input_error_does_not_import_prefect_or_start_a_server(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: Not Valid\n")
    result = _run(tmp_path, "build", "bad.yaml", "--out", "b")
    assert result == {"code": 2, "prefect": False}
    assert not (tmp_path / "home" / "server.json").exists()


def test_inspect_runs_without_prefect(tmp_path):
    from airlift.bundle.layout import Bundle
    from airlift.bundle.manifest import Manifest, now_iso

    bundle = Bundle(tmp_path / "bundle")
    bundle.store.ensure_dirs()
    bundle.write_manifest(Manifest(name="tiny", created=now_iso(), artifacts=[]))
    result = _run(tmp_path, "inspect", "bundle")
    assert result == {"code": 0, "prefect": False}

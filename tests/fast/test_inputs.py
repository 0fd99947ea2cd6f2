"""Bad input gets exit 2 and one line naming the file, line and field; hostile manifests are refused.

In-process: the CLI's `main()` is called directly (each case is refused before any flow, so no Prefect
starts); what the process would print on stderr and exit with is what is asserted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from airlift.cli.main import main

GOOD_SPEC = """name: demo
models:
  - hf: acme/model
    revision: main
datasets:
  - url: https://example.invalid/data.tar
images:
  - busybox:latest
jobs:
  - name: prep
    image: busybox:latest
    command: ["true"]
    uses: [files/data.tar]
"""


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the subprocess would have had: its own cache, no API URL; main()'s env defaults undone afterwards."""
    monkeypatch.setenv("AIRLIFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    for name in ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "DO_NOT_TRACK"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`airlift ARGS` in this process, from `tmp_path`: exit code, stdout and stderr as a process would give them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's errors exit
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["airlift", *args], code, out.getvalue(), err.getvalue())


def assert_one_line_exit_2(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("mutation", "needles"),
    [
        (("revision: main", "revison: main"), ["spec.yaml:4", "models[0].revison", "unknown key"]),
        (("name: demo", "name: Demo Name"), ["spec.yaml:1", "name"]),
        (("  - hf: acme/model", "  - hf: not-a-repo-id"), ["spec.yaml:3", "models[0].hf"]),
        (("  - url: https://example.invalid/data.tar", "  - url: ftp://example.invalid/data.tar"), ["spec.yaml:6", "datasets[0].url"]),
        (("    uses: [files/data.tar]", "    uses: [files/other.tar]"), ["spec.yaml:13", "jobs[0].uses[0]", "files/other.tar"]),
        (("    image: busybox:latest", "    image: alpine:3"), ["spec.yaml:11", "jobs[0].image"]),
        (("datasets:", "datasetz:"), ["spec.yaml:5", "datasetz", "unknown key"]),
    ],
)
def test_bad_spec_is_one_line_exit_2(tmp_path, mutation, needles):
    old, new = mutation
    (tmp_path / "spec.yaml").write_text(GOOD_SPEC.replace(old, new, 1))
    proc = run(tmp_path, "build", "spec.yaml", "--out", "bundle")
    assert_one_line_exit_2(proc, *needles)
    assert not (tmp_path / "bundle").exists()


def test_malformed_yaml_and_missing_file(tmp_path):
    (tmp_path / "spec.yaml").write_text("name: x\nmodels:\n  - hf: [unclosed\n")
    assert_one_line_exit_2(run(tmp_path, "build", "spec.yaml", "--out", "b"), "spec.yaml:", "invalid YAML")
    assert_one_line_exit_2(run(tmp_path, "build", "nope.yaml", "--out", "b"), "nope.yaml", "not found")


def test_bad_arguments_are_exit_2(tmp_path):
    assert_one_line_exit_2(run(tmp_path, "build"), "arguments")
    assert_one_line_exit_2(run(tmp_path, "frobnicate"), "invalid choice")
    assert_one_line_exit_2(run(tmp_path, "verify", "no-such-bundle"), "no-such-bundle")
    assert_one_line_exit_2(run(tmp_path, "transfer", "x", "--to", "ftp://h/p"), "--to")


def test_site_profile_errors_name_the_file_that_has_the_field(tmp_path):
    (tmp_path / "base.yaml").write_text("s3: {bucket: Bad_Bucket}\nshared_root: /srv/airgap\n")
    (tmp_path / "site.yaml").write_text("extends: base.yaml\nregistry: {url: registry.internal:5000}\n")
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    proc = run(tmp_path, "ingest", "bundle", "--site", "site.yaml")
    assert_one_line_exit_2(proc, "base.yaml:1", "s3.bucket")

    (tmp_path / "site.yaml").write_text("extends: base.yaml\nregistry: {url: registry.internal:5000, insecur: true}\n")
    (tmp_path / "base.yaml").write_text("shared_root: /srv/airgap\n")
    assert_one_line_exit_2(run(tmp_path, "ingest", "bundle", "--site", "site.yaml"), "site.yaml:2", "registry.insecur", "unknown key")

    (tmp_path / "site.yaml").write_text("shared_root: relative/path\n")
    assert_one_line_exit_2(run(tmp_path, "ingest", "bundle", "--site", "site.yaml"), "site.yaml:1", "shared_root", "absolute")


def test_site_extends_merges_and_child_wins():
    from airlift.config.site import load_site

    root = Path(__file__).parent.parent / "data"
    site = load_site(root / "site-child.yaml")
    assert site.s3 is not None and site.s3.bucket == "child-bucket" and site.s3.prefix == "base/prefix"
    assert str(site.shared_root) == "/srv/airgap"


@pytest.mark.parametrize(
    "bad_path",
    ["../escape.txt", "/etc/passwd", "a/../../b", "a//b", "./x"],
)
def test_hostile_manifest_paths_are_rejected_with_exit_2(tmp_path, bad_path):
    bundle = tmp_path / "bundle"
    (bundle / "blobs" / "sha256").mkdir(parents=True)
    manifest = {
        "schema_version": 1, "name": "evil", "created": "2026-01-01T00:00:00Z",
        "artifacts": [{"id": "files/evil", "kind": "path", "source": {}, "files": [{"path": bad_path, "size": 1, "sha256": "a" * 64}]}],
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    proc = run(tmp_path, "verify", "bundle")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "path" in proc.stderr and "manifest.json" in proc.stderr
    site = tmp_path / "site.yaml"
    site.write_text(f"shared_root: {tmp_path / 'root'}\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run(tmp_path, "ingest", "bundle", "--site", str(site))
    assert proc.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "ingest of a hostile bundle wrote something"
    shutil.rmtree(bundle)


def test_hostile_manifest_ids_and_sizes(tmp_path):
    from airlift.bundle.manifest import Manifest, ManifestError

    base = {"schema_version": 1, "name": "x", "created": "t", "artifacts": []}
    for artifact in (
        {"id": "files/../../etc", "kind": "path", "source": {}},
        {"id": "/abs", "kind": "path", "source": {}},
        {"id": "files/ok", "kind": "path", "source": {}, "files": [{"path": "a", "size": 1 << 60, "sha256": "a" * 64}]},
        {"id": "files/ok", "kind": "path", "source": {}, "files": [{"path": "a", "size": 1, "sha256": "../../x"}]},
    ):
        with pytest.raises(ManifestError):
            Manifest.parse(json.dumps({**base, "artifacts": [artifact]}).encode(), origin="m")
    with pytest.raises(ManifestError):
        Manifest.parse(b"[1,2]", origin="m")
    with pytest.raises(ManifestError):
        Manifest.parse(json.dumps({**base, "schema_version": 99}).encode(), origin="m")

"""Bad input gets exit 2 and one line naming the file, line and field; hostile manifests are refused.

In-process: the CLI's `main()` is called directly (each case is refused before any flow, so no Prefect
starts); what the process would print on stderr and exit with is what is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fast.conftest import run_cli

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
def _cli(cli_env: None) -> None:
    """Every case here runs the CLI in-process (tests/fast/conftest.py: cli_env, run_cli)."""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)


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


# -- moved from tests/test_reliability.py and tests/test_sources.py: refused before any flow, so in-process ----------
KEYS = ["name", "platform", "models", "datasets", "images", "repos", "wheels", "jobs", "hf", "revision", "url", "path", "ref", "typo"]
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(["a/b", "x", "../..", "https://h/f", "linux/amd64"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_fuzzed_specs_fail_only_with_input_errors(tmp_path_factory, document):
    from airlift.config.spec import load_spec
    from airlift.util.errors import InputError

    path = tmp_path_factory.mktemp("fuzz") / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_spec(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


@pytest.mark.parametrize("bad", ["name: x\nmodels: [{hf: a/b, revision: 1}]\n", "name: x\nimages: [{ref: ''}]\n", "- just\n- a list\n"])
def test_more_malformed_specs_are_exit_2(tmp_path, bad):
    (tmp_path / "bad.yaml").write_text(bad)
    result = run(tmp_path, "build", str(tmp_path / "bad.yaml"), "--out", "b")
    assert result.returncode == 2, result.stderr
    assert "bad.yaml" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ngc_without_a_key_names_the_variable(tmp_path, monkeypatch):
    (tmp_path / "ngc.yaml").write_text("name: ngc\nmodels:\n  - ngc: nvidia/nemo/tiny-nemo:1.0\n")
    for name in [k for k in os.environ if k.startswith("NGC_")]:
        monkeypatch.delenv(name)
    proc = run(tmp_path, "build", str(tmp_path / "ngc.yaml"), "--out", "b")
    assert proc.returncode == 1
    assert "NGC_API_KEY" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

"""The spec and site models: what parses, and the one-line `file:line: field: problem` for what does not."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from airlift.config.site import load_site
from airlift.config.spec import load_spec
from airlift.util.errors import InputError

LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[^:]+): (?P<problem>.+)$")

FULL_SPEC = """\
name: nemotron-sft
platform: linux/amd64
models:
  - hf: org/name
    revision: main
    allow: ["*.json", "*.safetensors"]
    ignore: ["*.bin"]
  - ngc: org/team/name:version
datasets:
  - hf: acme/corpus
  - url: https://host/path/file.tar
    sha256: "%s"
  - path: /data/checkpoints/run7
  - s3: s3://bucket/prefix/
images:
  - nvcr.io/nvidia/nemo:25.11
  - ref: registry/repo:tag
    platform: linux/arm64
  - ref: myteam/trainer:dev
    from: docker
repos:
  - git: https://github.com/NVIDIA/Megatron-LM.git
    ref: core_r0.12.0
wheels:
  - requirements: ["six==1.16.0"]
    python: "3.12"
    platform: manylinux_2_28_x86_64
jobs:
  - name: prep
    image: nvcr.io/nvidia/nemo:25.11
    command: ["python", "prep.py"]
    uses: [datasets/acme/corpus]
  - name: train
    image: nvcr.io/nvidia/nemo:25.11
    command: ["python", "train.py"]
    needs: [prep]
    resources: {nodes: 1, gpus_per_node: 8, time: "04:00:00"}
""" % ("ab" * 32)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def located_error(excinfo: pytest.ExceptionInfo[InputError], path: Path) -> re.Match[str]:
    """The error is one line, `file:line: field: problem`, naming `path`."""
    message = str(excinfo.value)
    assert "\n" not in message, message
    match = LOCATED.match(message)
    assert match, f"not `file:line: field: problem`: {message!r}"
    assert match["file"] == str(path), message
    assert excinfo.value.exit_code == 2
    return match


def spec_error(tmp_path: Path, text: str) -> re.Match[str]:
    path = write(tmp_path, "airgap.yaml", text)
    with pytest.raises(InputError) as excinfo:
        load_spec(path)
    return located_error(excinfo, path)


# -- spec ---------------------------------------------------------------------------------------------
def test_full_spec_parses_with_contract_artifact_ids(tmp_path):
    (tmp_path / "run7").mkdir()  # a `path:` must exist when the spec loads
    spec = load_spec(write(tmp_path, "airgap.yaml", FULL_SPEC.replace("/data/checkpoints/run7", str(tmp_path / "run7"))))
    assert spec.name == "nemotron-sft"
    assert spec.artifact_ids() == [
        "models/org/name",
        "models/org/team/name",
        "datasets/acme/corpus",
        "files/file.tar",
        "files/run7",
        "files/prefix",
        "images/nvcr.io/nvidia/nemo:25.11",
        "images/registry/repo:tag",
        "images/myteam/trainer:dev",
        "repos/Megatron-LM",
        "wheels",
    ]
    assert [job.name for job in spec.jobs] == ["prep", "train"]
    assert spec.jobs[1].needs == ["prep"] and spec.jobs[1].resources.gpus_per_node == 8
    docker_image = spec.images[2]
    assert docker_image.from_ == "docker" and spec.images[1].platform == "linux/arm64"


def test_minimal_spec_takes_defaults(tmp_path):
    spec = load_spec(write(tmp_path, "airgap.yaml", "name: tiny\n"))
    assert spec.platform == "linux/amd64"
    assert spec.artifact_ids() == [] and spec.jobs == []


def test_unknown_top_level_key_is_named_with_its_line(tmp_path):
    match = spec_error(tmp_path, "name: ok\nmodels: []\nmodles:\n  - hf: a/b\n")
    assert (match["line"], match["field"], match["problem"]) == ("3", "modles", "unknown key (did you mean 'models'?)")


def test_unknown_key_inside_an_entry_is_named(tmp_path):
    match = spec_error(tmp_path, "name: ok\nmodels:\n  - hf: acme/tiny\n    revison: main\n")
    assert match["line"] == "4"
    assert match["field"] == "models[0].revison" and match["problem"] == "unknown key (did you mean 'revision'?)"


@pytest.mark.parametrize("name", ["Nemotron", "has space", "-lead", "semi;colon"])
def test_bad_spec_name_is_refused(tmp_path, name):
    match = spec_error(tmp_path, f"name: '{name}'\n")
    assert (match["line"], match["field"]) == ("1", "name")


def test_bad_platform_is_refused(tmp_path):
    match = spec_error(tmp_path, "name: ok\nplatform: Linux-AMD64\n")
    assert (match["line"], match["field"]) == ("2", "platform")


def test_bad_platform_on_one_image_is_refused(tmp_path):
    match = spec_error(tmp_path, "name: ok\nimages:\n  - ref: a/b:1\n    platform: 'linux amd64'\n")
    assert match["field"] == "images[0].platform" and match["line"] == "4"


def test_duplicate_artifact_ids_are_refused(tmp_path):
    match = spec_error(
        tmp_path,
        "name: ok\ndatasets:\n  - url: https://a.example/x/data.tar\n  - url: https://b.example/y/data.tar\n",
    )
    assert match["field"] == "datasets[1]" and match["line"] == "4"
    assert "files/data.tar" in match["problem"] and "already used" in match["problem"]


def test_job_image_must_be_listed_under_images(tmp_path):
    match = spec_error(
        tmp_path,
        "name: ok\nimages: [alpine:3]\njobs:\n  - name: a\n    image: ubuntu:22.04\n    command: [python, run.py]\n",
    )
    assert (match["line"], match["field"]) == ("5", "jobs[0].image")
    assert "ubuntu:22.04" in match["problem"] and "not listed under images" in match["problem"]


def test_job_needs_a_missing_job(tmp_path):
    match = spec_error(
        tmp_path,
        "name: ok\nimages: [alpine:3]\njobs:\n  - name: a\n    image: alpine:3\n    command: [python, run.py]\n    needs: [ghost]\n",
    )
    assert match["field"] == "jobs[0].needs[0]" and "ghost" in match["problem"]


def test_job_uses_an_unknown_artifact(tmp_path):
    match = spec_error(
        tmp_path,
        "name: ok\nimages: [alpine:3]\njobs:\n  - name: a\n    image: alpine:3\n    command: [python, run.py]\n    uses: [models/x/y]\n",
    )
    assert match["field"] == "jobs[0].uses[0]" and "models/x/y" in match["problem"]


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "airgap.yaml", "name: ok\nmodels: [\n  - hf: a/b\n")
    with pytest.raises(InputError) as excinfo:
        load_spec(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}:") and "invalid YAML" in message and "\n" not in message


def test_missing_spec_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="spec not found"):
        load_spec(tmp_path / "nope.yaml")


# -- site ---------------------------------------------------------------------------------------------
def test_site_extends_merges_nested_keys_and_child_wins(tmp_path):
    write(tmp_path, "base.yaml", """\
        registry: {url: registry.internal:5000/mirror}
        slurm: {partition: batch, account: ml, container_runtime: pyxis}
        shared_root: /gpfs/base
    """)
    child = write(tmp_path, "site.yaml", """\
        extends: base.yaml
        slurm: {partition: gpu}
        shared_root: /gpfs/airgap
    """)
    site = load_site(child)
    assert site.registry is not None and site.registry.url == "registry.internal:5000/mirror"
    assert site.slurm is not None
    assert (site.slurm.partition, site.slurm.account, site.slurm.container_runtime) == ("gpu", "ml", "pyxis")
    assert site.shared_root == Path("/gpfs/airgap")


def test_site_extends_cycle_is_refused(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\nshared_root: /a\n")
    b = write(tmp_path, "b.yaml", "shared_root: /b\nextends: a.yaml\n")
    with pytest.raises(InputError) as excinfo:
        load_site(tmp_path / "a.yaml")
    message = str(excinfo.value)
    assert "cycle" in message and "extends" in message and "\n" not in message
    assert message.startswith(f"{b}:2:")


def test_site_relative_shared_root_is_located(tmp_path):
    path = write(tmp_path, "site.yaml", "registry: {url: reg:5000}\nshared_root: relative/dir\n")
    with pytest.raises(InputError) as excinfo:
        load_site(path)
    match = located_error(excinfo, path)
    assert (match["line"], match["field"]) == ("2", "shared_root")
    assert "absolute" in match["problem"]


def test_site_error_in_the_child_names_the_child_file(tmp_path):
    write(tmp_path, "base.yaml", "shared_root: /gpfs/airgap\n")
    child = write(tmp_path, "site.yaml", "extends: base.yaml\nslurm:\n  container_runtime: podman\n")
    with pytest.raises(InputError) as excinfo:
        load_site(child)
    match = located_error(excinfo, child)
    assert (match["line"], match["field"]) == ("3", "slurm.container_runtime")


def test_site_unknown_key_is_refused(tmp_path):
    path = write(tmp_path, "site.yaml", "shared_root: /gpfs/airgap\nregistri: {url: reg:5000}\n")
    with pytest.raises(InputError) as excinfo:
        load_site(path)
    match = located_error(excinfo, path)
    assert (match["line"], match["field"], match["problem"]) == ("2", "registri", "unknown key (did you mean 'registry'?)")


def test_site_trust_keys_are_relative_to_the_profile(tmp_path):
    (tmp_path / "profiles").mkdir()
    path = write(tmp_path / "profiles", "site.yaml", "trust: {keys: [keys/site.pub]}\n")
    site = load_site(path)
    assert site.trust is not None
    assert [Path(k) for k in site.trust.keys] == [tmp_path / "profiles" / "keys" / "site.pub"]

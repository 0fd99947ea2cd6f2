"""Contract v1.1 for jobs, in-process: mounts and outputs in the spec, pinned checkouts, the run's
environment and mounts in every runtime's script, dry runs, streamed logs, export and inventory."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from airlift.bundle.inventory import Inventory, InventoryArtifact, read_inventory, write_inventory
from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Manifest, now_iso
from airlift.bundle.signing import keygen
from airlift.cli.main import main
from airlift.config.site import Site
from airlift.config.spec import Spec
from airlift.export.outputs import export_outputs
from airlift.jobs.common import JobRecord
from airlift.jobs.dryrun import dry_run
from airlift.jobs.follow import LogFollower
from airlift.jobs.launch import create_output, plan_launch, record_run
from airlift.jobs.sites import require_scheduler
from airlift.jobs.slurm import render_sbatch
from airlift.layouts.checkout import checkout_state, make_checkout
from airlift.util.errors import InputError
from tests.fast.conftest import (
    git_repo_bundle,
    ingested_repo,
    run,
)

IMAGE = "nvcr.io/nvidia/nemo:25.11"


def spec_text(jobs: str, extra: str = "") -> str:
    return f"name: v11\nimages: [{IMAGE}]\ndatasets:\n  - url: https://example.invalid/notes.txt\n{extra}jobs:\n{jobs}"


@pytest.mark.parametrize(("job", "field", "problem"), [
    ("    mounts: [{from: repos/absent, to: /opt/x}]\n", "jobs[0].mounts[0].from", "not an artifact id"),
    ("    outputs: [../escape]\n", "jobs[0].outputs[0]", "'..'"),
    ("    outputs: [/abs]\n", "jobs[0].outputs[0]", "relative"),
    ("    mounts: [{from: files/notes.txt, to: 'relative/x'}]\n", "jobs[0].mounts[0].to", "absolute"),
    ("    mounts: [{from: files/notes.txt, to: '/opt/a:b'}]\n", "jobs[0].mounts[0].to", "no ':'"),
])
def test_bad_mounts_and_outputs_exit_2_naming_file_and_field(tmp_path, capsys, job, field, problem):
    spec = tmp_path / "airgap.yaml"
    spec.write_text(spec_text(f"  - name: train\n    image: {IMAGE}\n    command: [\"true\"]\n{job}"))
    assert main(["build", str(spec), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(spec) in err and field in err and problem in err, err


def test_unsigned_or_foreign_inventory_is_refused_with_pubkey(tmp_path, capsys):
    spec = tmp_path / "airgap.yaml"
    spec.write_text("name: inv\n")
    inv = tmp_path / "inv.json"
    mine, _ = keygen(tmp_path / "mine")
    _, other_pub = keygen(tmp_path / "other")
    write_inventory(inv, Inventory(created=now_iso(), artifacts=[]))
    assert main(["build", str(spec), "--out", str(tmp_path / "b"), "--since", str(inv), "--pubkey", str(tmp_path / "mine.pub")]) == 2
    assert "not signed" in capsys.readouterr().err
    write_inventory(inv, Inventory(created=now_iso(), artifacts=[]), key=mine)
    assert main(["build", str(spec), "--out", str(tmp_path / "b"), "--since", str(inv), "--pubkey", str(other_pub)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(inv) in err and "signature: not signed by a trusted key" in err and len(err.splitlines()) == 1
    assert read_inventory(inv, pubkeys=[tmp_path / "mine.pub"]).artifacts == []
    inv.write_bytes(inv.read_bytes().replace(b'"version"', b' "version"'))  # one byte changed
    with pytest.raises(InputError, match="not signed by a trusted key"):
        read_inventory(inv, pubkeys=[tmp_path / "mine.pub"])


def test_inventory_lists_blobs_the_store_holds(tmp_path):
    blob = "a" * 64
    inv = Inventory(created=now_iso(), artifacts=[InventoryArtifact(id="files/x", kind="url", content_digest="b" * 64, blobs=[blob])])
    write_inventory(tmp_path / "inv.json", inv)
    assert read_inventory(tmp_path / "inv.json").blobs() == {blob}
    (tmp_path / "bad.json").write_text(json.dumps({**json.loads(inv.to_bytes()), "artifacts": [{"id": "x", "kind": "k", "content_digest": "b" * 64, "blobs": ["../x"]}]}))
    with pytest.raises(InputError, match="bad.json: artifacts.0.blobs.0"):
        read_inventory(tmp_path / "bad.json")


def test_checkout_is_the_pinned_commit_read_only_and_preflight_names_a_wrong_one(tmp_path):
    gb, _built, root = ingested_repo(tmp_path)
    checkout = make_checkout(root, "tool", gb.tag_commit)
    assert (checkout / "README.md").read_bytes() == b"version one\n" and not (checkout / "src").exists()
    assert checkout_state(checkout, gb.tag_commit) is None
    assert not os.access(checkout / "README.md", os.W_OK) or os.geteuid() == 0
    assert (checkout.stat().st_mode & 0o222) == 0, "the checkout must be read-only"
    assert "not the pinned" in (checkout_state(checkout, gb.commit) or "")
    assert make_checkout(root, "tool", gb.tag_commit) == checkout  # idempotent


def test_launch_mounts_render_read_only_in_every_runtime(tmp_path):
    gb, built, root = ingested_repo(tmp_path)
    spec = Spec.model_validate({
        "name": "v11", "images": [IMAGE], "repos": [{"git": "https://git.example.invalid/tool.git", "name": "tool"}],
        "jobs": [{"name": "train", "image": IMAGE, "command": ["true"], "outputs": ["checkpoints"],
                  "mounts": [{"from": "repos/tool", "to": "/opt/tool"}, {"from": "files/notes.txt", "to": "/data/notes.txt"}]}],
    })
    job = spec.jobs[0]
    launch = plan_launch(built.manifest, root, job, materialize=True)
    assert launch.problems == [] and not Path(launch.output).exists(), "preflight makes no run directory"
    create_output(launch, job)
    checkout = root / "checkouts" / "tool" / gb.commit
    assert [(m.source, m.target) for m in launch.mounts] == [(str(checkout), "/opt/tool"), (str(root / "files" / "notes.txt"), "/data/notes.txt")]
    assert Path(launch.output, "checkpoints").is_dir()
    out = launch.output  # the only writable bind; shared_root itself is read-only
    for runtime, expect in [("docker", f"-v {root}:{root}:ro -v {out}:{out} -v {checkout}:/opt/tool:ro"),
                            ("apptainer", f"--bind {root}:{root}:ro,{out}:{out},{checkout}:/opt/tool:ro,"),
                            ("pyxis", f"--container-mounts={root}:{root}:ro,{out}:{out},{checkout}:/opt/tool:ro,"),
                            ("none", f"export AIRLIFT_MOUNT_OPT_TOOL={checkout}")]:
        site = require_scheduler(Site.model_validate({
            "shared_root": str(root), "registry": {"url": "r.internal:5000"}, "slurm": {"container_runtime": runtime}}), source="site.yaml")
        script = render_sbatch(spec, job, site=site, log_dir=root / "logs", inherited={}, launch=launch)
        assert expect in script, (runtime, script)
        assert f"export AIRLIFT_OUTPUT={launch.output}" in script and f"export WANDB_DIR={launch.output}" in script
    site = require_scheduler(Site.model_validate({"shared_root": str(root), "slurm": {"container_runtime": "none"}}), source="site.yaml")
    with_spec = built.manifest.model_copy(update={"spec": spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)})
    text = dry_run(with_spec, site, [])
    assert "### job train: sbatch --parsable" in text and "nothing was submitted" in text and "### preflight: ok" in text
    assert not (root / ".airlift" / "jobs").exists()


def test_a_mount_not_ingested_or_not_in_the_bundle(tmp_path):
    gb, built = git_repo_bundle(tmp_path)
    job = Spec.model_validate({
        "name": "v11", "images": [IMAGE], "repos": [{"git": "https://git.example.invalid/tool.git", "name": "tool"}],
        "datasets": [{"url": "https://example.invalid/notes.txt"}],
        "jobs": [{"name": "train", "image": IMAGE, "command": ["true"], "mounts": [{"from": "repos/tool", "to": "/opt/tool"}]}],
    }).jobs[0]
    launch = plan_launch(built.manifest, tmp_path / "root", job, materialize=True)
    assert launch.problems == [f"job train: mount repos/tool is not ingested under {tmp_path / 'root'}; run airlift ingest"]
    other = job.model_copy(update={"mounts": [job.mounts[0].model_copy(update={"from_": "files/notes.txt"})]})
    with pytest.raises(InputError, match="files/notes.txt is not in the bundle"):
        plan_launch(built.manifest, tmp_path / "root", other, materialize=False)


def test_follower_passes_whole_lines_as_written_and_the_rest_at_the_end(tmp_path):
    log = tmp_path / "job.out"
    got: list[str] = []
    follower = LogFollower(got.append, max_bytes=8)
    follower.poll({"j": str(log)})  # not written yet
    log.write_bytes(b"one\ntw")
    follower.poll({"j": str(log)})
    assert "".join(got) == "[j] one\n"
    with open(log, "ab") as f:
        f.write(b"o\nthree-without-newline")
    follower.poll({"j": str(log)}, final=True)
    assert "".join(got) == "[j] one\n[j] two\n[j] three-without-newline\n"


def _run(root: Path, spec: Spec, job_name: str, *, exit_code: str | None, files: dict[str, bytes]) -> str:
    job = next(j for j in spec.jobs if j.name == job_name)
    launch = plan_launch(_EMPTY, root, job, materialize=True)
    create_output(launch, job)
    for rel, data in files.items():
        Path(launch.output, rel).parent.mkdir(parents=True, exist_ok=True)
        Path(launch.output, rel).write_bytes(data)
    exit_file = root / "logs" / f"{launch.run_id}.exit"
    if exit_code is not None:
        exit_file.parent.mkdir(parents=True, exist_ok=True)
        exit_file.write_text(exit_code)
    record_run(root, spec, job, JobRecord(job.name, "7", "s", "l", str(exit_file), now_iso(), run_id=launch.run_id))
    return launch.run_id


_EMPTY = Manifest(name="e", created=now_iso(), artifacts=[])


def test_export_takes_finished_runs_only_is_idempotent_and_refuses_what_is_too_large(tmp_path):
    root = tmp_path / "root"
    spec = Spec.model_validate({"name": "v11", "images": [IMAGE], "jobs": [
        {"name": "train", "image": IMAGE, "command": ["true"], "outputs": ["checkpoints", "wandb"]},
        {"name": "eval", "image": IMAGE, "command": ["true"], "outputs": ["scores"]},
    ]})
    done = _run(root, spec, "train", exit_code="0", files={"checkpoints/step1.pt": b"w" * 1000, "wandb/offline-run-1/run.wandb": b"r", "scratch/x": b"not declared"})
    _run(root, spec, "train", exit_code=None, files={"checkpoints/step1.pt": b"in progress"})
    _run(root, spec, "train", exit_code="3", files={"checkpoints/step1.pt": b"failed"})
    result = export_outputs(root, tmp_path / "out", jobs=["train"], max_bytes=1 << 20)
    assert sorted(r.status for r in result.runs) == ["exported", "failed", "in-progress"]
    manifest = Bundle(tmp_path / "out").read_manifest()
    assert [a.id for a in manifest.artifacts] == [f"outputs/train/{done}"]
    assert sorted(f.path for f in manifest.artifacts[0].files) == ["checkpoints/step1.pt", "wandb/offline-run-1/run.wandb"]
    before = (tmp_path / "out" / "manifest.json").read_bytes()
    again = export_outputs(root, tmp_path / "out", jobs=["train"], max_bytes=1 << 20)
    assert again.blobs_written == 0 and not again.manifest_changed and (tmp_path / "out" / "manifest.json").read_bytes() == before
    run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=tmp_path / "out")
    small = export_outputs(root, tmp_path / "small", jobs=["train"], max_bytes=100)
    assert [r.status for r in small.runs if r.run_id == done] == ["too-large"]
    assert "1001 bytes > the limit of 100" in next(r.detail for r in small.runs if r.run_id == done)


def test_export_refuses_a_symlink_a_job_planted(tmp_path):
    root = tmp_path / "root"
    spec = Spec.model_validate({"name": "v11", "images": [IMAGE], "jobs": [{"name": "train", "image": IMAGE, "command": ["true"], "outputs": ["ck"]}]})
    run_id = _run(root, spec, "train", exit_code="0", files={"ck/a": b"a"})
    (root / "outputs" / "train" / run_id / "ck" / "secret").symlink_to("/etc/passwd")
    from airlift.util.errors import WorkError

    with pytest.raises(WorkError, match="symlink"):
        export_outputs(root, tmp_path / "out", jobs=[], max_bytes=1 << 20)


def test_ssh_words_are_quoted():
    from airlift.jobs.slurm import remote_command

    hostile = "/tmp/x;touch$IFS/tmp/pwned"
    from airlift.config.site import SlurmSsh

    ssh = SlurmSsh(host="login", user="ops", port=2222, identity="/k", env={"SLURM_CONF": "/etc/s $(id).conf"})
    argv = remote_command(["sbatch", "--parsable", hostile], ssh)
    assert argv[:2] == ["ssh", "-o"] and argv[-3:-1] == ["--", "login"] and argv[argv.index("-l"):argv.index("-l") + 2] == ["-l", "ops"]
    assert shlex.split(argv[-1]) == ["env", "SLURM_CONF=/etc/s $(id).conf", "sbatch", "--parsable", hostile]
    assert remote_command(["squeue"], None) == ["squeue"]
    with pytest.raises(ValueError):
        SlurmSsh(host="-oProxyCommand=touch /tmp/x")


def test_export_refuses_an_output_directory_replaced_by_a_link_out_of_the_root(tmp_path):
    root = tmp_path / "root"
    spec = Spec.model_validate({"name": "v11", "images": [IMAGE], "jobs": [{"name": "train", "image": IMAGE, "command": ["true"], "outputs": ["ck"]}]})
    run_id = _run(root, spec, "train", exit_code="0", files={})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not yours")
    (root / "outputs" / "train" / run_id / "ck").rmdir()  # made (empty) before the job started
    (root / "outputs" / "train" / run_id / "ck").symlink_to(outside)
    from airlift.util.errors import WorkError

    with pytest.raises(WorkError, match="through a symlink"):
        export_outputs(root, tmp_path / "out", jobs=[], max_bytes=1 << 20)


def test_a_forged_run_record_with_dotdot_outputs_is_ignored(tmp_path):
    root = tmp_path / "root"
    path = root / ".airlift" / "runs" / "train" / "r1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"spec": "v11", "job": "train", "run_id": "r1", "backend": "slurm", "scheduler_id": "1",
                                "outputs": ["../../../etc"], "submitted_at": now_iso()}))
    assert export_outputs(root, tmp_path / "out", jobs=[], max_bytes=1 << 20).runs == []


def test_a_marker_pointing_outside_the_root_is_never_mounted(tmp_path):
    _gb, built, root = ingested_repo(tmp_path)
    from airlift.layouts.shared_root import marker_path

    marker = marker_path(root, "files/notes.txt")
    data = json.loads(marker.read_text())
    data["location"] = "/etc"
    marker.write_text(json.dumps(data))
    job = Spec.model_validate({"name": "v11", "images": [IMAGE], "datasets": [{"url": "https://example.invalid/notes.txt"}],
                               "jobs": [{"name": "j", "image": IMAGE, "command": ["true"], "mounts": [{"from": "files/notes.txt", "to": "/n"}]}]}).jobs[0]
    launch = plan_launch(built.manifest, root, job, materialize=False)
    # The source is the artifact's place in the layout; the marker's location text is never used.
    assert launch.problems == [] and [m.source for m in launch.mounts] == [str(root / "files" / "notes.txt")]


def test_dry_run_on_a_prefect_site_prints_the_run_parameters(tmp_path):
    _gb, built, root = ingested_repo(tmp_path)
    spec = Spec.model_validate({"name": "v11", "images": [IMAGE], "repos": [{"git": "https://git.example.invalid/tool.git", "name": "tool"}],
                                "jobs": [{"name": "train", "image": IMAGE, "command": ["python", "t.py"], "mounts": [{"from": "repos/tool", "to": "/opt/tool"}]}]})
    manifest = built.manifest.model_copy(update={"spec": spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)})
    site = require_scheduler(Site.model_validate({"shared_root": str(root), "registry": {"url": "r.internal:5000"}, "prefect": {}}), source="site.yaml")
    text = dry_run(manifest, site, ["train"])
    params = json.loads(text.split("\n", 1)[1].rsplit("### preflight", 1)[0])
    assert text.startswith("### job train: run_deployment('run-job/run-job')")
    assert params["command"] == ["python", "t.py"] and params["env"]["PIP_NO_INDEX"] == "1"
    assert params["mounts"] == [[str(root / "checkouts" / "tool" / built.manifest.artifacts[0].source.commit), "/opt/tool"]]
    assert not (root / "checkouts").exists(), "a dry run creates nothing"

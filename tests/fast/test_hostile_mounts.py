"""Hostile mounts: a job may write its own output only (shared_root is read-only in its container), and
a marker a job forged can never choose what is bound into a later job (nor smuggle ',' or ':' into a
runtime's mount list)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from airlift.config.site import Site
from airlift.config.spec import Spec
from airlift.ingest.sharedfs import materialize
from airlift.jobs.launch import BoundMount, Launch, create_output, plan_launch
from airlift.jobs.prefect import RunJobParameters, run_job_argv
from airlift.jobs.sites import JobSite, require_scheduler
from airlift.jobs.slurm import render_sbatch
from airlift.layouts.shared_root import marker_path
from airlift.util.errors import WorkError
from tests.fast.conftest import build_bundle, url_file

IMAGE = "nvcr.io/nvidia/nemo:25.11"
RUNTIMES = ("docker", "pyxis", "apptainer")


def _setup(tmp_path: Path):
    built = build_bundle(tmp_path / "bundle", [url_file()])
    root = tmp_path / "root"
    for artifact in built.manifest.artifacts:
        materialize(root, artifact, blob_path=built.bundle.store.blob_path)
    spec = Spec.model_validate({
        "name": "v11", "images": [IMAGE], "datasets": [{"url": "https://example.invalid/notes.txt"}],
        "jobs": [{"name": "train", "image": IMAGE, "command": ["true"], "mounts": [{"from": "files/notes.txt", "to": "/data/notes.txt"}]}],
    })
    return built, root, spec, spec.jobs[0]


def _site(root: Path, runtime: str) -> JobSite:
    site = Site.model_validate({"shared_root": str(root), "registry": {"url": "r.internal:5000"}, "slurm": {"container_runtime": runtime}})
    return require_scheduler(site, source="site.yaml")


def _binds(script: str, runtime: str) -> list[str]:
    """The bind specs of the script's container line, one entry per bind (split as the runtime splits them)."""
    words = shlex.split(script.strip().splitlines()[-1])
    if runtime == "docker":
        return [words[i + 1] for i, w in enumerate(words) if w == "-v"]
    if runtime == "apptainer":
        return [b for i, w in enumerate(words) if w == "--bind" for b in words[i + 1].split(",")]
    return [b for w in words if w.startswith("--container-mounts=") for b in w.split("=", 1)[1].split(",")]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_shared_root_is_read_only_and_only_the_run_output_is_writable(tmp_path, runtime):
    built, root, spec, job = _setup(tmp_path)
    launch = plan_launch(built.manifest, root, job, materialize=True)
    create_output(launch, job)
    binds = _binds(render_sbatch(spec, job, site=_site(root, runtime), log_dir=root / "logs", inherited={}, launch=launch), runtime)
    assert binds[0] == f"{root}:{root}:ro"
    writable = [b for b in binds if not b.endswith(":ro")]
    assert writable == [f"{launch.output}:{launch.output}"], binds
    assert f"{root / 'files' / 'notes.txt'}:/data/notes.txt:ro" in binds
    # A run without a launch gets shared_root read-only and nothing writable.
    assert _binds(render_sbatch(spec, job, site=_site(root, runtime), log_dir=root / "logs", inherited={}), runtime) == [f"{root}:{root}:ro"]


def test_prefect_docker_run_binds_shared_root_read_only_and_refuses_a_foreign_output(tmp_path):
    root = "/gpfs/airgap"
    out = f"{root}/outputs/train/20261203T084000Z-1a2b3c"
    params = RunJobParameters(job="train", command=["true"], env={"AIRLIFT_OUTPUT": out}, shared_root=root, image="r/i:1",
                              docker_host=None, mounts=((f"{root}/files/x", "/x"),))
    argv = run_job_argv(params)
    assert [argv[i + 1] for i, w in enumerate(argv) if w == "-v"] == [f"{root}:{root}:ro", f"{out}:{out}", f"{root}/files/x:/x:ro"]
    for forged in ("/", root, f"{root}/.airlift/x/y", f"{root}/outputs/other/r1", f"{root}/outputs/train/.."):
        with pytest.raises(WorkError):
            run_job_argv(RunJobParameters(job="train", command=["true"], env={"AIRLIFT_OUTPUT": forged}, shared_root=root,
                                          image="r/i:1", docker_host=None))


def test_a_forged_marker_location_with_commas_cannot_change_the_mount_source(tmp_path):
    built, root, spec, job = _setup(tmp_path)
    # What a job can do: make a directory whose name is a mount list, and point the marker there.
    hostile = f"{root}/outputs/a,/:/host,{root}/outputs/b"
    Path(hostile).mkdir(parents=True)
    marker = marker_path(root, "files/notes.txt")
    data = json.loads(marker.read_text())
    data["location"] = hostile
    marker.write_text(json.dumps(data))
    launch = plan_launch(built.manifest, root, job, materialize=False)
    assert launch.problems == [] and [m.source for m in launch.mounts] == [str(root / "files" / "notes.txt")]
    for runtime in RUNTIMES:
        script = render_sbatch(spec, job, site=_site(root, runtime), log_dir=root / "logs", inherited={}, launch=launch)
        assert "/host" not in script and "outputs/a," not in script
        assert not any(b.startswith("/:") for b in _binds(script, runtime))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("bad", ["{root}/outputs/a,/:/host,{root}/outputs/b", "{root}/files/a:b", "{root}/files/a\nb", "relative/x"])
def test_a_mount_path_a_runtime_would_split_is_refused(tmp_path, runtime, bad):
    _built, root, spec, job = _setup(tmp_path)
    bad = bad.format(root=root)
    for mount in (BoundMount(bad, "/data/x", "AIRLIFT_MOUNT_DATA_X"), BoundMount(str(root / "files" / "notes.txt"), bad, "X")):
        launch = Launch(run_id="r1", output=str(root / "outputs" / "train" / "r1"), mounts=[mount])
        with pytest.raises(WorkError, match="refusing to render"):
            render_sbatch(spec, job, site=_site(root, runtime), log_dir=root / "logs", inherited={}, launch=launch)
    with pytest.raises(WorkError, match="refusing to render"):
        run_job_argv(RunJobParameters(job="train", command=["true"], env={}, shared_root=str(root), image="r/i:1",
                                      docker_host=None, mounts=((bad, "/x"),)))


def test_a_planted_symlink_at_the_artifact_place_is_never_mounted(tmp_path):
    built, root, _spec, job = _setup(tmp_path)
    place = root / "files" / "notes.txt"
    place.unlink()
    place.symlink_to("/etc")
    launch = plan_launch(built.manifest, root, job, materialize=False)
    assert launch.mounts == [] and "leads outside" in launch.problems[0]

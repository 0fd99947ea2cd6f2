"""The decisions the flows only carry out, checked in-process: the ingest plan (sinks, Docker tags,
`mount_from`, push order), a mirror's bundle naming, the `run-job` argv and the job backends' ordering.

The Prefect job backend is driven through its injected boundary (trigger a run, read a run's state),
with a fake scheduler that records what it was asked; everything else is the real core.
"""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Artifact, Manifest, now_iso, parse_artifact
from airlift.config.site import Site
from airlift.config.spec import Spec
from airlift.fetch.mirror import (
    MirrorResult,
    complete,
    final_name,
    mirror_state,
    next_bundle_dir,
    plan_refresh,
)
from airlift.ingest.plan import plan_ingest
from airlift.jobs.common import (
    JobLedger,
    JobRecord,
    Submission,
    submit_in_order,
    wait_for_jobs,
)
from airlift.jobs.prefect import PrefectBackend, RunJobParameters, job_log_path, run_job_argv, run_job_process
from airlift.jobs.sites import require_scheduler
from airlift.util.errors import WorkError

REGISTRY = "registry.internal:5000/mirror"


def digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def image(ref: str, repository: str, tag: str | None, layers: list[str]) -> Artifact:
    """An image artifact as `airlift build` records it (layers named by label, hashed to digests)."""
    config, manifest = digest(f"{ref}-config"), digest(f"{ref}-manifest")
    blobs = [digest(layer) for layer in layers]
    return parse_artifact({
        "id": f"images/{ref}", "kind": "image",
        "source": {"ref": ref, "from": "registry", "repository": repository, "tag": tag, "digest": manifest, "platform": "linux/amd64"},
        "image": {
            "ref": ref, "digest": manifest, "platform": "linux/amd64", "size": 100, "config": config, "layers": blobs,
            "media_type": "application/vnd.oci.image.manifest.v1+json", "repository": repository, "tag": tag,
        },
        "blobs": [manifest, config, *blobs],
    })


def model(artifact_id: str = "models/acme/tiny") -> Artifact:
    data = b"{}"
    return parse_artifact({
        "id": artifact_id, "kind": "url", "layout": "tree",
        "source": {"url": "https://example.invalid/config.json"},
        "files": [{"path": "config.json", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}],
    })


def manifest(artifacts: list[Artifact], *, resolution: str | None = None) -> Manifest:
    return Manifest(name="fast", created=now_iso(), artifacts=artifacts, resolution=resolution)


def site(**keys: object) -> Site:
    return Site.model_validate(keys)


# -- the ingest plan ------------------------------------------------------------------------------------
BASE_A = image("nvcr.io/nvidia/nemo:25.11", "nvidia/nemo", "25.11", ["base", "nemo"])
BASE_B = image("nvcr.io/nvidia/trainer:1.0", "nvidia/trainer", "1.0", ["base", "trainer"])
ALONE = image("busybox", "library/busybox", "latest", ["busybox"])


def test_each_artifact_goes_to_the_sinks_the_site_names(tmp_path):
    files = model()
    plan = plan_ingest(
        manifest([files, BASE_A]),
        site(shared_root=str(tmp_path), s3={"endpoint_url": "http://s3.internal:8333", "bucket": "tao-storage", "prefix": "airgap"}),
    )
    assert [a.id for a in plan.to_s3] == [files.id]  # images carry no files
    assert [a.id for a in plan.to_shared_root] == [files.id]  # images go to the registry, not shared_root
    assert plan.pushes == [] and plan.loads == []  # no registry, no docker: no image work

    bare = plan_ingest(manifest([files, BASE_A]), site(registry={"url": REGISTRY}))
    assert bare.to_s3 == [] and bare.to_shared_root == []
    assert [p.artifact.id for p in bare.pushes] == [BASE_A.id]


def test_images_are_pushed_in_manifest_order_naming_the_repositories_that_share_their_layers():
    plan = plan_ingest(manifest([BASE_A, ALONE, BASE_B]), site(registry={"url": REGISTRY}))
    assert [p.artifact.id for p in plan.pushes] == [BASE_A.id, ALONE.id, BASE_B.id]
    mounts = {p.artifact.id: p.mount_from for p in plan.pushes}
    assert mounts[BASE_A.id] == ["mirror/nvidia/trainer"]  # the shared base layer can be mounted from there
    assert mounts[BASE_B.id] == ["mirror/nvidia/nemo"]
    assert mounts[ALONE.id] == []


def test_docker_loads_are_tagged_with_the_original_and_the_air_gapped_reference():
    plan = plan_ingest(manifest([BASE_A, ALONE]), site(registry={"url": REGISTRY}, docker={"host": "unix:///run/d.sock"}))
    tags = {load.artifact.id: load.tags for load in plan.loads}
    assert tags[BASE_A.id] == ["nvcr.io/nvidia/nemo:25.11", f"{REGISTRY}/nvidia/nemo:25.11"]
    # A Docker Hub official image: the tag made explicit, and `library/` in the air-gapped path.
    assert tags[ALONE.id] == ["busybox:latest", f"{REGISTRY}/library/busybox:latest"]

    without_registry = plan_ingest(manifest([BASE_A]), site(docker={"host": "unix:///run/d.sock"}))
    assert [load.tags for load in without_registry.loads] == [["nvcr.io/nvidia/nemo:25.11"]]
    assert without_registry.pushes == []


# -- a mirror's bundles ---------------------------------------------------------------------------------
def write_bundle(path: Path, *, resolution: str) -> None:
    Bundle(path).write_manifest(manifest([model()], resolution=resolution))


def test_a_new_bundle_is_a_timestamped_partial_and_only_complete_bundles_count(tmp_path):
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert next_bundle_dir(tmp_path / "none-yet", "fast", now=when) == tmp_path / "none-yet" / "fast-20250304T050607Z.partial"
    write_bundle(tmp_path / "fast-20250101T000000Z", resolution="r1")
    write_bundle(tmp_path / "fast-20250201T000000Z", resolution="r2")
    write_bundle(tmp_path / "other-20250301T000000Z", resolution="r3")  # another spec's bundle
    (tmp_path / "fast-20250215T000000Z").mkdir()  # no manifest: not a bundle
    state = mirror_state(tmp_path, "fast")
    assert state.newest == tmp_path / "fast-20250201T000000Z"
    assert state.complete == [tmp_path / "fast-20250101T000000Z", tmp_path / "fast-20250201T000000Z"]
    assert state.unfinished is None


def test_an_unfinished_refresh_is_resumed_then_renamed(tmp_path):
    write_bundle(tmp_path / "fast-20250101T000000Z", resolution="old")
    partial = tmp_path / "fast-20250102T000000Z.partial"
    (partial / "blobs").mkdir(parents=True)
    plan = plan_refresh(tmp_path, "fast", resolution="new", now=datetime(2025, 6, 1, tzinfo=UTC))
    assert plan.changed and plan.target == partial and plan.since == tmp_path / "fast-20250101T000000Z"
    write_bundle(partial, resolution="new")
    final = complete(partial)
    assert final == final_name(partial) == tmp_path / "fast-20250102T000000Z"
    assert not partial.exists() and mirror_state(tmp_path, "fast").newest == final


def test_nothing_changed_upstream_writes_nothing(tmp_path):
    write_bundle(tmp_path / "fast-20250101T000000Z", resolution="same")
    plan = plan_refresh(tmp_path, "fast", resolution="same")
    assert not plan.changed and plan.target is None and plan.since == tmp_path / "fast-20250101T000000Z"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast-20250101T000000Z"]
    summary = MirrorResult(changed=False, since=str(plan.since)).summary()
    assert summary == "Nothing changed upstream since `fast-20250101T000000Z`: no bundle written."
    assert MirrorResult(changed=True, bundle=str(tmp_path / "b2"), since=str(plan.since), blobs_written=3).summary() == (
        "New bundle `b2`: 3 blobs written, a delta since `fast-20250101T000000Z`."
    )


# -- the run-job argv -----------------------------------------------------------------------------------
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/home/u", "HF_HOME": "/gpfs/airgap/hf", "SEED": "7"}


def test_a_job_with_an_image_runs_in_a_container_without_network_with_shared_root_mounted():
    params = RunJobParameters(
        job="train", command=["python", "train.py", "--seed", "$SEED"], env=ENV, shared_root="/gpfs/airgap",
        image=f"{REGISTRY}/nvidia/nemo:25.11", docker_host="unix:///run/d.sock",
    )
    assert run_job_argv(params) == [
        "docker", "-H", "unix:///run/d.sock", "run", "--rm", "--network", "none", "-v", "/gpfs/airgap:/gpfs/airgap:ro",
        "-e", "HF_HOME", "-e", "SEED",  # passed by name: values never reach a command line; PATH/HOME are the image's
        "--", f"{REGISTRY}/nvidia/nemo:25.11", "python", "train.py", "--seed", "$SEED",
    ]


def test_a_job_without_an_image_is_its_command_with_exactly_its_environment(tmp_path):
    params = RunJobParameters(
        job="prep", command=["sh", "-c", 'env | sort; test "$SEED" = 7'], env={"PATH": "/usr/bin:/bin", "SEED": "7"},
        shared_root=str(tmp_path), image=None, docker_host=None,
    )
    assert run_job_argv(params) == params.command
    log = run_job_process(params, run_id="run-1")
    assert log == job_log_path(params, run_id="run-1") == tmp_path / "logs" / "prep-run-1.out"
    seen = log.read_text().splitlines()
    assert "SEED=7" in seen and not any(line.startswith(("HF_TOKEN=", "AWS_")) for line in seen)
    failing = RunJobParameters(job="bad", command=["sh", "-c", "echo oops; exit 3"], env={"PATH": "/usr/bin:/bin"},
                               shared_root=str(tmp_path), image=None, docker_host=None)
    with pytest.raises(WorkError, match=r"job bad exited 3; its output is in .*bad-run-2\.out"):
        run_job_process(failing, run_id="run-2")
    assert (tmp_path / "logs" / "bad-run-2.out").read_text() == "oops\n"


# -- the Prefect job backend ----------------------------------------------------------------------------
def job_spec() -> Spec:
    return Spec.model_validate({
        "name": "fast",
        "images": ["nvcr.io/nvidia/nemo:25.11"],
        "jobs": [
            {"name": "prep", "image": "nvcr.io/nvidia/nemo:25.11", "command": ["python", "prep.py"]},
            {"name": "train", "image": "nvcr.io/nvidia/nemo:25.11", "command": ["python", "train.py"], "needs": ["prep"],
             "env": {"SEED": "7"}},
        ],
    })


class FakePrefect:
    """Prefect's side of the boundary: runs it was asked to start, and the states they go through."""

    def __init__(self, finals: dict[str, str] | None = None) -> None:
        self.finals = finals or {}
        self.triggered: list[tuple[str, dict[str, object]]] = []
        self.polls: dict[str, int] = {}
        self.clock = 0.0

    def trigger(self, deployment: str, parameters: dict[str, object]) -> str:
        self.triggered.append((deployment, parameters))
        return f"run-{len(self.triggered)}"

    def read_state(self, run_id: str) -> str:
        """A run is RUNNING on its first poll, then ends in its final state (COMPLETED unless told)."""
        self.polls[run_id] = self.polls.get(run_id, 0) + 1
        if self.polls[run_id] == 1:
            return "RUNNING"
        job = str(self.triggered[int(run_id.removeprefix("run-")) - 1][1]["job"])
        return self.finals.get(job, "COMPLETED")

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def backend(self, profile: Site) -> PrefectBackend:
        return PrefectBackend(require_scheduler(profile, source="site.yaml"), trigger=self.trigger, read_state=self.read_state, sleep=self.sleep, clock=lambda: self.clock)


def prefect_site(root: Path) -> Site:
    return site(shared_root=str(root), registry={"url": REGISTRY}, docker={"host": "unix:///run/d.sock"}, prefect={})


def test_prefect_jobs_run_in_dependency_order_each_after_its_needs_completed(tmp_path):
    fake = FakePrefect()
    spec = job_spec()
    submission = submit_in_order(spec, spec.jobs, backend=fake.backend(prefect_site(tmp_path)), root=tmp_path)
    assert submission.submitted == ["prep", "train"]
    assert [parameters["job"] for _, parameters in fake.triggered] == ["prep", "train"]
    assert {deployment for deployment, _ in fake.triggered} == {"run-job/run-job"}
    assert fake.polls == {"run-1": 2}  # train was triggered only once prep had completed
    assert fake.clock == 2.0  # one poll interval while prep was RUNNING
    train = fake.triggered[1][1]
    assert train["image"] == f"{REGISTRY}/nvidia/nemo:25.11" and train["shared_root"] == str(tmp_path)
    assert train["command"] == ["python", "train.py"] and train["docker_host"] == "unix:///run/d.sock"
    env = train["env"]
    assert isinstance(env, dict) and env["SEED"] == "7" and env["HF_HUB_OFFLINE"] == "1" and env["AIRLIFT_ROOT"] == str(tmp_path)
    assert set(env) <= {"PATH", "HOME", "LANG", "TZ", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                        "HF_DATASETS_OFFLINE", "WANDB_MODE", "AIRLIFT_ROOT", "SEED", "PIP_NO_INDEX", "PIP_FIND_LINKS",
                        "UV_OFFLINE", "UV_FIND_LINKS", "AIRLIFT_OUTPUT", "WANDB_DIR"}
    assert env["AIRLIFT_OUTPUT"] == env["WANDB_DIR"] and env["AIRLIFT_OUTPUT"].startswith(f"{tmp_path}/outputs/train/")
    assert Path(env["AIRLIFT_OUTPUT"]).is_dir()  # created before the job starts
    ledger = JobLedger(tmp_path, "fast").load()
    assert {n: (r.id, r.backend) for n, r in ledger.items()} == {"prep": ("run-1", "prefect"), "train": ("run-2", "prefect")}


def test_a_rerun_skips_jobs_not_failed_and_retriggers_failed_ones(tmp_path):
    spec = job_spec()
    first = FakePrefect(finals={"train": "FAILED"})
    submit_in_order(spec, spec.jobs, backend=first.backend(prefect_site(tmp_path)), root=tmp_path)

    again = FakePrefect()
    again.triggered = list(first.triggered)  # the same server: it still knows runs 1 and 2
    again.polls = {"run-1": 1, "run-2": 1}  # both past their first poll: run-1 COMPLETED, run-2 FAILED
    again.finals = {"train": "FAILED"}
    submission = submit_in_order(spec, spec.jobs, backend=again.backend(prefect_site(tmp_path)), root=tmp_path)
    assert submission.submitted == ["train"]
    assert [parameters["job"] for _, parameters in again.triggered[2:]] == ["train"]
    assert submission.records["train"].id == "run-3" and submission.records["prep"].id == "run-1"

    forced = FakePrefect()
    forced.triggered = list(again.triggered)
    forced.polls = {run: 1 for run in ("run-1", "run-2", "run-3")}
    resubmitted = submit_in_order(spec, spec.jobs, backend=forced.backend(prefect_site(tmp_path)), root=tmp_path, force=True)
    assert resubmitted.submitted == ["prep", "train"]


def test_a_job_whose_need_failed_is_never_triggered(tmp_path):
    spec = job_spec()
    fake = FakePrefect(finals={"prep": "FAILED"})
    with pytest.raises(WorkError, match="job train: its need prep ended FAILED"):
        submit_in_order(spec, spec.jobs, backend=fake.backend(prefect_site(tmp_path)), root=tmp_path)
    assert [parameters["job"] for _, parameters in fake.triggered] == ["prep"]
    assert list(JobLedger(tmp_path, "fast").load()) == ["prep"]  # what was triggered is remembered


def test_a_record_of_another_scheduler_is_submitted_again(tmp_path):
    spec = job_spec()
    JobLedger(tmp_path, "fast").save({"prep": JobRecord("prep", "42", "x.sbatch", "x.out", "x.exit", now_iso(), backend="slurm")})
    fake = FakePrefect()
    submission = submit_in_order(spec, spec.jobs[:1], backend=fake.backend(prefect_site(tmp_path)), root=tmp_path)
    assert submission.submitted == ["prep"] and submission.records["prep"].backend == "prefect"


def test_the_submit_report_carries_each_jobs_state_and_names_failures(tmp_path):
    records = {
        "prep": JobRecord("prep", "run-1", "d", "log-1", "", now_iso(), backend="prefect"),
        "train": JobRecord("train", "run-2", "d", "log-2", "", now_iso(), backend="prefect"),
    }
    submission = Submission(records=records, submitted=["train"])
    assert submission.result().model_dump() == {
        "submitted": ["train"],
        "jobs": {"prep": {"id": "run-1", "log": "log-1", "state": None}, "train": {"id": "run-2", "log": "log-2", "state": None}},
    }
    finished = submission.result({"prep": "COMPLETED", "train": "FAILED"})
    assert finished.failed() == ["train"]
    with pytest.raises(WorkError, match=r"jobs failed: train \(FAILED, log log-2\)"):
        finished.raise_if_failed()
    submission.result({"prep": "COMPLETED", "train": "COMPLETED"}).raise_if_failed()


# -- the wait loop --------------------------------------------------------------------------------------
def test_waiting_cancels_jobs_that_can_never_run_and_gives_up_at_the_deadline():
    records = {n: JobRecord(n, f"id-{n}", "s", "l", "", now_iso()) for n in ("prep", "train")}
    states = iter([{"prep": "RUNNING", "train": "PENDING"}, {"prep": "FAILED", "train": "DEPENDENCY_NEVER_SATISFIED"}])
    current: dict[str, str] = {}
    cancelled: list[str] = []
    slept: list[float] = []

    def state_of(record: JobRecord) -> str:
        if record.name == "prep":
            current.update(next(states))
        return current[record.name]

    final = wait_for_jobs(records, ["prep", "train"], state_of=state_of, cancel=lambda r: cancelled.append(r.id),
                          log=lambda _line: None, sleep=slept.append, clock=lambda: 0.0)
    assert final == {"prep": "FAILED", "train": "DEPENDENCY_NEVER_SATISFIED"}
    assert cancelled == ["id-train"] and slept == [2.0]

    now = [0.0]

    def tick(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(WorkError, match="jobs still running after 5"):
        wait_for_jobs(records, ["prep"], state_of=lambda _r: "RUNNING", cancel=lambda _r: None, log=lambda _line: None,
                      poll_seconds=2.0, timeout_seconds=5, sleep=tick, clock=lambda: now[0])
    assert now[0] == 6.0


def test_the_job_argv_never_reaches_a_shell(tmp_path):
    """A hostile argument stays one argv word: nothing in it is expanded or run."""
    marker = tmp_path / "pwned"
    params = RunJobParameters(job="j", command=["echo", f"$(touch {marker}); `touch {marker}`"], env={"PATH": "/usr/bin:/bin"},
                              shared_root=str(tmp_path), image=None, docker_host=None)
    out = subprocess.run(run_job_argv(params), capture_output=True, text=True, env=params.env, check=True).stdout
    assert out == f"$(touch {marker}); `touch {marker}`\n" and not marker.exists()

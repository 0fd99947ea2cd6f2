"""sbatch scripts for every container runtime: the job environment, quoted; `needs` left to sbatch's argv."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from airlift.config.site import Site
from airlift.config.spec import Spec
from airlift.jobs.sites import JobSite, require_scheduler
from airlift.jobs.slurm import render_sbatch, sbatch_argv

ROOT = "/gpfs/airgap"
CONTRACT_ENV = {
    "HF_HOME": f"{ROOT}/hf",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "AIRLIFT_ROOT": ROOT,
    # v1.1: pip and uv offline, finding the bundled wheels
    "PIP_NO_INDEX": "1",
    "PIP_FIND_LINKS": f"{ROOT}/wheels",
    "UV_OFFLINE": "1",
    "UV_FIND_LINKS": f"{ROOT}/wheels",
}
RUNTIMES = ["pyxis", "docker", "apptainer", "none"]


def hostile(tmp_path: Path) -> str:
    """A value that would run a command, split words or expand if it were not quoted."""
    return f"it's \"quoted\" $(touch {tmp_path}/pwned) `touch {tmp_path}/pwned2` ; & | * ~ $HOME \\ end"


def make_spec(tmp_path: Path, command: list[str] | None = None) -> Spec:
    return Spec.model_validate({
        "name": "fast",
        "images": ["nvcr.io/nvidia/nemo:25.11"],
        "jobs": [
            {"name": "prep", "image": "nvcr.io/nvidia/nemo:25.11", "command": ["python", "prep.py", "--glob", "*.json"]},
            {
                "name": "train", "image": "nvcr.io/nvidia/nemo:25.11", "needs": ["prep"],
                "command": command or ["python", "train.py", "--note", "two words; $(id)"],
                "env": {"RUN_NOTE": hostile(tmp_path), "SEED": "7"},
                "resources": {"nodes": 2, "gpus_per_node": 8, "time": "04:00:00", "mem": "64G"},
            },
        ],
    })


def make_site(runtime: str, root: str = ROOT) -> JobSite:
    return require_scheduler(Site.model_validate({
        "shared_root": root,
        "registry": {"url": "registry.internal:5000/mirror"},
        "docker": {"host": "unix:///var/run/docker.sock"},
        "slurm": {"partition": "batch", "account": "ml", "container_runtime": runtime},
    }), source="site.yaml")


def render(tmp_path: Path, runtime: str, *, job: str = "train", root: str = ROOT, command: list[str] | None = None) -> str:
    spec = make_spec(tmp_path, command)
    chosen = next(j for j in spec.jobs if j.name == job)
    return render_sbatch(spec, chosen, site=make_site(runtime, root), log_dir=Path(root) / "logs", inherited={"PATH": "/usr/bin:/bin", "HOME": "/home/u"})


def exported(script: str, names: list[str]) -> dict[str, str]:
    """Run only the script's `export` lines in bash and read the variables back: what the job would see."""
    exports = "\n".join(line for line in script.splitlines() if line.startswith("export "))
    probe = exports + "\n" + "".join(f'printf "%s\\0" "${{{name}}}"\n' for name in names)
    proc = subprocess.run(["bash", "-c", probe], capture_output=True, env={"PATH": os.environ["PATH"]}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(zip(names, proc.stdout.decode().split("\0")[:-1], strict=True))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_script_is_valid_bash_with_the_job_environment(tmp_path, runtime):
    script = render(tmp_path, runtime)
    path = tmp_path / "train.sbatch"
    path.write_text(script)
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert header[0] == "#SBATCH --export=NONE"
    for option in ("--partition=batch", "--account=ml", "--nodes=2", "--gpus-per-node=8", "--time=04:00:00", "--mem=64G"):
        assert f"#SBATCH {option}" in header
    values = exported(script, [*CONTRACT_ENV, "RUN_NOTE", "SEED", "PATH", "HOME"])
    assert values == {**CONTRACT_ENV, "RUN_NOTE": hostile(tmp_path), "SEED": "7", "PATH": "/usr/bin:/bin", "HOME": "/home/u"}
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_needs_are_not_in_the_script(tmp_path, runtime):
    script = render(tmp_path, runtime)
    assert "afterok" not in script and "--dependency" not in script and "prep" not in script.split("set -euo pipefail")[1]


def test_pyxis_runs_the_registry_image_with_the_root_mounted(tmp_path):
    script = render(tmp_path, "pyxis")
    srun = shlex.split(next(line for line in script.splitlines() if line.startswith("srun ")))
    assert "--container-image=registry.internal:5000#mirror/nvidia/nemo:25.11" in srun
    assert f"--container-mounts={ROOT}:{ROOT}:ro" in srun
    env_names = next(arg for arg in srun if arg.startswith("--container-env=")).split("=", 1)[1].split(",")
    assert set(CONTRACT_ENV) | {"RUN_NOTE", "SEED"} <= set(env_names)
    assert srun[-4:] == ["python", "train.py", "--note", "two words; $(id)"]


def test_docker_runs_without_network_and_passes_each_variable(tmp_path):
    script = render(tmp_path, "docker")
    argv = shlex.split(next(line for line in script.splitlines() if " run --rm " in line))
    assert argv[:6] == ["docker", "-H", "unix:///var/run/docker.sock", "run", "--rm", "--network"] and argv[6] == "none"
    assert argv[argv.index("-v") + 1] == f"{ROOT}:{ROOT}:ro"
    passed = {argv[i + 1] for i, arg in enumerate(argv) if arg == "-e"}
    assert passed == set(CONTRACT_ENV) | {"RUN_NOTE", "SEED"}  # by name: the values come from the exports
    image = argv.index("registry.internal:5000/mirror/nvidia/nemo:25.11")
    assert argv[image + 1:] == ["python", "train.py", "--note", "two words; $(id)"]


def test_apptainer_passes_values_through_apptainerenv(tmp_path):
    script = render(tmp_path, "apptainer")
    values = exported(script, ["APPTAINERENV_RUN_NOTE", "APPTAINERENV_HF_HOME"])
    assert values == {"APPTAINERENV_RUN_NOTE": hostile(tmp_path), "APPTAINERENV_HF_HOME": f"{ROOT}/hf"}
    exec_line = next(line for line in script.splitlines() if line.startswith("apptainer exec"))
    assert "--cleanenv" in exec_line and f"--bind {ROOT}:{ROOT}:ro" in exec_line
    assert "docker://registry.internal:5000/mirror/nvidia/nemo:25.11" in exec_line


def test_plain_script_runs_with_exactly_the_job_environment(tmp_path):
    """Runtime `none`, run for real by bash: the job sees the contract's variables, its env and the allow-list."""
    root = tmp_path / "root"
    (root / "logs").mkdir(parents=True)
    script = render(tmp_path, "none", root=str(root), command=["env", "-0"])
    path = tmp_path / "train.sbatch"
    path.write_text(script)
    submitter = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "42", "AWS_SECRET_ACCESS_KEY": "leak", "HF_TOKEN": "leak"}
    proc = subprocess.run(["bash", str(path)], capture_output=True, env=submitter, timeout=30)
    assert proc.returncode == 0, proc.stderr
    seen = dict(item.split("=", 1) for item in proc.stdout.decode().split("\0") if item)
    seen.pop("_", None)  # bash's own: the path of the program it ran
    expected = {name: value.replace(ROOT, str(root)) for name, value in CONTRACT_ENV.items()}
    assert seen == {**expected, "RUN_NOTE": hostile(tmp_path), "SEED": "7", "PATH": "/usr/bin:/bin", "HOME": "/home/u", "SLURM_JOB_ID": "42"}
    assert (root / "logs" / "fast-train-42.exit").read_text().strip() == "0"
    assert not (tmp_path / "pwned").exists()


def test_needs_become_afterok_on_the_sbatch_command_line():
    script = Path("/gpfs/airgap/.airlift/jobs/fast/train.sbatch")
    assert sbatch_argv(script, ["101", "102"]) == ["sbatch", "--parsable", "--dependency=afterok:101:102", str(script)]
    assert sbatch_argv(script, []) == ["sbatch", "--parsable", str(script)]

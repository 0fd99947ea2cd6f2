"""`airlift export` against a job that swaps its outputs between the walk and the copy: a file or a
directory replaced by a symlink out of shared_root, or by a FIFO, never brings outside bytes into the
bundle; export refuses, naming the file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import airlift.export.outputs as outputs
from airlift.bundle.manifest import Manifest, now_iso
from airlift.config.spec import Spec
from airlift.export.outputs import export_outputs
from airlift.jobs.common import JobRecord
from airlift.jobs.launch import create_output, plan_launch, record_run
from airlift.util.errors import WorkError

IMAGE = "nvcr.io/nvidia/nemo:25.11"
SECRET = b"root:$6$not-for-the-low-side:19000:0:99999:7:::\n"
SPEC = Spec.model_validate({"name": "v11", "images": [IMAGE], "jobs": [{"name": "train", "image": IMAGE, "command": ["true"], "outputs": ["ck"]}]})


def _finished_run(root: Path, files: dict[str, bytes]) -> Path:
    """A run of `train` that exited 0 with `files` under its `ck` output; its output directory."""
    job = SPEC.jobs[0]
    launch = plan_launch(Manifest(name="e", created=now_iso(), artifacts=[]), root, job, materialize=True)
    create_output(launch, job)
    for rel, data in files.items():
        Path(launch.output, rel).parent.mkdir(parents=True, exist_ok=True)
        Path(launch.output, rel).write_bytes(data)
    exit_file = root / "logs" / f"{launch.run_id}.exit"
    exit_file.parent.mkdir(parents=True, exist_ok=True)
    exit_file.write_text("0")
    record_run(root, SPEC, job, JobRecord(job.name, "7", "s", "l", str(exit_file), now_iso(), run_id=launch.run_id))
    return Path(launch.output)


def _outside(tmp_path: Path) -> Path:
    """A directory outside shared_root holding a `secret` of the same size as the job's file."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_bytes(SECRET)
    (outside / "sub" / "secret").write_bytes(SECRET)
    return outside


def _after_walk(monkeypatch: pytest.MonkeyPatch, swap) -> None:
    """Run `swap` right after export's walk of the outputs, before any file is copied."""
    real = outputs._walk

    def walk_then_swap(*args, **kwargs):
        found = real(*args, **kwargs)
        swap()
        return found

    monkeypatch.setattr(outputs, "_walk", walk_then_swap)


def _no_secret_in(out: Path) -> None:
    blobs = out / "blobs" / "sha256"
    leaked = [p for p in blobs.iterdir() if SECRET in p.read_bytes()] if blobs.is_dir() else []
    assert not leaked, f"outside bytes were exported: {leaked}"



def _refused_after_walk(monkeypatch, swap, root: Path, out: Path, *, match: str, naming: Path) -> None:
    """`swap` runs after export's walk; the export must fail naming `naming`, with no secret in `out`."""
    _after_walk(monkeypatch, swap)
    with pytest.raises(WorkError, match=match) as caught:
        export_outputs(root, out, jobs=[], max_bytes=1 << 20)
    assert str(naming) in str(caught.value)
    _no_secret_in(out)


def test_a_file_swapped_for_a_symlink_after_the_walk_is_refused(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", _outside(tmp_path)
    ck = _finished_run(root, {"ck/secret": b"x" * len(SECRET)}) / "ck"

    def swap():
        (ck / "secret").unlink()
        (ck / "secret").symlink_to(outside / "secret")

    _refused_after_walk(monkeypatch, swap, root, tmp_path / "out", match="symlink", naming=ck / "secret")


def test_a_directory_swapped_for_a_symlink_after_the_walk_is_refused(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", _outside(tmp_path)
    ck = _finished_run(root, {"ck/sub/secret": b"x" * len(SECRET)}) / "ck"

    def swap():
        os.rename(ck / "sub", tmp_path / "aside")
        (ck / "sub").symlink_to(outside / "sub")

    _refused_after_walk(monkeypatch, swap, root, tmp_path / "out", match="symlink", naming=ck / "sub" / "secret")


def test_a_file_swapped_for_another_file_after_the_walk_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "root"
    ck = _finished_run(root, {"ck/secret": b"x" * len(SECRET)}) / "ck"

    def swap():  # a hard link to an outside file is a regular file of the right size: only the inode tells
        (tmp_path / "other").write_bytes(SECRET)
        os.replace(tmp_path / "other", ck / "secret")

    _refused_after_walk(monkeypatch, swap, root, tmp_path / "out", match="replaced by another file", naming=ck / "secret")


def test_a_directory_swapped_for_a_symlink_during_the_walk_is_not_descended(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", _outside(tmp_path)
    ck = _finished_run(root, {"ck/sub/secret": b"x" * len(SECRET)}) / "ck"
    real = outputs._open_child

    def swap_then_open(parent, name, seen, shown):  # between listing `ck` and opening `ck/sub`
        os.rename(ck / "sub", tmp_path / "aside")
        (ck / "sub").symlink_to(outside / "sub")
        return real(parent, name, seen, shown)

    monkeypatch.setattr(outputs, "_open_child", swap_then_open)
    with pytest.raises(WorkError, match="symlink") as caught:
        export_outputs(root, tmp_path / "out", jobs=[], max_bytes=1 << 20)
    assert str(ck / "sub") in str(caught.value)
    _no_secret_in(tmp_path / "out")


def test_a_fifo_in_the_outputs_is_refused_without_blocking(tmp_path):
    root = tmp_path / "root"
    ck = _finished_run(root, {"ck/a": b"a"}) / "ck"
    os.mkfifo(ck / "pipe")
    with pytest.raises(WorkError, match="special file") as caught:
        export_outputs(root, tmp_path / "out", jobs=[], max_bytes=1 << 20)
    assert str(ck / "pipe") in str(caught.value)


def test_a_file_swapped_for_a_fifo_after_the_walk_is_refused_without_blocking(tmp_path, monkeypatch):
    root = tmp_path / "root"
    ck = _finished_run(root, {"ck/a": b"a"}) / "ck"

    def swap():
        (ck / "a").unlink()
        os.mkfifo(ck / "a")

    _after_walk(monkeypatch, swap)
    errors: list[BaseException] = []

    def export():
        try:
            export_outputs(root, tmp_path / "out", jobs=[], max_bytes=1 << 20)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=export, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the open so the thread ends, then fail
        os.close(os.open(ck / "a", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("export blocked on a FIFO")
    assert len(errors) == 1 and isinstance(errors[0], WorkError), errors
    assert str(ck / "a") in str(errors[0]) and "not a regular file" in str(errors[0])

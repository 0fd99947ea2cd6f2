"""Results out (`airlift export`): finished runs' declared outputs as an ordinary bundle.

Each finished run of a job becomes the artifact `outputs/<job>/<run id>` (kind `output`), whose files
are the run's declared `outputs:` directories under `$AIRLIFT_OUTPUT`. On the low side `airlift verify`
and `airlift ingest` treat it like any bundle; ingest places it under `shared_root/outputs/`, where
`wandb sync` finds the offline runs.

- A run is finished when its exit file says 0. A run still in progress (no exit file) or failed is
  not exported, and is named.
- Outputs above `max_bytes` are refused with a message naming the run and its size, never skipped
  silently.
- Like build, export is resumable and idempotent: blobs already in OUT are not copied again (a stamp
  of each file's size, mtime and inode says which blob it is), and a rerun that finds the same runs
  leaves manifest.json, and its signature, untouched.
- Everything read is below shared_root and bounded: a symlink or special file in an output
  directory is refused, not followed (a job wrote it). The walk opens each directory relative to its
  parent with O_NOFOLLOW, and each file is read through the guarded opener (`open_regular`, from
  shared_root down) and must be the very file (device, inode, size) the walk saw: a file or directory
  swapped for a symlink, a FIFO or another file after the walk is refused, naming it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry, Manifest, now_iso
from airlift.bundle.source_records import OutputSource
from airlift.bundle.store import BlobStore
from airlift.layouts.shared_root import RunRecord, output_dir
from airlift.util.confine import open_regular
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import is_within, write_bytes_atomic

STAMPS = ".airlift-export-stamps.json"
MAX_RECORD_BYTES = 1 << 20


@dataclass
class RunOutcome:
    """One run export looked at: exported, or why not."""

    job: str
    run_id: str
    status: str  # exported | in-progress | failed | too-large
    bytes: int = 0
    files: int = 0
    detail: str = ""


@dataclass
class ExportResult:
    bundle: str
    runs: list[RunOutcome] = field(default_factory=list)
    blobs_written: int = 0
    manifest_changed: bool = False

    @property
    def exported(self) -> list[RunOutcome]:
        return [r for r in self.runs if r.status == "exported"]


def run_records(root: Path, jobs: list[str]) -> list[RunRecord]:
    """Every run submit recorded under root (of the named jobs, or all), oldest first; unreadable ones skipped."""
    base = root / ".airlift" / "runs"
    out: list[RunRecord] = []
    if not base.is_dir():
        return out
    for job_dir in sorted(base.iterdir()):
        if jobs and job_dir.name not in jobs:
            continue
        for path in sorted(job_dir.glob("*.json")):
            try:
                if path.is_symlink() or path.stat().st_size > MAX_RECORD_BYTES:
                    continue
                out.append(RunRecord.model_validate_json(path.read_bytes()))
            except (OSError, ValueError):
                continue
    return out


def exit_code(root: Path, record: RunRecord) -> int | None:
    """The run's exit code from its exit file, or None while it has none (still queued or running)."""
    if not record.exit_file:
        return None
    path = Path(record.exit_file)
    if not is_within(root, path) or path.is_symlink():
        return None
    try:
        text = path.read_bytes()[:32].decode().strip()
        return int(text)
    except (OSError, ValueError):
        return None


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NOCTTY
_Level = tuple[int, str, Iterator[tuple[str, os.stat_result]]]  # (directory fd, its path below the output, subdirectories left)


def _open_dir_below(root: Path, relative: str) -> int:
    """A descriptor of the directory `root/relative`, each component opened with O_NOFOLLOW from root down."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in relative.split("/"):
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        raise WorkError(f"{root / relative}: not a directory, or reached through a symlink ({exc.strerror}); export refuses it") from None
    return fd


def _open_child(parent: int, name: str, seen: os.stat_result, shown: Path) -> int:
    """Open the subdirectory `name` of `parent` without following a link; it must be the one listed."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        raise WorkError(f"{shown}: no longer a directory, or swapped for a symlink ({exc.strerror}); export refuses it") from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        raise WorkError(f"{shown}: replaced by another directory while it was listed; export refuses it")
    return fd


def _list(fd: int, sub: str, top: Path, prefix: str, found: list[tuple[str, os.stat_result]]) -> _Level:
    """Record the regular files of the directory `fd` in `found`; its subdirectories come back to walk next."""
    subdirs: list[tuple[str, os.stat_result]] = []
    try:
        for name in sorted(os.listdir(fd)):
            rel = f"{sub}/{name}" if sub else name
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise WorkError(f"{top / rel}: vanished while the output was listed; export refuses a run still writing") from None
            if stat.S_ISDIR(info.st_mode):
                subdirs.append((name, info))
            elif stat.S_ISREG(info.st_mode):
                found.append((f"{prefix}/{rel}", info))
            else:
                raise WorkError(f"{top / rel}: not a regular file or directory (a symlink or special file); export refuses it")
    except BaseException:
        os.close(fd)
        raise
    return fd, sub, iter(subdirs)


def _walk(root: Path, base: str, prefix: str) -> list[tuple[str, os.stat_result]]:
    """Regular files under `root/base` as (bundle path, lstat), top-down in name order.

    Every directory is opened relative to its parent's descriptor with O_NOFOLLOW and checked to be the
    one listed, so the walk never descends through a symlink, even one swapped in while it runs; a
    symlink or special file is refused.
    """
    found: list[tuple[str, os.stat_result]] = []
    top = root / base
    stack = [_list(_open_dir_below(root, base), "", top, prefix, found)]
    try:
        while stack:
            fd, sub, subdirs = stack[-1]
            entry = next(subdirs, None)
            if entry is None:
                os.close(stack.pop()[0])
                continue
            name, seen = entry
            rel = f"{sub}/{name}" if sub else name
            stack.append(_list(_open_child(fd, name, seen, top / rel), rel, top, prefix, found))
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return found


def _store_file(store: BlobStore, root: Path, relative: str, seen: os.stat_result) -> str:
    """Copy `root/relative` into the store through the guarded opener; it must be the file the walk saw."""
    shown = root / relative
    try:
        fd = open_regular(root, relative, size=seen.st_size)
    except (OSError, InputError) as exc:  # EscapeError (a symlink, a FIFO, a wrong size) is a WorkError
        raise WorkError(f"{shown}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}; export refuses it") from None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
            raise WorkError(f"{shown}: replaced by another file after it was listed; export refuses it")
        return store.add_open(fd, label=str(shown)).sha256
    finally:
        os.close(fd)


def _stamp(info: os.stat_result) -> str:
    return f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"


def export_outputs(root: Path, out: Path, *, jobs: list[str], max_bytes: int, site_name: str = "site") -> ExportResult:
    """Write the bundle of every finished run's declared outputs (see the module docstring).

    Args:
        root: The site's shared_root.
        out: The bundle directory (created, or completed).
        jobs: Only these jobs' runs; all when empty.
        max_bytes: A run whose outputs are larger is refused (status `too-large`).
        site_name: The bundle's name is `<site_name>-outputs`.

    Returns:
        What happened to each run, and whether the manifest changed.
    """
    bundle = Bundle(out)
    bundle.store.ensure_dirs()
    stamps_path = out / STAMPS
    try:
        stamps: dict[str, str] = json.loads(stamps_path.read_text())
    except (OSError, ValueError):
        stamps = {}
    result = ExportResult(bundle=str(out))
    artifacts: list[Artifact] = []
    for record in run_records(root, jobs):
        code = exit_code(root, record)
        outcome = RunOutcome(record.job, record.run_id, "exported")
        result.runs.append(outcome)
        if code is None:
            outcome.status, outcome.detail = "in-progress", "no exit file yet: still queued or running"
            continue
        if code != 0:
            outcome.status, outcome.detail = "failed", f"exited {code}"
            continue
        run_dir = output_dir(root, record.job, record.run_id)
        tops = [name for name in record.outputs if (run_dir / name).is_dir()]
        for name in tops:  # a job could have replaced its output directory with a link out of the root
            if (run_dir / name).resolve() != root.resolve() / "outputs" / record.job / record.run_id / name:
                raise WorkError(f"{run_dir / name}: resolves outside {root} or through a symlink; export refuses it")
        base = f"outputs/{record.job}/{record.run_id}"
        files = [f for name in tops for f in _walk(root, f"{base}/{name}", name)]
        outcome.files, outcome.bytes = len(files), sum(info.st_size for _, info in files)
        if outcome.bytes > max_bytes:
            outcome.status, outcome.detail = "too-large", f"{outcome.bytes} bytes > the limit of {max_bytes} (--max-size)"
            continue
        entries = []
        for rel, info in files:
            key = f"{record.job}/{record.run_id}/{rel}"
            digest = stamps.get(key, "").partition("|")[2] if stamps.get(key, "").startswith(_stamp(info) + "|") else ""
            if not digest or not bundle.store.has(digest, info.st_size):
                digest = _store_file(bundle.store, root, f"{base}/{rel}", info)
                result.blobs_written += 1
                stamps[key] = f"{_stamp(info)}|{digest}"
            entries.append(FileEntry(path=rel, size=info.st_size, sha256=digest, executable=bool(info.st_mode & 0o111)))
        write_bytes_atomic(stamps_path, json.dumps(stamps).encode())  # each run's copies survive a crash
        source = OutputSource(
            spec=record.spec, job=record.job, run_id=record.run_id, outputs=record.outputs, exit_code=code,
            submitted_at=record.submitted_at,
        )
        artifacts.append(FileArtifact(id=f"outputs/{record.job}/{record.run_id}", kind="output", source=source, files=entries))
    old = bundle.read_manifest() if bundle.exists() else None
    if old is not None and old.artifacts == artifacts:
        return result  # the same runs: manifest.json (and its signature) stay as they are
    bundle.write_manifest(Manifest(name=f"{site_name}-outputs", created=now_iso(), artifacts=artifacts))
    signature = out / "manifest.json.sig"
    if signature.exists():
        signature.unlink()  # it signed the old manifest
    result.manifest_changed = True
    return result

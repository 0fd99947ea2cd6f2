"""Read-only working trees for job mounts: `checkouts/<name>/<commit>/` from the bare `repos/<name>.git`.

A job that clones its code itself can silently train against whatever its image pre-baked when the
clone or the mount goes wrong (the NeMo-Run data mover's auto-mount bug). A checkout here is made from
the ingested bare repository at exactly the pinned commit, then made read-only and renamed into place,
so a path under `checkouts/` is either complete at its commit or absent. `checkout_state` is what
preflight asks before any job is submitted.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from airlift.layouts.shared_root import checkout_path
from airlift.util.confine import ConfinedRoot
from airlift.util.errors import WorkError
from airlift.util.fs import fsync_dir, link_or_copy
from airlift.util.proc import git

_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def _chmod_tree(top: Path, *, writable: bool) -> None:
    for path in [top, *top.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod((mode | stat.S_IWUSR) if writable else (mode & ~_WRITE))


def _remove(path: Path) -> None:
    if path.exists() or path.is_symlink():
        _chmod_tree(path, writable=True)
        shutil.rmtree(path)


def checkout_state(path: Path, commit: str) -> str | None:
    """None when `path` is a clean working tree at `commit`; otherwise what is wrong with it."""
    if not (path / ".git").exists():
        return f"{path} is missing"
    try:
        head = git("--no-optional-locks", "-C", str(path), "rev-parse", "HEAD", what=str(path)).strip()
        dirty = git("--no-optional-locks", "-C", str(path), "status", "--porcelain", "--untracked-files=no", what=str(path)).strip()
    except WorkError as exc:
        return f"{path} is not a readable git checkout: {exc}"
    if head != commit:
        return f"{path} is at {head[:12]}, not the pinned {commit[:12]}"
    if dirty:
        return f"{path} has local changes: {dirty.splitlines()[0]}"
    return None


def make_checkout(root: Path, name: str, commit: str) -> Path:
    """The read-only checkout of `repos/<name>.git` at `commit`, made aside and renamed in (idempotent).

    Args:
        root: The site's shared_root (the bare repository was ingested there).
        name: The repo's name (artifact id `repos/<name>`).
        commit: The pinned commit (the manifest's resolved commit).

    Returns:
        `checkouts/<name>/<commit>/`.

    Raises:
        WorkError: The bare repository is missing or lacks the commit.
    """
    confined = ConfinedRoot(root)
    final = confined.path(checkout_path(Path(), name, commit).as_posix())
    if checkout_state(final, commit) is None:
        return final
    bare = confined.path(f"repos/{name}.git")
    if not bare.is_dir():
        raise WorkError(f"repos/{name}: {bare} is missing; run airlift ingest")
    confined.mkdirs(final.parent.relative_to(confined.root).as_posix())
    work = final.parent / f".{commit}.tmp-{os.getpid()}"
    _remove(work)
    # --shared: the checkout borrows the bare repo's objects (no second copy of the history).
    git("clone", "-q", "--shared", "--no-checkout", "--", str(bare), str(work), what=f"repos/{name}")
    git("-c", "advice.detachedHead=false", "-C", str(work), "checkout", "-q", "--detach", commit, "--", what=f"repos/{name}")
    _chmod_tree(work, writable=False)
    if final.exists():
        old = final.parent / f".{commit}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(work, final)
        _remove(old)
    else:
        os.replace(work, final)
    fsync_dir(final.parent)
    return final


def make_view(root: Path, relative: str, files: list[tuple[str, Path]]) -> Path:
    """A read-only directory of plain files (hard links where possible) under `root/relative`.

    The hub cache's snapshot holds relative symlinks into `../../blobs`, which break once the snapshot
    alone is bind-mounted elsewhere; a mount of a Hugging Face artifact gets this view instead.
    """
    confined = ConfinedRoot(root)
    final = confined.path(relative)
    if (final / ".airlift-complete").exists():
        return final
    work = final.parent / f".{final.name}.tmp-{os.getpid()}"
    _remove(work)
    for path, source in files:
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(source, target)
    (work / ".airlift-complete").write_bytes(b"")
    _chmod_tree(work, writable=False)
    _remove(final)
    os.replace(work, final)
    fsync_dir(final.parent)
    return final

"""A bare repository built from a bundled git bundle: `repos/<name>.git`, cloneable offline."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from airlift.bundle.manifest import Artifact
from airlift.layouts.shared_root import SharedRootLayout
from airlift.util.fs import fsync_dir
from airlift.util.proc import git


def materialize_git_repo(root: Path, artifact: Artifact, *, blob_path: Callable[[str], Path]) -> Path:
    """A bare repository at repos/<name>.git holding the pinned ref and its tags (built aside, then renamed in)."""
    name = artifact.id.removeprefix("repos/")
    final = SharedRootLayout(root).git_repo(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".{name}.git.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    git("init", "-q", "--bare", str(work), what=artifact.id)
    git("fetch", "-q", "--", str(blob_path(artifact.files[0].sha256).resolve()), "+refs/*:refs/*", cwd=work, what=artifact.id)
    git("update-server-info", cwd=work, what=artifact.id)  # so `airlift serve` (dumb HTTP) can offer it
    full_ref = artifact.source.full_ref or ""
    if full_ref.startswith("refs/heads/"):
        git("symbolic-ref", "HEAD", full_ref, cwd=work, what=artifact.id)
    else:
        (work / "HEAD").write_text(artifact.source.commit + "\n")  # a tag or commit: a detached HEAD
    if final.exists():
        old = final.parent / f".{name}.git.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(work, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, final)
    fsync_dir(final.parent)
    return final

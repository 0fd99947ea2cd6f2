"""Read-only working trees for job mounts: `checkouts/<name>/<commit>/` from the bare `repos/<name>.git`.

A job that clones its code itself can silently train against whatever its image pre-baked when the
clone or the mount goes wrong (the NeMo-Run data mover's auto-mount bug). A checkout here is made from
the ingested bare repository at exactly the pinned commit, then made read-only and renamed into place,
so a path under `checkouts/` is either complete at its commit or absent. `checkout_state` is what
preflight asks before any job is submitted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from airlift.layouts.shared_root import checkout_path
from airlift.util.confine import ConfinedRoot, read_regular
from airlift.util.errors import WorkError
from airlift.util.fs import CHUNK, fsync_dir, link_or_copy
from airlift.util.hashing import git_blob_hasher
from airlift.util.proc import git_blobs, git_isolated, isolated_git

# Nothing here runs git inside a checkout: a job can write to it, and git honours whatever config,
# hooks, attributes and filters it finds there (core.fsmonitor runs a command on `git status`). The
# checkout is written from the bare repo's objects by an isolated git, and checked by hashing its files.
_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE_MODES = {"100644": 0o444, "100755": 0o555}
_GIT_FILES = {b"HEAD", b"config", b"index", b"objects/info/alternates"}
_GIT_DIRS = {b"objects", b"objects/info", b"refs"}
Tree = dict[bytes, tuple[str, str]]


def _chmod_tree(top: Path, *, writable: bool) -> None:
    for path in [top, *top.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod((mode | stat.S_IWUSR) if writable else (mode & ~_WRITE))


def _open_up(fd: int) -> None:
    """Make the directory `fd` and every one below it writable by us (never following a symlink)."""
    os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | stat.S_IRWXU)
    with os.scandir(fd) as entries:
        names = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
    for name in names:
        child = os.open(name, _DIR, dir_fd=fd)
        try:
            _open_up(child)
        finally:
            os.close(child)


def _remove(path: Path) -> None:
    try:
        fd = os.open(path, _DIR)
    except FileNotFoundError:
        return
    except OSError:  # a symlink or a file where a directory was expected: unlink it, never follow it
        os.unlink(path)
        return
    try:
        _open_up(fd)
    finally:
        os.close(fd)
    shutil.rmtree(path)


def _object_format(commit: str) -> str:
    return "sha256" if len(commit) == 64 else "sha1"


def _blob_id(commit: str, size: int) -> hashlib._Hash:
    """The git blob-id hasher of the repo's object format (sha1: the project's `git_blob_hasher`)."""
    if _object_format(commit) == "sha1":
        return git_blob_hasher(size)
    digest = hashlib.sha256()
    digest.update(b"blob %d\0" % size)
    return digest


def _git_config(commit: str) -> bytes:
    if _object_format(commit) == "sha1":
        return b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n"
    return b"[core]\n\trepositoryformatversion = 1\n\tbare = false\n[extensions]\n\tobjectformat = sha256\n"


def _pinned_tree(env: dict[str, str], commit: str, what: str) -> Tree:
    """path -> (mode, object id) of every entry of `commit`, as `git ls-tree -r` lists them."""
    tree: Tree = {}
    for record in git_isolated(env, "ls-tree", "-r", "-z", "--full-tree", f"{commit}^{{commit}}", what=what).split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, _kind, oid = meta.decode().split()
            parts = name.split(b"/")
            if any(part in (b"", b".", b"..") or part.lower() == b".git" for part in parts):
                raise WorkError(f"{commit[:12]}: refusing the path {name!r}", artifact_id=what)
            tree[name] = (mode, oid)
    return tree


def _hash_file(parent: int, name: bytes, commit: str) -> tuple[str, str]:
    """(mode as git sees it, blob id) of regular file `name`, opened without following a link."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=parent)
    except OSError:
        return "unreadable", ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "special", ""
        digest, remaining = _blob_id(commit, info.st_size), info.st_size
        while remaining > 0:
            chunk = os.read(fd, min(CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        if remaining or os.read(fd, 1):
            return "changing", ""
        return ("100755" if info.st_mode & stat.S_IXUSR else "100644"), digest.hexdigest()
    finally:
        os.close(fd)


def _scan(fd: int, prefix: bytes, commit: str, tree: Tree, found: Tree, dirs: set[bytes]) -> None:
    """Fill `found` (files, links, submodule directories) and `dirs` from directory `fd`, links unfollowed."""
    with os.scandir(fd) as it:
        entries = [(os.fsencode(entry.name), entry.is_symlink(), entry.is_dir(follow_symlinks=False),
                    entry.is_file(follow_symlinks=False)) for entry in it]
    for name, is_link, is_dir, is_file in entries:
        rel = prefix + name
        if not prefix and name == b".git":
            continue
        if is_link:
            target = os.readlink(name, dir_fd=fd)
            digest = _blob_id(commit, len(target))
            digest.update(target)
            found[rel] = ("120000", digest.hexdigest())
        elif is_dir:
            child = os.open(name, _DIR, dir_fd=fd)
            try:
                if tree.get(rel, ("",))[0] == "160000":  # a submodule: git leaves an empty directory
                    with os.scandir(child) as inner:
                        found[rel] = ("160000", tree[rel][1]) if next(inner, None) is None else ("not empty", "")
                else:
                    dirs.add(rel)
                    _scan(child, rel + b"/", commit, tree, found, dirs)
            finally:
                os.close(child)
        else:
            found[rel] = _hash_file(fd, name, commit) if is_file else ("special", "")


def _git_dir_problem(path: Path, commit: str, bare: Path) -> str | None:
    """What is wrong with `path/.git`: it must hold exactly what `_write_git_dir` wrote."""
    try:
        head = read_regular(path, ".git/HEAD", max_bytes=4096).decode(errors="replace").strip()
    except (OSError, WorkError) as exc:
        return f"{path} is not a checkout made by airlift: {exc}"
    if head != commit:
        return f"{path} is at {head[:12]}, not the pinned {commit[:12]}"
    found: Tree = {}
    dirs: set[bytes] = set()
    top = os.open(path / ".git", _DIR)
    try:
        _scan(top, b"", commit, {}, found, dirs)
    finally:
        os.close(top)
    extra = sorted((set(found) - _GIT_FILES) | (dirs - _GIT_DIRS))
    if extra or any(mode not in _FILE_MODES for mode, _ in found.values()):
        return f"{path}/.git holds what airlift did not write: {(extra or sorted(found))[0].decode(errors='replace')}"
    try:
        config = read_regular(path, ".git/config", max_bytes=4096)
        alternates = read_regular(path, ".git/objects/info/alternates", max_bytes=8192).decode(errors="replace").strip()
    except (OSError, WorkError) as exc:
        return f"{path} is not a checkout made by airlift: {exc}"
    if config != _git_config(commit) or os.path.realpath(alternates) != os.path.realpath(bare / "objects"):
        return f"{path}/.git was changed after airlift wrote it"
    return None


def _default_bare(path: Path) -> Path:
    return path.parent.parent.parent / "repos" / f"{path.parent.name}.git"


def checkout_state(path: Path, commit: str, *, bare: Path | None = None) -> str | None:
    """None when `path` holds exactly the files of `commit`; otherwise what is wrong with it.

    No git runs in `path` (a job may have written config, hooks or attributes there): HEAD is read as a
    file, and every file, link and directory is compared with `git ls-tree` of the bare repo's objects.
    """
    bare = _default_bare(path) if bare is None else bare
    if not os.path.isdir(path / ".git") or os.path.islink(path) or os.path.islink(path / ".git"):
        return f"{path} is missing"
    problem = _git_dir_problem(path, commit, bare)
    if problem:
        return problem
    try:
        with isolated_git(bare / "objects", object_format=_object_format(commit)) as env:
            tree = _pinned_tree(env, commit, str(bare))
    except WorkError as exc:
        return f"{path}: cannot list {commit[:12]} in {bare}: {exc}"
    found: Tree = {}
    dirs: set[bytes] = set()
    top = os.open(path, _DIR)
    try:
        _scan(top, b"", commit, tree, found, dirs)
    finally:
        os.close(top)
    wanted_dirs = {name[:i] for name in tree for i in range(len(name)) if name[i:i + 1] == b"/"}
    for rel in sorted(set(tree) | set(found) | (dirs ^ wanted_dirs)):
        shown = rel.decode(errors="replace")
        if rel in dirs ^ wanted_dirs:
            return f"{path} has local changes: directory {shown} is {'not in' if rel in dirs else 'missing from'} the pinned commit"
        if rel not in found:
            return f"{path} has local changes: {shown} is missing"
        if rel not in tree:
            return f"{path} has local changes: {shown} is not in the pinned commit"
        if found[rel] != tree[rel]:
            return f"{path} has local changes: {shown} differs from the pinned commit"
    return None


def _subdir(fds: dict[bytes, int], rel: bytes) -> int:
    """The descriptor of directory `rel` below the top (`fds[b""]`), made if missing, links refused."""
    if rel not in fds:
        parent_rel, _, name = rel.rpartition(b"/")
        parent = _subdir(fds, parent_rel)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
        fds[rel] = os.open(name, _DIR, dir_fd=parent)
    return fds[rel]


def _write(fds: dict[bytes, int], rel: bytes, chunks: Iterable[bytes], mode: int) -> None:
    parent_rel, _, name = rel.rpartition(b"/")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=_subdir(fds, parent_rel))
    try:
        for chunk in chunks:
            os.write(fd, chunk)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _materialize(top: int, env: dict[str, str], tree: Tree, commit: str, bare: Path, what: str) -> None:
    """Write the files of `tree` below directory `top` from the blobs, then a `.git` naming `commit`."""
    fds = {b"": top}
    try:
        for rel, (mode, _oid) in sorted(tree.items()):
            if mode == "160000":
                _subdir(fds, rel)
            elif mode not in _FILE_MODES and mode != "120000":
                raise WorkError(f"{rel!r}: git mode {mode} is not a file, a link or a submodule", artifact_id=what)
        wanted = [(rel, mode, oid) for rel, (mode, oid) in sorted(tree.items()) if mode != "160000"]
        for (rel, mode, _oid), (_, body) in zip(wanted, git_blobs(env, [oid for _, _, oid in wanted], what=what), strict=True):
            if mode == "120000":
                parent_rel, _, name = rel.rpartition(b"/")
                os.symlink(b"".join(body), name, dir_fd=_subdir(fds, parent_rel))
            else:
                _write(fds, rel, body, _FILE_MODES[mode])
        git_isolated(env, "read-tree", f"{commit}^{{commit}}", what=what)  # the index, into the private repo
        index = Path(env["GIT_INDEX_FILE"]).read_bytes()
        _subdir(fds, b".git/refs")
        for rel, data in ((b".git/HEAD", f"{commit}\n".encode()), (b".git/config", _git_config(commit)),
                          (b".git/objects/info/alternates", os.fsencode(f"{bare.resolve() / 'objects'}\n")),
                          (b".git/index", index)):
            _write(fds, rel, [data], 0o444)
    finally:
        for rel in sorted(fds, key=len, reverse=True):  # read-only from the leaves up, then closed
            os.fchmod(fds[rel], 0o555)
            if rel:
                os.close(fds[rel])


def make_checkout(root: Path, name: str, commit: str) -> Path:
    """The read-only checkout of `repos/<name>.git` at `commit`, made aside and renamed in (idempotent).

    Args:
        root: The site's shared_root (the bare repository was ingested there).
        name: The repo's name (artifact id `repos/<name>`).
        commit: The pinned commit (the manifest's resolved commit).

    Returns:
        `checkouts/<name>/<commit>/`.

    Raises:
        WorkError: The bare repository is missing or lacks the commit, or the made checkout fails its check.
    """
    confined = ConfinedRoot(root)
    final = confined.path(checkout_path(Path(), name, commit).as_posix())
    bare = confined.path(f"repos/{name}.git")
    if checkout_state(final, commit, bare=bare) is None:
        return final
    if not bare.is_dir():
        raise WorkError(f"repos/{name}: {bare} is missing; run airlift ingest")
    confined.mkdirs(final.parent.relative_to(confined.root).as_posix())
    # No clone, no checkout: git writing into a directory a job can reach would honour what the job
    # planted there. The files come from the bare repo's objects, read by an isolated git.
    work = Path(tempfile.mkdtemp(prefix=f".{commit}.tmp-", dir=final.parent))
    try:
        top = os.open(work, _DIR)
        try:
            with isolated_git(bare / "objects", object_format=_object_format(commit)) as env:
                _materialize(top, env, _pinned_tree(env, commit, f"repos/{name}"), commit, bare, f"repos/{name}")
        finally:
            os.close(top)
        problem = checkout_state(work, commit, bare=bare)
        if problem:
            raise WorkError(f"repos/{name}: the checkout made of {commit[:12]} does not check: {problem}")
        if final.exists() or final.is_symlink():
            old = final.parent / f".{commit}.old-{os.getpid()}"
            _remove(old)
            os.replace(final, old)
            os.replace(work, final)
            _remove(old)
        else:
            os.replace(work, final)
    finally:
        _remove(work)
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

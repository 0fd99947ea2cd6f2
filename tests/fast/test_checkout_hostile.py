"""A pinned checkout lies under shared_root, which jobs can write: nothing a job plants in it (git
config, hooks, attributes, filters, files, links) may run on the submit host or pass as the pinned commit."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from airlift.layouts.checkout import checkout_state, make_checkout
from tests.fast.conftest import ingested_repo


def _writable(top: Path) -> None:
    """What a job with write access does first: make the read-only tree writable again."""
    for dirpath, dirnames, _files in os.walk(top):
        os.chmod(dirpath, 0o755)
        for name in dirnames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(os.path.join(dirpath, name), 0o755)
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | stat.S_IWUSR)


@pytest.fixture
def checkout(tmp_path: Path):
    gb, _built, root = ingested_repo(tmp_path)
    path = make_checkout(root, "tool", gb.commit)
    assert checkout_state(path, gb.commit) is None
    assert (path / "src" / "main.py").read_bytes() == b"print('hi')\n"
    _writable(path)
    return root, path, gb.commit, tmp_path / "PWNED"


def _refused_and_rebuilt(root: Path, path: Path, commit: str, sentinel: Path, expect: str) -> None:
    problem = checkout_state(path, commit)
    assert not sentinel.exists(), "a command planted by a job ran on the submit host"
    assert problem is not None and expect in problem, problem
    rebuilt = make_checkout(root, "tool", commit)
    assert not sentinel.exists(), "a command planted by a job ran while the checkout was remade"
    assert rebuilt == path and checkout_state(path, commit) is None
    assert (path / "README.md").read_bytes() == b"version two\n"


def test_a_planted_fsmonitor_never_runs(checkout):
    root, path, commit, sentinel = checkout
    (path / ".git" / "config").write_text(f"[core]\n\tfsmonitor = touch {sentinel}\n")
    _refused_and_rebuilt(root, path, commit, sentinel, ".git was changed")


def test_a_planted_clean_filter_and_hook_never_run(checkout):
    root, path, commit, sentinel = checkout
    (path / ".git" / "config").write_text(
        f"[core]\n\trepositoryformatversion = 0\n\tbare = false\n[filter \"evil\"]\n\tclean = sh -c 'touch {sentinel}; cat'\n"
        f"\tsmudge = sh -c 'touch {sentinel}; cat'\n\trequired = true\n")
    (path / ".git" / "info").mkdir(exist_ok=True)
    (path / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    (path / ".git" / "hooks").mkdir(exist_ok=True)
    hook = path / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {sentinel}\n")
    hook.chmod(0o755)
    (path / ".gitattributes").write_text("* filter=evil\n")
    os.utime(path / "README.md", (1, 1))  # racily clean: git status would run the clean filter
    _refused_and_rebuilt(root, path, commit, sentinel, "airlift did not write")


def test_a_planted_config_in_the_bare_repo_never_runs_either(checkout):
    root, path, commit, sentinel = checkout
    bare = root / "repos" / "tool.git"
    bare.chmod(0o755)
    for sub in ("config", "info"):
        if (bare / sub).exists():
            (bare / sub).chmod(0o755 if sub == "info" else 0o644)
    with open(bare / "config", "a") as handle:
        handle.write(f"[core]\n\tfsmonitor = touch {sentinel}\n[filter \"evil\"]\n\tsmudge = sh -c 'touch {sentinel}; cat'\n")
    (bare / "info").mkdir(exist_ok=True)
    (bare / "info" / "attributes").write_text("* filter=evil\n")
    (path / "README.md").write_bytes(b"tampered\n")
    _refused_and_rebuilt(root, path, commit, sentinel, "README.md differs")


def test_a_modified_file_or_mode_is_not_the_pinned_commit(checkout):
    root, path, commit, sentinel = checkout
    (path / "README.md").write_bytes(b"version two\n# and a backdoor\n")
    _refused_and_rebuilt(root, path, commit, sentinel, "README.md differs")
    _writable(path)
    (path / "src" / "main.py").chmod(0o755)
    _refused_and_rebuilt(root, path, commit, sentinel, "main.py differs")


def test_an_extra_file_or_directory_is_not_the_pinned_commit(checkout):
    root, path, commit, sentinel = checkout
    (path / "src" / "sitecustomize.py").write_text("import os\n")
    _refused_and_rebuilt(root, path, commit, sentinel, "sitecustomize.py is not in the pinned commit")
    _writable(path)
    (path / "empty").mkdir()
    _refused_and_rebuilt(root, path, commit, sentinel, "directory empty is not in")
    _writable(path)
    (path / "README.md").unlink()
    _refused_and_rebuilt(root, path, commit, sentinel, "README.md is missing")


def test_a_symlink_swapped_in_is_not_followed(checkout, tmp_path):
    root, path, commit, sentinel = checkout
    outside = tmp_path / "outside.md"
    outside.write_bytes(b"version two\n")  # the same bytes: only a followed link would pass
    (path / "README.md").unlink()
    (path / "README.md").symlink_to(outside)
    _refused_and_rebuilt(root, path, commit, sentinel, "README.md differs")
    _writable(path)
    elsewhere = tmp_path / "src-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "main.py").write_bytes(b"print('hi')\n")
    (path / "src" / "main.py").unlink()
    (path / "src").rmdir()
    (path / "src").symlink_to(elsewhere)
    _refused_and_rebuilt(root, path, commit, sentinel, "src")


def test_a_symlinked_git_dir_or_checkout_is_missing(checkout, tmp_path):
    root, path, commit, sentinel = checkout
    real_git = tmp_path / "git-elsewhere"
    (path / ".git").rename(real_git)
    (path / ".git").symlink_to(real_git)
    _refused_and_rebuilt(root, path, commit, sentinel, "missing")

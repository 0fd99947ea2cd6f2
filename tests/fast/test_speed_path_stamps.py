"""`path:` rebuilds cost a stat per unchanged file: source stamps from airlift's own verified copy.

Content stays the truth: a stamp is used only while every stat field matches and the blob is in the
store; a file edited in place, replaced, or whose mtime was set back is copied (and hashed) again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from airlift.config.spec import LocalPath
from airlift.fetch import path as path_source
from airlift.fetch import path_stamps
from airlift.fetch.base import FetchContext
from airlift.fetch.cache import Cache
from airlift.fetch.kinds import fetch_resolved
from airlift.util.errors import WorkError


def _tree(root: Path, count: int = 4) -> dict[str, bytes]:
    files = {f"part-{i}.bin": os.urandom(1000 + i) for i in range(count)}
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def _build(root: Path, cache: Cache) -> tuple[dict[str, str], list[int]]:
    """Resolve and fetch `root`; the sha256 per file, and how many bytes were copied (progress)."""
    copied: list[int] = []
    ctx = FetchContext(cache=cache, on_bytes=copied.append)
    resolved = path_source.resolve(LocalPath(path=str(root)), artifact_id="datasets/data", ctx=ctx)
    artifact = fetch_resolved(resolved, ctx)
    return {f.path: f.sha256 for f in artifact.files}, copied


def test_unchanged_files_are_recognised_changed_one_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    files = _tree(root)
    cache = Cache(tmp_path / "cache")
    digests, _ = _build(root, cache)
    assert digests == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    stamps = path_stamps.load(cache.root, str(root.resolve()))
    assert set(stamps) == set(files)

    # Edit one file in place: the artifact key changes; only that file goes through add_file again.
    (root / "part-2.bin").write_bytes(b"edited" * 100)
    added: list[str] = []
    original = cache.store.__class__.add_file

    def counting(self, path, **kwargs):  # noqa: ANN001, ANN202 - a spy on the real method
        added.append(Path(path).name)
        return original(self, path, **kwargs)

    monkeypatch.setattr(cache.store.__class__, "add_file", counting)
    digests, _ = _build(root, cache)
    assert added == ["part-2.bin"]
    assert digests["part-2.bin"] == hashlib.sha256(b"edited" * 100).hexdigest()
    assert digests["part-0.bin"] == hashlib.sha256(files["part-0.bin"]).hexdigest()


def test_restored_mtime_or_missing_blob_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    files = _tree(root, count=2)
    cache = Cache(tmp_path / "cache")
    _build(root, cache)
    target = root / "part-0.bin"
    info = target.stat()
    # Same size, same mtime (set back), same inode: only ctime tells the content changed.
    with open(target, "r+b") as handle:
        handle.write(b"X" * 10)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    changed = b"X" * 10 + files["part-0.bin"][10:]
    digests, _ = _build(root, cache)
    assert digests["part-0.bin"] == hashlib.sha256(changed).hexdigest()

    # A stamped blob that was removed from the store is copied again, not assumed.
    blob = cache.store.blob_path(digests["part-1.bin"])
    os.chmod(blob.parent, 0o755)
    blob.unlink()
    (root / "part-0.bin").write_bytes(b"force a new key")
    digests, _ = _build(root, cache)
    assert digests["part-1.bin"] == hashlib.sha256(files["part-1.bin"]).hexdigest()
    assert cache.store.has(digests["part-1.bin"])


def test_forged_or_foreign_stamp_file_counts_as_empty(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _tree(root, count=1)
    cache = Cache(tmp_path / "cache")
    _build(root, cache)
    stamp_file = path_stamps.stamp_path(cache.root, str(root.resolve()))
    assert path_stamps.load(cache.root, str(root.resolve()))
    stamp_file.write_bytes(b'{"schema_version": 1, "root": "/elsewhere", "files": {}}')
    assert path_stamps.load(cache.root, str(root.resolve())) == {}
    stamp_file.write_bytes(b"not json")
    assert path_stamps.load(cache.root, str(root.resolve())) == {}


def test_file_changed_between_resolve_and_fetch_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _tree(root, count=2)
    cache = Cache(tmp_path / "cache")
    ctx = FetchContext(cache=cache)
    resolved = path_source.resolve(LocalPath(path=str(root)), artifact_id="datasets/data", ctx=ctx)
    (root / "part-1.bin").write_bytes(b"written after resolve")
    with pytest.raises(WorkError, match="changed while the build was reading it"):
        fetch_resolved(resolved, ctx)
    assert cache.load(resolved.cache_key) is None
    # The next build sees the new content and records it.
    digests, _ = _build(root, cache)
    assert digests["part-1.bin"] == hashlib.sha256(b"written after resolve").hexdigest()

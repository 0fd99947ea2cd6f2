"""`airlift cache info|prune` in-process: what prune removes, what it keeps, and its lock discipline.

The cache is real (a `Cache` over a tmp directory, blobs written through `BlobStore`, records through
`Cache.save`); ages are set with os.utime, and "a running writer" is a partial held open by
`BlobStore.partial`, exactly as a download holds it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from airlift.fetch.cache import DEFAULT_PRUNE_AGE, Cache, parse_age
from airlift.fetch.cache_prune import cache_info, prune_cache
from airlift.util.errors import InputError
from airlift.util.locks import FileLock, try_lock
from tests.fast.conftest import build_bundle, url_file

OLD = time.time() - 3 * 86400  # three days ago: older than the default 24h


def _age(path: Path, when: float = OLD) -> None:
    os.utime(path, (when, when), follow_symlinks=False)


def _blob(cache: Cache, data: bytes, *, old: bool = True) -> str:
    digest = cache.store.put_bytes(data).sha256
    if old:
        _age(cache.store.blob_path(digest))
    return digest


def _record(cache: Cache, key: str, name: str, data: bytes) -> str:
    """Store `data` and save a record naming it, as a build would; returns the blob's digest."""
    digest = cache.store.put_bytes(data).sha256
    cache.save(key, url_file(name, data).artifact())
    return digest


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path / "cache")
    cache.store.ensure_dirs()
    return cache


def test_referenced_blobs_stay_unreferenced_old_ones_go_young_ones_stay(cache, tmp_path):
    kept = _record(cache, "kept", "kept.bin", b"referenced by a record")
    _age(cache.store.blob_path(kept))  # old, but a record names it
    old_loose = _blob(cache, b"nothing names me, and I am old")
    young_loose = _blob(cache, b"nothing names me, but I was just written", old=False)
    bundle = build_bundle(tmp_path / "bundle", [url_file("lent.txt", b"only a kept bundle names me")])
    in_bundle = _blob(cache, b"only a kept bundle names me")

    before = cache_info(cache)
    assert (before.blobs, before.records, before.unreferenced_blobs) == (4, 1, 3)

    report = prune_cache(cache, keep_bundles=[bundle.root])

    assert (report.blobs_removed, report.blobs_kept_young) == (1, 1)
    assert report.blob_bytes_removed == len(b"nothing names me, and I am old")
    assert not cache.store.has(old_loose)
    for digest in (kept, young_loose, in_bundle):
        assert cache.store.has(digest)
    assert cache.load("kept") is not None  # the record still counts: all its blobs are there

    # Without the bundle, its blob is loose and old: a second prune takes it.
    assert prune_cache(cache).blobs_removed == 1
    assert not cache.store.has(in_bundle)
    # --older-than 0s takes the young loose blob too, never the referenced one.
    assert prune_cache(cache, older_than=0).blobs_removed == 1
    assert cache.store.has(kept) and not cache.store.has(young_loose)


def test_an_unreadable_record_still_protects_every_digest_it_names(cache):
    digest = _blob(cache, b"named by a record this airlift cannot parse")
    cache.records_dir.mkdir(parents=True, exist_ok=True)
    (cache.records_dir / "future.json").write_text(json.dumps({"schema": 99, "blobs": [digest]}))
    assert prune_cache(cache).blobs_removed == 0
    assert cache.store.has(digest)


def test_dry_run_counts_and_removes_nothing(cache):
    digest = _blob(cache, b"loose and old")
    report = prune_cache(cache, dry_run=True)
    assert report.dry_run and report.blobs_removed == 1
    assert cache.store.has(digest)


def test_a_locked_partial_stays_a_stale_one_goes_with_its_lock(cache):
    with cache.store.partial("hf-live") as live:
        live.writer.write(b"a running download")
        live.writer.flush()
        _age(live.path)  # even an old-looking partial stays while its writer holds the lock
        with cache.store.partial("hf-dead") as dead:
            dead.writer.write(b"a download killed three days ago")
        _age(cache.store.tmp_dir / "hf-dead.part")
        with cache.store.partial("hf-recent") as recent:
            recent.writer.write(b"killed a minute ago: the next build resumes it")

        info = cache_info(cache)
        assert (info.partials, info.partials_in_use) == (3, 1)
        report = prune_cache(cache)

        assert (report.partials_removed, report.partials_kept_in_use, report.partials_kept_young) == (1, 1, 1)
        assert report.partial_bytes_removed == len(b"a download killed three days ago")
        assert live.path.exists() and (cache.store.tmp_dir / "hf-live.lock").exists()
        assert not (cache.store.tmp_dir / "hf-dead.part").exists()
        assert not (cache.store.tmp_dir / "hf-dead.lock").exists()
        assert (cache.store.tmp_dir / "hf-recent.part").exists()
    # The live writer finishes normally after prune ran beside it.
    with cache.store.partial("hf-live") as resumed:
        assert resumed.offset == len(b"a running download")


def test_stale_temp_files_locks_and_work_dirs_go_live_and_young_ones_stay(cache):
    host = socket.gethostname().replace(".", "-")
    tmp = cache.store.tmp_dir
    dead_old = tmp / f"{host}.{_dead_pid()}.abc.tmp"
    dead_young = tmp / f"{host}.{_dead_pid()}.def.tmp"
    live_old = tmp / f"{host}.{os.getpid()}.ghi.tmp"  # this very process: alive
    for path in (dead_old, dead_young, live_old):
        path.write_bytes(b"half a blob")
    _age(dead_old)
    _age(live_old)
    orphan_lock = tmp / "gone.lock"
    orphan_lock.touch()
    _age(orphan_lock)
    work = tmp / "git-x1y2"
    (work / "objects").mkdir(parents=True)
    (work / "objects" / "pack").write_bytes(b"a clone killed long ago")
    for path in (work / "objects" / "pack", work / "objects", work):
        _age(path)
    busy = tmp / "git-busy"
    busy.mkdir()
    (busy / "fresh").write_bytes(b"a clone writing right now")
    _age(busy)  # the directory looks old; what is inside is not
    leftover = cache.records_dir / ".k.json.x9.tmp"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"{")
    _age(leftover)

    info = cache_info(cache)
    assert info.stale_locks == 1
    assert info.stale_temp == 4  # dead_old, dead_young, the old work dir, the record leftover
    report = prune_cache(cache)

    assert report.temp_removed == 3 and report.locks_removed == 1
    assert not dead_old.exists() and not work.exists() and not leftover.exists() and not orphan_lock.exists()
    assert dead_young.exists() and live_old.exists() and busy.exists()


def test_dangling_etag_entries_go_and_an_etag_protects_no_blob(cache):
    kept = _record(cache, "hub", "weights.bin", b"hub file named by a record")
    cache.remember_etag("a" * 40, kept)
    loose = _blob(cache, b"hub file no record names")
    cache.remember_etag("b" * 40, loose)
    cache.remember_etag("c" * 40, "d" * 64)  # its blob is long gone
    assert prune_cache(cache, dry_run=True).etags_removed == 2  # a dry run counts what the blobs it would remove take along

    report = prune_cache(cache)

    assert report.blobs_removed == 1 and not cache.store.has(loose)
    assert report.etags_removed == 2  # the one already dangling, and the one whose blob prune just removed
    assert cache.sha256_for_etag("a" * 40, None) == kept
    assert sorted(p.name for p in cache.etags_dir.iterdir()) == ["a" * 40]


def test_parse_age():
    assert parse_age("7d") == 7 * 86400
    assert parse_age("24h") == DEFAULT_PRUNE_AGE
    assert parse_age("90m") == 5400 and parse_age("0s") == 0 and parse_age("1.5h") == 5400
    with pytest.raises(InputError, match="--older-than '7 days'"):
        parse_age("7 days")


def test_a_removed_lock_file_is_never_held_twice(tmp_path):
    path = tmp_path / "x.lock"
    first = FileLock(path)
    assert first.acquire()
    waiter = FileLock(path)
    held = threading.Event()
    thread = threading.Thread(target=lambda: (waiter.acquire(), held.set()))
    thread.start()
    time.sleep(0.2)
    assert not held.is_set()  # blocked on the first holder (on the file it opened before the removal)
    first.remove()
    newcomer = FileLock(path)
    assert newcomer.acquire(blocking=False)  # a fresh file at the name: free
    first.release()
    time.sleep(0.2)
    # The waiter now holds the removed file's lock, sees the name points elsewhere, and waits its turn.
    assert not held.is_set(), "two processes would hold the same lock"
    newcomer.release()
    assert held.wait(5)
    thread.join()
    assert os.path.samestat(os.stat(path), os.fstat(waiter._fd))
    with try_lock(path) as third:
        assert third is None
    waiter.release()
    with try_lock(path) as fourth:
        assert fourth is not None


def test_image_layer_and_engine_index_entries_go_with_their_blobs(cache):
    from airlift.oci.dedup import LayerBlob, LayerIndex

    kept = _record(cache, "img", "layer", b"a layer a record names")
    loose = _blob(cache, b"a layer no record names")
    index = LayerIndex(cache.root, cache.store)
    for diff_id, digest in (("1" * 64, kept), ("2" * 64, loose)):
        size = cache.store.blob_path(digest).stat().st_size
        index.remember(f"sha256:{diff_id}", LayerBlob(media_type="application/vnd.oci.image.layer.v1.tar+gzip", digest=f"sha256:{digest}", size=size))
    engine = cache.root / "engine"
    engine.mkdir()
    (engine / f"{'e' * 64}.json").write_text(json.dumps({"manifest": f"sha256:{loose}"}))
    (engine / f"{'f' * 64}.json").write_text("not json")

    rehearsal = prune_cache(cache, dry_run=True)
    assert (rehearsal.blobs_removed, rehearsal.indexes_removed) == (1, 3), "a dry run counts what the blobs it would remove take along"
    assert len(list((cache.root / "layers").iterdir())) == 2 and len(list(engine.iterdir())) == 2

    report = prune_cache(cache)

    assert report.blobs_removed == 1 and report.indexes_removed == 3
    assert [p.name for p in (cache.root / "layers").iterdir()] == [f"{'1' * 64}.json"]
    assert index.lookup(f"sha256:{'1' * 64}") is not None and not list(engine.iterdir())

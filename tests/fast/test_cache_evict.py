"""`airlift cache prune --records | --artifact | --all`: records can be evicted on purpose, so what was
downloaded can leave the cache; a record a build reuses counts as used, and prune's locks still hold."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from airlift.cli.main import main
from airlift.fetch.cache import Cache
from airlift.fetch.cache_prune import prune_cache
from tests.fast.conftest import url_file

OLD = time.time() - 3 * 86400


def _age(path: Path, when: float = OLD) -> None:
    os.utime(path, (when, when))


def _record(cache: Cache, key: str, name: str, data: bytes, *, old: bool = True) -> str:
    digest = cache.store.put_bytes(data).sha256
    cache.save(key, url_file(name, data).artifact())
    if old:
        _age(cache.store.blob_path(digest))
        _age(cache._record_path(key))
    return digest


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path / "cache")
    cache.store.ensure_dirs()
    return cache


def test_plain_prune_never_evicts_a_record_however_old(cache):
    digest = _record(cache, "k", "a.bin", b"old and recorded")
    report = prune_cache(cache, older_than=0)
    assert report.records_removed == 0 and report.blobs_removed == 0 and cache.store.has(digest)


def test_records_by_age_go_with_their_blobs_and_a_reused_record_stays(cache):
    stale = _record(cache, "stale", "stale.bin", b"nobody rebuilt this for days")
    reused = _record(cache, "reused", "reused.bin", b"a build reuses this one")
    assert cache.load("reused") is not None  # a build reusing it marks it used now
    dry = prune_cache(cache, older_than=86400, records=True, dry_run=True)
    assert (dry.records_removed, dry.blobs_removed) == (1, 1) and cache.load_record("stale") is not None
    report = prune_cache(cache, older_than=86400, records=True)
    assert (report.records_removed, report.blobs_removed) == (1, 1)
    assert cache.load_record("stale") is None and not cache.store.has(stale)
    assert cache.load("reused") is not None and cache.store.has(reused)


def test_records_of_one_artifact_go_whatever_their_age(cache):
    gone = _record(cache, "one", "one.bin", b"evict me by id", old=False)
    kept = _record(cache, "two", "two.bin", b"another artifact", old=False)
    report = prune_cache(cache, older_than=0, artifacts=["files/one.bin"])
    assert report.records_removed == 1 and not cache.store.has(gone)
    assert cache.load("two") is not None and cache.store.has(kept)


def test_evicted_blob_still_waits_for_the_age_and_a_partial_in_use_stays(cache):
    young = _record(cache, "young", "young.bin", b"just downloaded", old=False)
    with cache.store.partial("in-flight") as part:  # a download in progress holds its lock
        part.writer.write(b"half")
        part.writer.flush()
        report = prune_cache(cache, older_than=86400, artifacts=["files/young.bin"])
        assert report.records_removed == 1 and cache.store.has(young) and report.blobs_kept_young == 1
        assert report.partials_kept_in_use == 1


def test_cache_prune_all_empties_the_cache(cache, monkeypatch, capsys):
    monkeypatch.setenv("AIRLIFT_CACHE", str(cache.root))
    digests = [_record(cache, f"k{i}", f"f{i}.bin", f"data {i}".encode(), old=False) for i in range(3)]
    assert main(["cache", "prune", "--all"]) == 0
    out = capsys.readouterr().out
    assert "removed from" in out and "3 records, 3 blobs" in out
    assert not any(cache.store.has(d) for d in digests)
    assert not list(cache.records_dir.glob("*.json"))

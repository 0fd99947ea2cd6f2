"""Parallel ranged downloads against the Hub stand-in with a per-connection rate cap, in-process.

The stand-in counts the connections it accepts, the most bodies it sent at once and every content
byte, so each test asserts what crossed the wire, not only what arrived.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time

import pytest

from airlift.fetch import http as fetch_http
from airlift.fetch.base import FetchContext
from airlift.fetch.cache import Cache
from airlift.testing.hubserver import HubServer
from airlift.util import ranged
from airlift.util.errors import TransientError, WorkError
from airlift.util.http import client

RANGE = 256 << 10


@pytest.fixture
def small_ranges(small_ranges, monkeypatch):
    """conftest's 256 KiB ranges, over at most 4 connections per host."""
    monkeypatch.setenv("AIRLIFT_MAX_PER_HOST", "4")


@pytest.fixture
def stand_in():
    server = HubServer().start()
    yield server
    server.stop()


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _settle(server: HubServer) -> None:
    """Wait until the stand-in has sent what it was sending when the client gave up, before counting anew."""
    deadline = time.monotonic() + 10
    while server.streams and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # a stream's last write is counted just after it stops counting as open


def _ctx(tmp_path, attempts: int = 6, seen: list[int] | None = None) -> FetchContext:
    return FetchContext(cache=Cache(tmp_path / "cache"), attempts=attempts, on_bytes=None if seen is None else seen.append)


def test_a_large_file_comes_over_several_connections_byte_identical(tmp_path, stand_in, small_ranges):
    data = _data(20 * RANGE + 1234, 1)  # a short last range
    url = stand_in.add_file("big.bin", data)
    stand_in.set_faults(bytes_per_second=2 << 20)  # per connection: one stream alone would take ~2.6 s
    seen: list[int] = []
    ctx = _ctx(tmp_path, seen=seen)
    blob = fetch_http.download(url, ctx, label="datasets/big: big.bin", etag=None, size=len(data), expected_sha256=hashlib.sha256(data).hexdigest())
    assert ctx.cache.store.blob_path(blob.sha256).read_bytes() == data
    # Several connections at once, never more than the per-host cap (4 here); all four, unless this
    # busy machine was slow to start a thread before another had finished a range.
    assert 2 <= stand_in.peak_streams <= 4 and stand_in.connections >= stand_in.peak_streams
    assert stand_in.content_bytes == len(data)  # every byte once: no range fetched twice
    assert sum(seen) == len(data)  # progress counts the whole file once
    assert not list((tmp_path / "cache").rglob("*.ranges")) and not list((tmp_path / "cache").rglob("*.part"))


def test_ranges_share_the_per_host_cap_with_other_downloads(tmp_path, stand_in, small_ranges, monkeypatch):
    monkeypatch.setenv("AIRLIFT_MAX_PER_HOST", "3")
    monkeypatch.setattr(ranged, "WINDOW_PER_CONNECTION", 1)
    data = [_data(8 * RANGE, 10 + i) for i in range(3)]
    urls = [stand_in.add_file(f"shard-{i}.bin", d) for i, d in enumerate(data)]
    stand_in.set_faults(bytes_per_second=16 << 20)
    ctx = _ctx(tmp_path)
    from airlift.util.net import _HOST_SLOTS, bounded_map

    _HOST_SLOTS.clear()  # a fresh semaphore at this test's cap
    blobs = bounded_map(
        lambda i: fetch_http.download(urls[i], ctx, label=f"s{i}", etag=None, size=len(data[i]), expected_sha256=None), range(3), workers=3
    )
    _HOST_SLOTS.clear()
    assert [ctx.cache.store.blob_path(b.sha256).read_bytes() for b in blobs] == data
    assert stand_in.peak_streams <= 3  # three files of parallel ranges, and never more than the host's 3 slots


def test_a_failed_range_is_retried_alone(tmp_path, stand_in, small_ranges, monkeypatch):
    monkeypatch.setattr("airlift.util.net.backoff", lambda attempt: 0.0)
    data = _data(16 * RANGE, 2)
    url = stand_in.add_file("flaky.bin", data)
    stand_in.set_faults(rate=0.2, seed=6)  # a seed whose draws hold no long run of faults
    seen: list[int] = []
    ctx = _ctx(tmp_path, seen=seen)
    blob = fetch_http.download(url, ctx, label="flaky", etag=None, size=len(data), expected_sha256=hashlib.sha256(data).hexdigest())
    assert ctx.cache.store.blob_path(blob.sha256).read_bytes() == data
    assert stand_in.faults_injected > 0
    # A cut sends half a range: only the failed ranges came again, never the whole file.
    assert stand_in.content_bytes <= len(data) + stand_in.faults_injected * RANGE // 2
    assert sum(seen) == len(data)  # the bytes of a failed attempt are taken back from the progress


def test_an_interrupted_download_resumes_without_refetching_completed_ranges(tmp_path, stand_in, small_ranges):
    data = _data(24 * RANGE, 3)
    url = stand_in.add_file("resume.bin", data)
    stand_in.set_faults(rate=0.25, seed=11)
    ctx = _ctx(tmp_path, attempts=1)
    with pytest.raises(TransientError):
        fetch_http.download(url, ctx, label="resume", etag=None, size=len(data), expected_sha256=hashlib.sha256(data).hexdigest())
    state = next((tmp_path / "cache").rglob("*.ranges"))
    done = json.loads(state.read_text())["done"]
    assert 0 < len(done) < 24, done
    stand_in.set_faults()
    _settle(stand_in)
    stand_in.reset_counters()
    blob = fetch_http.download(url, _ctx(tmp_path), label="resume", etag=None, size=len(data), expected_sha256=hashlib.sha256(data).hexdigest())
    assert ctx.cache.store.blob_path(blob.sha256).read_bytes() == data
    assert stand_in.content_bytes == len(data) - len(done) * RANGE  # the completed ranges were not fetched again


def test_a_server_without_range_still_works_over_one_stream(tmp_path, stand_in, small_ranges):
    data = _data(10 * RANGE, 4)
    url = stand_in.add_file("plain.bin", data)
    stand_in.set_faults(ignore_range=True)
    ctx = _ctx(tmp_path)
    blob = fetch_http.download(url, ctx, label="plain", etag=None, size=len(data), expected_sha256=hashlib.sha256(data).hexdigest())
    assert ctx.cache.store.blob_path(blob.sha256).read_bytes() == data
    # The first range request got the whole body (200): that answer is taken as the one stream.
    assert stand_in.content_requests == 1 and stand_in.content_bytes == len(data) and stand_in.peak_streams == 1
    assert not list((tmp_path / "cache").rglob("*.ranges"))


def test_a_file_of_unknown_size_goes_over_one_stream(tmp_path, stand_in, small_ranges):
    data = _data(10 * RANGE, 6)
    url = stand_in.add_file("unsized.bin", data)
    ctx = _ctx(tmp_path)
    blob = fetch_http.download(url, ctx, label="unsized", etag=None, size=None, expected_sha256=None)
    assert ctx.cache.store.blob_path(blob.sha256).read_bytes() == data
    assert stand_in.content_requests == 1 and stand_in.peak_streams == 1


def test_a_server_naming_another_total_fails_permanently(tmp_path, stand_in, small_ranges):
    data = _data(10 * RANGE, 7)
    url = stand_in.add_file("liar.bin", data)
    with client() as http, pytest.raises(WorkError, match="has 2621440 bytes, not the 2621450 announced") as caught:
        ranged.download(
            _ctx(tmp_path).cache.store, "liar", lambda h: http.stream("GET", url, headers=h), url=url,
            size=len(data) + 10, label="liar",
        )
    assert not isinstance(caught.value, TransientError)
    assert stand_in.content_requests == 1  # refused on the first answer, not retried


def test_a_pin_mismatch_discards_the_partial(tmp_path, stand_in, small_ranges):
    data = _data(4 * RANGE, 8)
    url = stand_in.add_file("pinned.bin", data)
    ctx = _ctx(tmp_path)
    with pytest.raises(WorkError, match="does not match"):
        fetch_http.download(url, ctx, label="pinned", etag=None, size=len(data), expected_sha256="0" * 64)
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix in (".part", ".ranges")]
    assert leftovers == [] and not os.listdir(ctx.cache.store.blobs_dir)


def test_a_hub_file_above_the_threshold_is_checked_against_its_git_blob_id(tmp_path, stand_in, small_ranges):
    data = _data(3 * RANGE, 9)
    stand_in.add_repo("model", "acme/ranged", files={"tokenizer.json": data}, lfs=set())
    url = f"{stand_in.url}/acme/ranged/resolve/main/tokenizer.json"
    from airlift.util.hashing import git_blob_id

    with client() as http:
        got = ranged.download(
            _ctx(tmp_path).cache.store, "gitblob", lambda h: http.stream("GET", url, headers=h), url=url, size=len(data),
            label="acme/ranged: tokenizer.json", expected_git_sha1=git_blob_id(data),
        )
    assert got is not None and got.git_sha1 == git_blob_id(data) and got.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("record", ['{"done": "0123"}', '{"size": 1, "done": [0]}', "not json", '[1, 2]'])
def test_a_record_that_does_not_fit_this_file_is_ignored(tmp_path, stand_in, small_ranges, record):
    data = _data(4 * RANGE, 12)
    url = stand_in.add_file("rec.bin", data)
    ctx = _ctx(tmp_path)
    key = hashlib.sha256(f"url\0{url}\0None\0{len(data)}".encode()).hexdigest()  # fetch/http.py's partial key
    ctx.cache.store.ensure_dirs()
    (ctx.cache.store.tmp_dir / f"{key}-r.part").write_bytes(b"\0" * len(data))  # holes a bogus record would vouch for
    (ctx.cache.store.tmp_dir / f"{key}-r.ranges").write_text(record)
    blob = fetch_http.download(url, ctx, label="rec", etag=None, size=len(data), expected_sha256=None)
    assert ctx.cache.store.blob_path(blob.sha256).read_bytes() == data
    assert stand_in.content_bytes == len(data)


def test_a_worker_waiting_for_a_buffer_holds_no_range(tmp_path, small_ranges):
    """The invariant that keeps the window from deadlocking: a range is taken only with a buffer to fetch it.

    Had a waiting worker taken its range first, the lowest range could wait for a buffer while every
    buffer held a later range, which cannot be hashed (and give its buffer back) before the lowest one:
    a 2 GiB layer over 8 connections hung so, every worker waiting in `_next`.
    """
    import threading

    job = ranged._Job(tmp_path / "blob-r", 4 * RANGE, None, open_stream=None, url="http://127.0.0.1:9/x", label="blob",
                      check=lambda *_: None, attempts=1, on_bytes=None, git_blob_size=None)
    job._todo, job._untaken = iter(range(job.count)), job.count
    job._capacity = job._allocated = 2  # every buffer is out, holding later ranges
    taken: list[tuple[int, bytearray] | None] = []
    waiter = threading.Thread(target=lambda: taken.append(job._next()), daemon=True)
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive(), "with no buffer free, a worker waits"
    assert next(job._todo) == 0, "the waiting worker has taken no range: range 0 is still there for whoever has a buffer"
    job._untaken -= 1  # (taken by the test, as a worker with a buffer would)
    buffer = bytearray(RANGE)
    with job._cond:
        job._free.append(buffer)
        job._cond.notify_all()
    waiter.join(timeout=5)
    assert taken == [(1, buffer)]
    # With no range left, a worker stops at once, buffer or not (it holds a host slot another file could use).
    job._untaken, job._allocated, job._free = 0, 2, []
    started = time.monotonic()
    assert job._next() is None and time.monotonic() - started < 1
    os.close(job.fd)

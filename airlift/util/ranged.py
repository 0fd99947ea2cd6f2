"""Parallel byte-range downloads of one large file: Hub files, `url:`, wheels, registry layers (see `download`).

A file of RANGED_MIN bytes or more, of known size, is cut into RANGE_SIZE ranges, written at their
offsets into one partial file in the store's temp area; up to `max_per_host()` threads fetch them,
each holding one of the host's slots (the `host_slot` whole files take, so eight shards and one big
file share the link), taken before its buffer (a thread queued for a slot holds no memory).

- Hashing: the sha256 (and git's sha1, when asked) runs over the contiguous prefix as ranges
  complete, from the bytes in memory. A range needs one of WINDOW_PER_CONNECTION x connections
  buffers of RANGE_SIZE, back once its range is hashed, so memory stays under that (64 MiB at 8
  connections) whatever the file size. Bytes are read back from disk only on a resume.
- Resume: completed ranges are fsynced, then recorded in `<key>.ranges` (atomic JSON) by the hashing
  thread (no connection waits on a flush): a kill -9 costs the ranges in flight and unrecorded ones.
- Retries: a failed range is retried alone, in the one retry layer (`with_transient_retries`).
- Fallback: a first answer of 200 (Range ignored) is taken as the whole file, hashed as written; a resumed
  partial, or a server that then flips to ranges, goes to the caller's `resumable_get` (None), as unknown
  sizes do. If every worker stops with a range missing, the download fails.
- Bounds: a range whose body runs past its length, or a Content-Range naming another total, fails
  permanently; the digest check and the temp-then-rename are the blob store's rules, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import httpx

from airlift.util.errors import IntegrityError, TransientError, WorkError
from airlift.util.fs import fsync_dir, write_all, write_bytes_atomic
from airlift.util.hashing import git_blob_hasher
from airlift.util.http import OpenStream, StatusCheck, opened, raise_for_status
from airlift.util.locks import FileLock
from airlift.util.net import ATTEMPTS, host_slot, max_per_host, with_transient_retries
from airlift.util.phase import progress, under_way

RANGE_SIZE = 4 << 20  # small enough that a range lost to a kill costs little, big enough to amortise a request
RANGED_MIN = 2 * RANGE_SIZE
WINDOW_PER_CONNECTION = 2
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class Store(Protocol):
    """What `download` needs of the blob store (airlift.bundle.store.BlobStore)."""

    tmp_dir: Path

    def ensure_dirs(self) -> None: ...
    def blob_path(self, sha256: str) -> Path: ...


class Fetched(NamedTuple):
    sha256: str
    size: int
    git_sha1: str | None


class _NoRanges(Exception):
    """The server answered a range request with the whole body: fall back to one stream."""


def worth_ranges(size: int | None) -> bool:
    return size is not None and size >= RANGED_MIN


def download(
    store: Store, key: str, open_stream: OpenStream, *, url: str, size: int | None, label: str, etag: str | None = None,
    expected_sha256: str | None = None, expected_git_sha1: str | None = None, on_bytes: Callable[[int], None] | None = None,
    check: StatusCheck = raise_for_status, attempts: int = ATTEMPTS,
) -> Fetched | None:
    """Fetch a large file over parallel ranges into the store; None when one stream must do instead.

    Args:
        store: The blob store (its temp area holds the partial, its blobs the result).
        key: Names the partial (as `BlobStore.partial` keys do); stable across runs, so a rerun resumes.
        open_stream: Given request headers, opens a streaming GET (thread-safe: ranges run in parallel).
        url, size: For the per-host cap only (never logged); the announced size (below RANGED_MIN or unknown: None at once).
        label, etag: Names the file in errors and phase logs; a strong ETag guards each range with If-Range.
        expected_sha256, expected_git_sha1: The pin, and the git blob id (non-LFS hub files); a mismatch discards the partial.
        on_bytes, check, attempts: Progress of the whole file (a failed range's bytes taken back); the status check (as for `resumable_get`); attempts per range.

    Returns:
        The stored blob's digest and size, or None: too small, unknown size, or the server ignores Range.
    """
    if size is None or not worth_ranges(size):
        return None
    store.ensure_dirs()
    base = store.tmp_dir / f"{key}-r"
    with FileLock(Path(f"{base}.lock")), under_way("download", label):
        job = _Job(base, size, etag, open_stream, url=url, label=label, check=check, attempts=attempts, on_bytes=on_bytes,
                   git_blob_size=size if expected_git_sha1 else None)
        try:
            job.run()
        except _NoRanges:
            job.discard()
            return None
        return job.commit(store, expected_sha256=expected_sha256, expected_git_sha1=expected_git_sha1)


@dataclass
class _Job:
    base: Path
    size: int
    etag: str | None
    open_stream: OpenStream
    url: str
    label: str
    check: StatusCheck
    attempts: int
    on_bytes: Callable[[int], None] | None
    git_blob_size: int | None
    done: set[int] = field(default_factory=set)
    _ready: dict[int, bytearray | None] = field(default_factory=dict)  # completed, not yet hashed (None: on disk)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _failure: BaseException | None = None
    _hashed: int = 0  # ranges in the digest so far
    _probe: threading.Event = field(default_factory=threading.Event)
    _single: bool = False  # the server ignores Range: the first answer is the whole file
    _unrecorded: list[int] = field(default_factory=list)  # written, not yet fsynced and in the record
    _free: list[bytearray] = field(default_factory=list)  # buffers whose range is hashed, for the next ones
    _allocated: int = 0
    _capacity: int = 1
    _live: int = 0  # range workers still running
    _untaken: int = 0  # ranges no worker has taken yet

    def __post_init__(self) -> None:
        self.part, self.state = Path(f"{self.base}.part"), Path(f"{self.base}.ranges")
        self.count = -(-self.size // RANGE_SIZE)
        self.sha256 = hashlib.sha256()
        self.git_sha1 = git_blob_hasher(self.git_blob_size) if self.git_blob_size is not None else None
        self.done = self._load()
        self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o600)

    def _identity(self) -> dict[str, object]:
        return {"size": self.size, "range_size": RANGE_SIZE, "etag": self.etag}

    def _load(self) -> set[int]:
        """The ranges a killed run completed, if its record matches this file and the partial is there."""
        try:
            record = json.loads(self.state.read_text()) if self.part.exists() else {}
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict) or any(record.get(k) != v for k, v in self._identity().items()):
            self.part.unlink(missing_ok=True)
            return set()
        done = record.get("done")
        return {i for i in done if type(i) is int and 0 <= i < self.count} if isinstance(done, list) else set()

    def discard(self) -> None:
        os.close(self.fd)
        self.part.unlink(missing_ok=True)
        self.state.unlink(missing_ok=True)

    def span(self, index: int) -> tuple[int, int]:
        start = index * RANGE_SIZE
        return start, min(self.size, start + RANGE_SIZE)

    def run(self) -> None:
        try:
            os.ftruncate(self.fd, self.size)
        except OSError as exc:  # EFBIG, ENOSPC: a size this filesystem cannot hold
            raise WorkError(f"{self.label}: cannot make room for {self.size} bytes ({exc.strerror})") from None
        for index in self.done:
            self._ready[index] = None
        # Lazy: a hostile size must not become a list of millions of indices before the first request.
        self._todo = (i for i in range(self.count) if i not in self.done)
        self._untaken = self.count - len(self.done)
        connections = min(max_per_host(), self.count - len(self.done))
        self._live = connections
        # The window: a range needs a buffer, and a buffer comes back only once its range is hashed.
        self._capacity = max(1, WINDOW_PER_CONNECTION * connections)
        workers = [threading.Thread(target=self._worker, args=(n == 0,), daemon=True) for n in range(connections)]
        if not connections:
            self._probe.set()
        for worker in workers:
            worker.start()
        try:
            self._hash_in_order()
        finally:
            with self._cond:
                if self._failure is None and self._hashed < self.count:
                    self._failure = WorkError(f"{self.label}: interrupted")
                self._cond.notify_all()
            self._probe.set()
            for worker in workers:
                worker.join()
            self._record(self._unrecorded)  # what finished before a failure is kept for the next run

    def _record(self, indices: list[int]) -> None:
        """Make completed ranges durable, then say so in the record (never the other way round)."""
        if not indices:
            return
        os.fdatasync(self.fd)
        with self._cond:
            self.done.update(indices)
            done = sorted(self.done)
            if indices is self._unrecorded:
                self._unrecorded = []
        write_bytes_atomic(self.state, json.dumps({**self._identity(), "done": done}).encode(), mode=0o600)

    def _hash_in_order(self) -> None:
        # This thread hashes the prefix and keeps the record, so no connection waits on a disk flush.
        while True:
            with self._cond:
                while not (self._hashed >= self.count or self._hashed in self._ready or self._unrecorded or self._failure or not self._live):
                    self._cond.wait()
                if self._failure is not None:
                    raise self._failure
                record, self._unrecorded = self._unrecorded, []
                ready = self._hashed < self.count and self._hashed in self._ready
                data = self._ready.pop(self._hashed) if ready else None
                if not ready and not record and not self._live and self._hashed < self.count:
                    # Every worker has stopped and this range will never come: fail, never wait forever.
                    raise WorkError(f"{self.label}: stopped with range {self._hashed} of {self.count} not fetched")
            self._record(record)
            if ready:
                start, end = self.span(self._hashed)
                # None: completed by an earlier run, the only read-back (and only on a resume).
                piece = memoryview(data)[: end - start] if data is not None else os.pread(self.fd, end - start, start)
                self.sha256.update(piece)
                if self.git_sha1 is not None:
                    self.git_sha1.update(piece)
                with self._cond:
                    self._hashed += 1
                    if data is not None:
                        self._free.append(data)
                    self._cond.notify_all()
            if self._hashed >= self.count:
                return

    def _next(self) -> tuple[int, bytearray] | None:
        """A buffer (waiting for one), then the lowest untaken range; None when none is left. In that order: a
        range taken first could wait for a buffer while every buffer held a later, unhashable range (a hang)."""
        with self._cond:
            while self._untaken and not self._free and self._allocated >= self._capacity and self._failure is None and not self._single:
                self._cond.wait()
            if not self._untaken or self._failure is not None or self._single:
                return None  # with no range left at once: this worker holds a host slot another file could use
            index = next(self._todo)
            self._untaken -= 1
            if self._free:
                return index, self._free.pop()
            self._allocated += 1
        return index, bytearray(RANGE_SIZE)

    def _worker(self, probe: bool) -> None:
        try:
            if not probe:
                self._probe.wait()  # the first request tells whether the server honours Range at all
            while True:
                # The host slot first, then a buffer: a thread waiting for a slot holds no 4 MiB buffer
                # (with several large files or layers at once, waiting threads held 62 of them).
                with host_slot(self.url):
                    if (job := self._next()) is None:
                        break
                    index, buffer = job
                    got = with_transient_retries(
                        f"{self.label} range {index}", attempts=self.attempts, action=lambda i=index, p=probe, b=buffer: self._fetch(i, p, b),
                    )
                probe = False
                if got is None:
                    return  # the whole file came over one stream
                start, end = self.span(index)
                write_all(self.fd, memoryview(buffer)[: end - start], start)
                with self._cond:
                    self._unrecorded.append(index)
                    self._ready[index] = buffer
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the hashing thread, which raises it
            with self._cond:
                if self._failure is None:
                    self._failure = exc
                self._cond.notify_all()
        finally:
            if probe:
                self._probe.set()
            with self._cond:
                self._live -= 1
                self._cond.notify_all()

    def _fetch(self, index: int, probe: bool, buffer: bytearray) -> int | None:
        """Fill `buffer` with range `index`; its length, or None when the first answer was the whole file."""
        start, end = self.span(index)
        view = memoryview(buffer)
        headers = {"Range": f"bytes={start}-{end - 1}"}
        if self.etag and not self.etag.startswith("W/"):
            headers["If-Range"] = self.etag
        got = 0
        try:
            with under_way("range", f"{self.label}#{index}"), opened(self.open_stream, headers, self.label) as response:
                self.check(response, self.label)
                if self._single and response.status_code != 200:
                    # It sent the whole file before (that stream failed) and a range now: a server that
                    # flips between the two gets one stream from the start, in the caller's resumable_get.
                    raise _NoRanges
                if response.status_code == 200 and (probe or self._single):
                    return self._whole(response)
                self._check_range(response, start, end)
                if probe:
                    self._probe.set()
                for chunk in response.iter_bytes():
                    if got + len(chunk) > end - start:
                        raise WorkError(f"{self.label}: range {start}-{end - 1} runs past its {end - start} bytes; stopped reading")
                    view[got : got + len(chunk)] = chunk
                    got += len(chunk)
                    if self.on_bytes is not None:
                        self.on_bytes(len(chunk))
                    progress(done=got, total=end - start)
                    if self._failure is not None:
                        raise WorkError(f"{self.label}: stopped (another range failed)")
        except (httpx.TransportError, httpx.StreamError) as exc:
            self._take_back(got)
            raise TransientError(f"{self.label}: range {start}-{end - 1} dropped after {got} bytes ({type(exc).__name__})") from exc
        except BaseException:
            self._take_back(got)
            raise
        self._require(got, end - start, f"range {start}-{end - 1}")
        return got

    def _whole(self, response: httpx.Response) -> None:
        """The server ignores Range: this body is the whole file, so take it as one stream, hashed as written."""
        if self.done:
            raise _NoRanges  # a resumed partial cannot be finished by a server that sends no ranges
        with self._cond:
            self._single = True
            self._cond.notify_all()
        self._probe.set()
        self.sha256 = hashlib.sha256()  # a retry starts the file again
        self.git_sha1 = git_blob_hasher(self.git_blob_size) if self.git_blob_size is not None else None
        offset = 0
        try:
            for chunk in response.iter_bytes():
                if offset + len(chunk) > self.size:
                    raise WorkError(f"{self.label}: the body runs past the {self.size} bytes announced; stopped reading")
                write_all(self.fd, chunk, offset)
                self.sha256.update(chunk)
                if self.git_sha1 is not None:
                    self.git_sha1.update(chunk)
                offset += len(chunk)
                if self.on_bytes is not None:
                    self.on_bytes(len(chunk))
                progress(done=offset, total=self.size)
        except (httpx.TransportError, httpx.StreamError) as exc:
            self._take_back(offset)
            raise TransientError(f"{self.label}: connection dropped after {offset} bytes ({type(exc).__name__})") from exc
        except BaseException:
            self._take_back(offset)
            raise
        self._require(offset, self.size, "body")
        with self._cond:
            self._hashed = self.count
            self._cond.notify_all()
        return None

    def _require(self, got: int, expected: int, what: str) -> None:
        if got != expected:  # a short body: transient (the one retry layer fetches it again)
            self._take_back(got)
            raise TransientError(f"{self.label}: {what} ended at {got} of {expected} bytes")

    def _take_back(self, count: int) -> None:
        if count and self.on_bytes is not None:
            self.on_bytes(-count)  # these bytes will come again: the bar counts the file once

    def _check_range(self, response: httpx.Response, start: int, end: int) -> None:
        if response.status_code != 206:
            raise WorkError(f"{self.label}: HTTP {response.status_code} to a range request (the file changed upstream?)")
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if not match or (int(match[1]), int(match[2])) != (start, end - 1):
            raise WorkError(f"{self.label}: the server answered range {start}-{end - 1} with {response.headers.get('content-range')!r}")
        if int(match[3]) != self.size:
            raise WorkError(f"{self.label}: the server says the file has {match[3]} bytes, not the {self.size} announced")

    def commit(self, store: Store, *, expected_sha256: str | None, expected_git_sha1: str | None) -> Fetched:
        """Check the digests and move the partial to its blob name (the store's rules: 0444, rename, fsync)."""
        os.fsync(self.fd)
        os.close(self.fd)
        digest = self.sha256.hexdigest()
        git_sha1 = self.git_sha1.hexdigest() if self.git_sha1 is not None else None
        for name, got, wanted in (("sha256", digest, expected_sha256), ("git blob id", git_sha1, expected_git_sha1)):
            if wanted and got != wanted:
                self.part.unlink(missing_ok=True)
                self.state.unlink(missing_ok=True)
                raise IntegrityError(f"{self.label}: {name} {got} does not match expected {wanted}")
        final = store.blob_path(digest)
        if final.exists():
            self.part.unlink()
        else:
            os.chmod(self.part, 0o444)
            os.replace(self.part, final)
            fsync_dir(final.parent)
        self.state.unlink(missing_ok=True)
        return Fetched(digest, self.size, git_sha1)

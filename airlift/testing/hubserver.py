"""A Hugging Face Hub-protocol stand-in for tests and the demo, plus plain HTTP files.

It serves generated model and dataset repos the way the hub does (`/api/{models,datasets}/...`
metadata with LFS sha256 and git blob ids, `/resolve/` downloads with X-Repo-Commit, ETag,
X-Linked-Etag and Range), counts the content bytes it sends and the connections it accepts (and
the most content streams at once), and injects faults on demand: 503s, bodies cut short, a byte-rate
cap per connection (as CDNs and proxies cap one connection; it also lets a test kill a client
mid-file), and a server that ignores Range. Digests are computed once per file and cached: with
10,000 files, hashing every file on every listing and request made the stand-in the bottleneck.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlparse

from airlift.testing.serving import BackgroundServer
from airlift.util.hashing import git_blob_id

LFS_SUFFIXES = (".safetensors", ".bin", ".parquet", ".gguf", ".pt", ".arrow")


@dataclass
class HubFile:
    data: bytes
    lfs: bool

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @functools.cached_property
    def blob_id(self) -> str:
        return git_blob_id(self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class HubRepo:
    repo_type: str  # "model" | "dataset"
    repo_id: str
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)

    def commit_for(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


@dataclass
class Faults:
    rate: float = 0.0  # probability that a content GET fails
    seed: int = 0
    bytes_per_second: float | None = None  # the cap on each connection's content bytes per second
    ignore_range: bool = False  # answer every GET with the whole body (200), as a server without Range does
    rng: random.Random = field(default_factory=random.Random)


class HubServer(BackgroundServer):
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.files: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.file_etags: dict[str, str] = {}
        self.content_bytes = 0
        self.content_requests = 0
        self.faults_injected = 0
        self.connections = 0  # TCP connections accepted
        self.streams = 0  # content bodies being sent right now
        self.peak_streams = 0  # the most at once since the last reset
        self.faults = Faults()
        self._lock = threading.Lock()

    # -- content ---------------------------------------------------------------------------------
    def add_repo(self, repo_type: str, repo_id: str, *, files: dict[str, bytes], branch: str = "main", tags: tuple[str, ...] = (), lfs: set[str] | None = None) -> str:
        repo = self.repos.setdefault((repo_type, repo_id), HubRepo(repo_type, repo_id))
        entries = {
            path: HubFile(data, (path in lfs) if lfs is not None else path.endswith(LFS_SUFFIXES))
            for path, data in files.items()
        }
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{repo_type}/{repo_id}/{len(repo.commits)}".encode())
        for path in sorted(entries):
            digest.update(f"{path}\0{entries[path].sha256}\0".encode())
        commit = digest.hexdigest()
        repo.commits[commit] = entries
        repo.refs[branch] = commit
        for tag in tags:
            repo.refs[tag] = commit
        return commit

    def add_file(self, name: str, data: bytes) -> str:
        self.files[name] = data
        # Hashed once here: hashing 128 MiB per request (each range is one) cost ~0.4 s a range.
        self.file_etags[name] = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
        return f"{self.url}/files/{name}"

    def add_blob(self, data: bytes) -> str:
        """Serve `data` as a registry blob, `GET /v2/<any repository>/blobs/sha256:<hex>` (ranges, caps and
        faults as for files); returns its digest. Only the blob route of the distribution API."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        self.files[f"blob:{digest}"] = data
        return digest

    def add_manifest(self, repository: str, tag: str, raw: bytes, media_type: str) -> str:
        """Serve an image manifest at `/v2/<repository>/manifests/<tag or digest>`; returns its digest."""
        digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
        for reference in (tag, digest):
            self.manifests[(repository, reference)] = (raw, media_type)
        return digest

    def set_faults(self, *, rate: float = 0.0, seed: int = 0, bytes_per_second: float | None = None, ignore_range: bool = False) -> None:
        self.faults = Faults(rate, seed, bytes_per_second, ignore_range, random.Random(seed))

    def reset_counters(self) -> None:
        with self._lock:
            self.content_bytes = 0
            self.content_requests = 0
            self.faults_injected = 0
            self.connections = 0
            self.peak_streams = self.streams

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._serve(Handler, host, port)
        return self

    @property
    def url(self) -> str:
        host, port = self.bound
        return f"http://{host}:{port}"


_API_RE = re.compile(r"^/api/(?P<kind>models|datasets)/(?P<repo>[^/]+/[^/]+)(?:/(?P<what>revision|tree)/(?P<rev>[^/]+))?$")
_MANIFEST_RE = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB_RE = re.compile(r"^/v2/.+/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_RESOLVE_RE = re.compile(r"^/(?:(?P<kind>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, every keep-alive response then
    # waited ~40 ms for the client's delayed ACK (46 ms a small file for curl, requests and httpx
    # alike), which no real hub or CDN does.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet test output
        pass

    def setup(self) -> None:
        super().setup()
        with self.server_hub._lock:
            self.server_hub.connections += 1

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, *, head: bool) -> None:
        path = urlparse(self.path).path
        if match := _API_RE.match(path):
            return self._api(match, head)
        if match := _RESOLVE_RE.match(path):
            return self._resolve(match, head)
        if match := _MANIFEST_RE.match(path):
            found = self.server_hub.manifests.get((match["repo"], match["ref"]))
            if found is None:
                return self._error(404, "manifest unknown")
            raw, media_type = found
            digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
            return self._content(raw, etag=f'"{digest}"', head=head, extra={"Docker-Content-Digest": digest, "Content-Type": media_type})
        if match := _BLOB_RE.match(path):
            data = self.server_hub.files.get(f"blob:{match['digest']}")
            if data is None:
                return self._error(404, "blob unknown")
            return self._content(data, etag=f'"{match["digest"]}"', head=head, extra={"Docker-Content-Digest": match["digest"]})
        if path.startswith("/files/"):
            name = unquote(path[len("/files/"):])
            data = self.server_hub.files.get(name)
            if data is None:
                return self._error(404, "file not found")
            etag = self.server_hub.file_etags.get(name) or f'"{hashlib.sha256(data).hexdigest()[:32]}"'  # tests may set files directly
            return self._content(data, etag=etag, head=head, extra={})
        return self._error(404, "not found")

    def _error(self, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Message", message)
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has no body: one would corrupt the next keep-alive response
            self.wfile.write(body)

    def _repo(self, kind: str | None, repo_id: str) -> HubRepo | None:
        repo_type = "dataset" if kind == "datasets" else "model"
        return self.server_hub.repos.get((repo_type, unquote(repo_id)))

    def _api(self, match: re.Match, head: bool) -> None:
        repo = self._repo(match["kind"], match["repo"])
        if repo is None:
            self.send_response(401)  # the hub answers 401 for missing repos, not 404
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        commit = repo.commit_for(unquote(match["rev"] or "main"))
        if commit is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "RevisionNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if match["what"] == "tree":  # huggingface_hub's snapshot_download lists the tree (one page, recursive)
            return self._json(head, [
                {"type": "file", "oid": item.blob_id, "size": len(item.data), "path": path,
                 **({"lfs": {"oid": item.sha256, "size": len(item.data), "pointerSize": 134}} if item.lfs else {})}
                for path, item in sorted(repo.commits[commit].items())
            ])
        siblings = []
        for path, item in sorted(repo.commits[commit].items()):
            sibling = {"rfilename": path, "size": len(item.data), "blobId": item.blob_id}
            if item.lfs:
                sibling["lfs"] = {"sha256": item.sha256, "size": len(item.data), "pointerSize": 134}
            siblings.append(sibling)
        self._json(head, {"id": repo.repo_id, "_id": repo.repo_id, "sha": commit, "private": False, "siblings": siblings})

    def _json(self, head: bool, value: object) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _resolve(self, match: re.Match, head: bool) -> None:
        repo = self._repo(match["kind"], match["repo"])
        if repo is None:
            return self._error(401, "repository not found")
        commit = repo.commit_for(unquote(match["rev"]))
        item = repo.commits.get(commit or "", {}).get(unquote(match["path"]))
        if item is None:
            return self._error(404, "entry not found")
        extra = {"X-Repo-Commit": commit}
        if item.lfs:
            extra["X-Linked-Etag"] = f'"{item.sha256}"'
            extra["X-Linked-Size"] = str(len(item.data))
        self._content(item.data, etag=f'"{item.etag}"', head=head, extra=extra)

    def _content(self, data: bytes, *, etag: str, head: bool, extra: dict[str, str]) -> None:
        hub = self.server_hub
        start, end = 0, len(data)
        status = 200
        range_header = self.headers.get("Range")
        if range_header and not hub.faults.ignore_range and (m := re.match(r"bytes=(\d+)-(\d*)$", range_header.strip())):
            if_range = self.headers.get("If-Range")
            if if_range is None or if_range == etag:
                start = int(m[1])
                end = min(int(m[2]) + 1, len(data)) if m[2] else len(data)
                if start >= len(data) or start >= end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        fault = None
        if not head:
            with hub._lock:
                hub.content_requests += 1
                if hub.faults.rate and hub.faults.rng.random() < hub.faults.rate:
                    fault = hub.faults.rng.choice(["503", "cut"])
                    hub.faults_injected += 1
        if fault == "503":
            return self._error(503, "injected fault")
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        if not hub.faults.ignore_range:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Content-Type", extra.pop("Content-Type", "application/octet-stream"))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        view = memoryview(data)[start:end]
        if fault == "cut":
            view = view[: len(view) // 2]
        with hub._lock:
            hub.streams += 1
            hub.peak_streams = max(hub.peak_streams, hub.streams)
        self._send_body(view)
        if fault == "cut":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _send_body(self, view: memoryview) -> None:
        """Send the body, paced per connection; the stream stops counting as open before its last write,
        so a client that has the whole body (and moves on to its next request) was never counted twice."""
        hub = self.server_hub
        rate = hub.faults.bytes_per_second
        step = 64 * 1024
        open_stream = True
        started = time.monotonic()
        sent = 0
        try:
            while sent < len(view):
                size = step
                if rate:
                    # Paced against the clock: each wake-up sends what is due by now (a late wake-up on a
                    # busy machine is made up), so the connection averages its cap, never more.
                    due = int((time.monotonic() - started) * rate) + step - sent
                    if due <= 0:
                        time.sleep(-due / rate)
                        continue
                    size = min(due, 1 << 20)
                chunk = view[sent : sent + size]
                if sent + len(chunk) >= len(view):
                    with hub._lock:
                        hub.streams -= 1
                    open_stream = False
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += len(chunk)
                with hub._lock:
                    hub.content_bytes += len(chunk)
        finally:
            if open_stream:
                with hub._lock:
                    hub.streams -= 1


def main() -> None:  # pragma: no cover - used by the demo and by hand
    import argparse

    parser = argparse.ArgumentParser(description="Serve generated hub repos for airlift demos")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = HubServer().start(port=args.port)
    print(server.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()

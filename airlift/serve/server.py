"""`airlift serve`: read-only mirrors inside the air gap, on the ASGI stack Prefect already installs.

- a Hugging Face Hub-compatible API (`HF_ENDPOINT=http://host:port`): repo info, tree, resolve;
- a PEP 503 simple index at /simple/ over the bundled wheels;
- files at /files/<artifact id>/<path>;
- git over dumb HTTP at /git/<name>.git.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from html import escape
from pathlib import Path
from urllib.parse import quote

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from airlift.bundle.manifest import Artifact, FileEntry
from airlift.serve.catalog import Catalog, normalize_project
from airlift.util.confine import EscapeError
from airlift.util.errors import InputError
from airlift.util.fs import CHUNK
from airlift.util.hashing import git_blob_id

MAX_RANGE_DIGITS = 19  # 2**63 has 19 digits: no file is larger
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"


def _is_lfs(entry: FileEntry) -> bool:
    # The hub names LFS files by their sha256 (64 hex) and plain ones by their git blob id (40 hex).
    return entry.etag is not None and len(entry.etag) == 64


def _oid(entry: FileEntry) -> str:
    if _is_lfs(entry):
        return git_blob_id(LFS_POINTER.format(sha=entry.sha256, size=entry.size).encode())
    return entry.etag or entry.sha256[:40]


class OpenFileResponse(Response):
    """Stream an already-opened regular file (see Catalog.open_entry): what was checked is what is sent.

    Supports HEAD and a single `Range: bytes=a-b` (huggingface_hub resumes with it).
    """

    def __init__(self, fd: int, *, headers: dict[str, str], range_header: str | None) -> None:
        self.fd = fd
        size = os.fstat(fd).st_size
        self.start, self.end = 0, size - 1
        status = 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header or "")
        if match and (len(match[1]) > MAX_RANGE_DIGITS or len(match[2]) > MAX_RANGE_DIGITS):
            # More digits than any file size has (int() of 5000 digits raises): not satisfiable, 416.
            match, self.start, self.end, status = None, 0, -1, 416
            headers = {**headers, "Content-Range": f"bytes */{size}"}
        if match and (match[1] or match[2]):
            if match[1]:
                self.start, self.end = int(match[1]), min(int(match[2]), size - 1) if match[2] else size - 1
            else:
                self.start = max(0, size - int(match[2]))
            if self.start > self.end:
                self.start, self.end, status = 0, -1, 416
                headers = {**headers, "Content-Range": f"bytes */{size}"}
            else:
                status = 206
                headers = {**headers, "Content-Range": f"bytes {self.start}-{self.end}/{size}"}
        super().__init__(status_code=status, headers={**headers, "Accept-Ranges": "bytes"}, media_type="application/octet-stream")
        self.headers["content-length"] = str(max(0, self.end - self.start + 1))

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            offset = self.start
            if scope.get("method") != "HEAD":
                while offset <= self.end:
                    chunk = await anyio.to_thread.run_sync(os.pread, self.fd, min(CHUNK, self.end - offset + 1), offset)
                    if not chunk:
                        break
                    offset += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(self.fd)


def _not_found(message: str, code: str = "EntryNotFound") -> Response:
    return JSONResponse({"error": message}, status_code=404, headers={"X-Error-Code": code, "X-Error-Message": message})


def build_app(catalog: Catalog) -> Starlette:
    """The Starlette app: HF Hub API, PEP 503 index, files and dumb-HTTP git over `catalog`."""
    def repo_for(request: Request) -> tuple[Artifact | None, str | None]:
        kind = request.path_params.get("kind", "models")
        repo_id = f"{request.path_params['org']}/{request.path_params['name']}"
        artifact = catalog.hf_repo(kind, repo_id)
        if artifact is None:
            return None, None
        revision = request.path_params.get("rev")
        commit = artifact.source.commit
        if revision in (None, commit, artifact.source.revision):
            return artifact, commit
        return artifact, None

    async def repo_info(request: Request) -> Response:
        artifact, commit = repo_for(request)
        if artifact is None:
            return JSONResponse({"error": "Repository not found"}, status_code=401, headers={"X-Error-Code": "RepoNotFound"})
        if commit is None:
            return JSONResponse({"error": "Invalid rev id"}, status_code=404, headers={"X-Error-Code": "RevisionNotFound"})
        siblings = []
        for entry in artifact.files:
            sibling = {"rfilename": entry.path, "size": entry.size, "blobId": _oid(entry)}
            if _is_lfs(entry):
                sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": len(LFS_POINTER.format(sha=entry.sha256, size=entry.size))}
            siblings.append(sibling)
        repo_id = artifact.source.repo
        return JSONResponse({"id": repo_id, "_id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "gated": False, "siblings": siblings})

    async def tree(request: Request) -> Response:
        artifact, commit = repo_for(request)
        if artifact is None or commit is None:
            return _not_found("Repository or revision not found", "RevisionNotFound")
        prefix = request.path_params.get("path", "").strip("/")
        recursive = request.query_params.get("recursive", "false").lower() in ("1", "true")
        items: dict[str, dict] = {}
        for entry in sorted(artifact.files, key=lambda f: f.path):
            if prefix and not entry.path.startswith(prefix + "/"):
                continue
            relative = entry.path[len(prefix) + 1:] if prefix else entry.path
            parts = relative.split("/")
            base = f"{prefix}/" if prefix else ""
            for depth in range(1, len(parts)):
                directory = base + "/".join(parts[:depth])
                if recursive or depth == 1:
                    items.setdefault(directory, {"type": "directory", "oid": hashlib.sha1(directory.encode(), usedforsecurity=False).hexdigest(), "size": 0, "path": directory})
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                item = {"type": "file", "oid": _oid(entry), "size": entry.size, "path": entry.path}
                if _is_lfs(entry):
                    item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(LFS_POINTER.format(sha=entry.sha256, size=entry.size))}
                items[entry.path] = item
        return JSONResponse(sorted(items.values(), key=lambda i: i["path"]))

    async def resolve(request: Request) -> Response:
        artifact, commit = repo_for(request)
        if artifact is None:
            return JSONResponse({"error": "Repository not found"}, status_code=401, headers={"X-Error-Code": "RepoNotFound"})
        if commit is None:
            return _not_found("Invalid rev id", "RevisionNotFound")
        path = request.path_params["path"]
        entry = next((f for f in artifact.files if f.path == path), None)
        if entry is None:
            return _not_found(f"{path} not found")
        headers = {"X-Repo-Commit": commit, "ETag": f'"{_oid(entry)}"', "Accept-Ranges": "bytes"}
        if _is_lfs(entry):
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        return _open(artifact, entry, headers, request)

    async def simple_index(request: Request) -> Response:
        links = "".join(f'<a href="/simple/{quote(p)}/">{escape(p)}</a>\n' for p in sorted(catalog.wheels()))
        return HTMLResponse(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")

    async def simple_project(request: Request) -> Response:
        project = request.path_params["project"]
        files = catalog.wheels().get(normalize_project(project))
        if not files:
            return _not_found(f"no project {project}")
        if project != normalize_project(project):
            return Response(status_code=301, headers={"Location": f"/simple/{quote(normalize_project(project))}/"})
        links = "".join(
            f'<a href="/simple/{quote(normalize_project(project))}/{quote(name)}#sha256={entry.sha256}">{escape(name)}</a>\n'
            for name, (_, entry) in sorted(files.items())
        )
        return HTMLResponse(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")

    def _open(artifact: Artifact, entry: FileEntry, headers: dict[str, str], request: Request) -> Response:
        try:
            fd = catalog.open_entry(artifact, entry)
        except (FileNotFoundError, EscapeError):
            # A symlink, a special file or a blob of the wrong size is never served.
            return _not_found(f"{entry.path} is not available")
        return OpenFileResponse(fd, headers=headers, range_header=request.headers.get("range"))

    def blob_response(found: tuple[Artifact, FileEntry] | None, request: Request) -> Response:
        if found is None:
            return _not_found("no such file")
        artifact, entry = found
        return _open(artifact, entry, {"ETag": f'"{entry.sha256}"'}, request)

    async def simple_file(request: Request) -> Response:
        files = catalog.wheels().get(normalize_project(request.path_params["project"]), {})
        return blob_response(files.get(request.path_params["filename"]), request)

    async def files(request: Request) -> Response:
        return blob_response(catalog.file_at(request.path_params["path"]), request)

    async def git_dumb(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in catalog.git_dirs:
            return _not_found("no such repository")
        try:
            fd = catalog.open_git(name, request.path_params["path"])
        except (OSError, EscapeError, InputError):
            return PlainTextResponse("not found", status_code=404)
        return OpenFileResponse(fd, headers={}, range_header=request.headers.get("range"))

    async def health(request: Request) -> Response:
        return JSONResponse({"artifacts": len(catalog.artifacts), "source": str(catalog.root), "from_bundle": catalog.from_bundle})

    methods = ["GET", "HEAD"]
    routes = [
        Route("/healthz", health, methods=methods),
        Route("/api/{kind:str}/{org}/{name}", repo_info, methods=methods),
        Route("/api/{kind:str}/{org}/{name}/revision/{rev}", repo_info, methods=methods),
        Route("/api/{kind:str}/{org}/{name}/tree/{rev}", tree, methods=methods),
        Route("/api/{kind:str}/{org}/{name}/tree/{rev}/{path:path}", tree, methods=methods),
        Route("/datasets/{org}/{name}/resolve/{rev}/{path:path}", _with_kind(resolve, "datasets"), methods=methods),
        Route("/{org}/{name}/resolve/{rev}/{path:path}", _with_kind(resolve, "models"), methods=methods),
        Route("/simple/", simple_index, methods=methods),
        Route("/simple/{project}/", simple_project, methods=methods),
        Route("/simple/{project}/{filename}", simple_file, methods=methods),
        Route("/files/{path:path}", files, methods=methods),
        Route("/git/{name}.git/{path:path}", git_dumb, methods=methods),
    ]
    return Starlette(routes=routes)


def _with_kind(handler, kind: str):
    async def wrapped(request: Request) -> Response:
        request.path_params["kind"] = kind
        return await handler(request)

    return wrapped


class _HeaderDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for the first request's headers.

    uvicorn starts no timer before a request arrives, so a client that opens a connection and sends
    half a request line would hold it forever; here it is dropped after `HEADER_TIMEOUT` seconds.
    """

    header_timeout = 10.0

    def connection_made(self, transport) -> None:  # noqa: ANN001 - asyncio.Transport
        super().connection_made(transport)
        self.loop.call_later(self.header_timeout, self._drop_if_no_request)

    def _drop_if_no_request(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()


def serve(
    path: Path, *, host: str, port: int, trusted_keys: Sequence[Path] = (), max_connections: int = 128, header_timeout: float = 10.0,
) -> None:
    """Serve a bundle or an ingested shared_root read-only until interrupted.

    Args:
        path: A bundle or an ingested shared_root.
        host: Interface to listen on.
        port: TCP port.
        trusted_keys: Public keys; a bundle not signed by one of them is refused.
        max_connections: Connections (and requests) at once; more are answered 503.
        header_timeout: Seconds a new connection may take to send its first request's headers.
    """
    import uvicorn

    catalog = Catalog.open(Path(path), trusted_keys=trusted_keys)
    print(f"airlift serve: {len(catalog.artifacts)} artifacts from {path} on http://{host}:{port}", flush=True)
    if catalog.unavailable:
        print(f"  {len(catalog.unavailable)} blobs are missing or not the size the manifest says: not served", flush=True)
    print(f"  HF_ENDPOINT=http://{host}:{port}   pip --index-url http://{host}:{port}/simple/   git clone http://{host}:{port}/git/<name>.git", flush=True)
    protocol = type("HeaderDeadlineH11", (_HeaderDeadlineH11,), {"header_timeout": header_timeout})
    uvicorn.run(
        build_app(catalog), host=host, port=port, log_level="warning", http=protocol,
        limit_concurrency=max_connections, timeout_keep_alive=5, h11_max_incomplete_event_size=16 * 1024,
    )

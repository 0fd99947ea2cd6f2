"""`airlift serve`: read-only mirrors inside the air gap, on the ASGI stack Prefect already installs.

- a Hugging Face Hub-compatible API (`HF_ENDPOINT=http://host:port`): repo info, tree, resolve;
- a PEP 503 simple index at /simple/ over the bundled wheels;
- files at /files/<artifact id>/<path>;
- git over dumb HTTP at /git/<name>.git.
"""

from __future__ import annotations

import hashlib
from html import escape
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from airlift.bundle.manifest import Artifact, FileEntry
from airlift.serve.catalog import Catalog, normalize_project
from airlift.util.fs import is_within

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _is_lfs(entry: FileEntry) -> bool:
    # The hub names LFS files by their sha256 (64 hex) and plain ones by their git blob id (40 hex).
    return entry.etag is not None and len(entry.etag) == 64


def _oid(entry: FileEntry) -> str:
    if _is_lfs(entry):
        return _git_blob_id(LFS_POINTER.format(sha=entry.sha256, size=entry.size).encode())
    return entry.etag or entry.sha256[:40]


def _not_found(message: str, code: str = "EntryNotFound") -> Response:
    return JSONResponse({"error": message}, status_code=404, headers={"X-Error-Code": code, "X-Error-Message": message})


def build_app(catalog: Catalog) -> Starlette:
    def repo_for(request: Request) -> tuple[Artifact | None, str | None]:
        kind = request.path_params.get("kind", "models")
        repo_id = f"{request.path_params['org']}/{request.path_params['name']}"
        artifact = catalog.hf_repo(kind, repo_id)
        if artifact is None:
            return None, None
        revision = request.path_params.get("rev")
        commit = artifact.source.get("commit")
        if revision in (None, commit, artifact.source.get("revision")) or (revision == "main" and artifact.source.get("revision") == "main"):
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
        repo_id = artifact.source["repo"]
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
        return FileResponse(catalog.locate(artifact, entry), headers=headers, media_type="application/octet-stream")

    async def simple_index(request: Request) -> Response:
        links = "".join(f'<a href="/simple/{p}/">{escape(p)}</a>\n' for p in sorted(catalog.wheels()))
        return HTMLResponse(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")

    async def simple_project(request: Request) -> Response:
        project = request.path_params["project"]
        files = catalog.wheels().get(normalize_project(project))
        if not files:
            return _not_found(f"no project {project}")
        if project != normalize_project(project):
            return Response(status_code=301, headers={"Location": f"/simple/{normalize_project(project)}/"})
        links = "".join(
            f'<a href="/simple/{normalize_project(project)}/{quote(name)}#sha256={entry.sha256}">{escape(name)}</a>\n'
            for name, (_, entry) in sorted(files.items())
        )
        return HTMLResponse(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")

    def blob_response(found: tuple[Artifact, FileEntry] | None) -> Response:
        if found is None:
            return _not_found("no such file")
        artifact, entry = found
        return FileResponse(catalog.locate(artifact, entry), headers={"ETag": f'"{entry.sha256}"'}, media_type="application/octet-stream")

    async def simple_file(request: Request) -> Response:
        files = catalog.wheels().get(normalize_project(request.path_params["project"]), {})
        return blob_response(files.get(request.path_params["filename"]))

    async def files(request: Request) -> Response:
        return blob_response(catalog.file_at(request.path_params["path"]))

    async def git_dumb(request: Request) -> Response:
        repo = catalog.git_dirs.get(request.path_params["name"])
        if repo is None:
            return _not_found("no such repository")
        target = repo / request.path_params["path"]
        if not is_within(repo, target) or not target.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(target, media_type="application/octet-stream")

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


def serve(path: Path, host: str, port: int) -> None:
    import uvicorn

    catalog = Catalog.open(Path(path))
    print(f"airlift serve: {len(catalog.artifacts)} artifacts from {path} on http://{host}:{port}", flush=True)
    print(f"  HF_ENDPOINT=http://{host}:{port}   pip --index-url http://{host}:{port}/simple/   git clone http://{host}:{port}/git/<name>.git", flush=True)
    uvicorn.run(build_app(catalog), host=host, port=port, log_level="warning")

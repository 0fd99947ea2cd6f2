"""Hugging Face models and datasets, through `huggingface_hub`.

Resolution asks the hub for the revision's commit and per-file metadata (size, LFS sha256, git blob
id), through `huggingface_hub`'s public API. Each file is then fetched from its `resolve` URL by
airlift's one resumable GET, straight into a partial file of the blob store, hashed as it is written,
and checked against the hub's LFS sha256 (or git blob id for small files) before it gets its final name.
"""

from __future__ import annotations

import hashlib

from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import build_hf_headers, filter_repo_objects

from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry
from airlift.bundle.store import StoredBlob
from airlift.config.spec import HfRepo
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.util import ranged
from airlift.util.errors import IntegrityError, WorkError, is_transient
from airlift.util.hashing import git_blob_id
from airlift.util.http import SMALL_BODY, PerThreadClients, get_small, raise_for_status, resumable_get
from airlift.util.net import bounded_map, host_slot, with_transient_retries
from airlift.util.phase import progress
from airlift.util.settings import settings


def _token() -> str | bool:
    # HF_TOKEN only (util/settings.py): never the token file of whoever runs the build.
    token = settings().hf_token
    return token.get_secret_value() if token else False


def _api() -> HfApi:
    return HfApi(token=_token(), library_name="airlift")


def resolve(entry: HfRepo, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """Ask the hub for the revision's commit and every file's size, LFS sha256 or git blob id (no content)."""
    repo_type = "model" if artifact_id.startswith("models/") else "dataset"

    def ask():
        api = _api()
        info_fn = api.model_info if repo_type == "model" else api.dataset_info
        try:
            return info_fn(entry.hf, revision=entry.revision, files_metadata=True)
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise WorkError(f"{entry.hf}@{entry.revision} not found on the hub ({_status(exc)})", artifact_id=artifact_id) from None
        except HfHubHTTPError as exc:
            if is_transient(exc):
                raise
            raise WorkError(f"hub refused {entry.hf}@{entry.revision}: HTTP {_status(exc)}", artifact_id=artifact_id) from None

    info = with_transient_retries(artifact_id, attempts=ctx.attempts, action=ask)
    progress()  # answered, not yet recorded: a kill here must cost only this request
    siblings = list(filter_repo_objects(info.siblings or [], allow_patterns=entry.allow, ignore_patterns=entry.ignore, key=lambda s: s.rfilename))
    files = []
    for sibling in sorted(siblings, key=lambda s: s.rfilename):
        lfs = sibling.lfs
        sha256 = lfs.sha256 if lfs else None
        files.append(
            RemoteFile(
                path=sibling.rfilename,
                size=lfs.size if lfs else sibling.size,
                sha256=sha256,
                etag=sha256 or sibling.blob_id,
                git_sha1=None if lfs else sibling.blob_id,
            )
        )
    source = {
        "repo": entry.hf,
        "repo_type": repo_type,
        "revision": entry.revision,
        "commit": info.sha,
        "allow": entry.allow,
        "ignore": entry.ignore,
    }
    return Resolved(artifact_id, f"hf-{repo_type}", {k: v for k, v in source.items() if v is not None}, tuple(files))


def _status(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(getattr(response, "status_code", "error"))


def _hub_status(response, label: str) -> None:  # noqa: ANN001 - httpx.Response
    # "the hub", not the URL: after a redirect the URL is a CDN's, signed query and all.
    raise_for_status(response, label, origin="the hub")


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Download the artifact's files into the cache (threads inside), each checked against the hub's digest."""
    source = resolved.source
    headers = build_hf_headers(token=_token(), library_name="airlift")

    def one(remote: RemoteFile) -> FileEntry:
        http = clients.get()  # this worker's: connections are reused, and no pool lock is shared
        label = f"{resolved.artifact_id}: {remote.path}"
        known = remote.sha256 or ctx.cache.sha256_for_etag(remote.git_sha1, remote.size)
        if known and ctx.cache.store.has(known, remote.size):
            return FileEntry(path=remote.path, size=remote.size or 0, sha256=known, etag=remote.etag)
        url = hf_hub_url(source.repo, remote.path, repo_type=source.repo_type, revision=source.commit)
        partial_key = hashlib.sha256(f"hf\0{url}\0{remote.etag}".encode()).hexdigest()

        def get() -> FileEntry:
            # A large file goes over parallel ranges, each retried alone; None: one stream instead.
            got = ranged.download(
                ctx.cache.store, partial_key, lambda extra: http.stream("GET", url, headers={**headers, **extra}), url=url,
                size=remote.size, label=label, expected_sha256=remote.sha256, expected_git_sha1=remote.git_sha1,
                on_bytes=ctx.progress, check=_hub_status, attempts=ctx.attempts,
            )
            if got is not None:
                blob = StoredBlob(*got)
            elif remote.size is not None and remote.size <= SMALL_BODY:
                blob = small(with_transient_retries(label, attempts=ctx.attempts, action=fetch_small))
            else:
                blob = with_transient_retries(label, attempts=ctx.attempts, action=stream)
            if remote.git_sha1:
                # Small (non-LFS) files have no sha256 upstream: remember what their blob id produced,
                # so a run killed before the artifact finished does not fetch them again.
                ctx.cache.remember_etag(remote.git_sha1, blob.sha256)
            return FileEntry(path=remote.path, size=blob.size, sha256=blob.sha256, etag=remote.etag or blob.sha256)

        def fetch_small() -> bytes:
            with host_slot(url):
                return get_small(lambda extra: http.stream("GET", url, headers={**headers, **extra}), label=label, size=remote.size or 0, check=_hub_status)

        def small(data: bytes) -> StoredBlob:
            # Checked as a partial's commit checks, then stored in one atomic write.
            git_sha1 = git_blob_id(data) if remote.git_sha1 else None
            if remote.git_sha1 and git_sha1 != remote.git_sha1:
                raise IntegrityError(f"{label}: git blob id {git_sha1} does not match expected {remote.git_sha1}")
            stored = ctx.cache.store.put_stream([data], expected_sha256=remote.sha256, label=label, sync_dir=False)
            ctx.progress(len(data))
            return StoredBlob(stored.sha256, stored.size, git_sha1)

        def stream() -> StoredBlob:
            with ctx.cache.store.partial(partial_key, git_blob_size=remote.size if remote.git_sha1 else None) as partial:
                if remote.size is None or partial.offset < remote.size:
                    with host_slot(url):
                        resumable_get(
                            lambda extra: http.stream("GET", url, headers={**headers, **extra}), partial.writer,
                            label=label, expected_size=remote.size, on_bytes=ctx.progress, check=_hub_status,
                        )
                return partial.commit(expected_sha256=remote.sha256, expected_git_sha1=remote.git_sha1, label=label)

        return get()

    with PerThreadClients() as clients:
        entries = bounded_map(one, resolved.files, workers=ctx.max_parallel_files)
    ctx.cache.store.sync_names()  # the small files' names, before the artifact record names them
    return FileArtifact(id=resolved.artifact_id, kind=resolved.kind, source=source, files=entries)

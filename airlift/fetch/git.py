"""`repos:` git repositories, pinned to a commit and carried as a git bundle blob.

The bundle holds the history the ref needs plus the tags in it, so inside the gap a bare
repository at `shared_root/repos/<name>.git` can be cloned with no network.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry
from airlift.config.spec import GitRepo
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.util.errors import WorkError
from airlift.util.net import with_transient_retries
from airlift.util.proc import git
from airlift.util.redact import redact_url

SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
def resolve(entry: GitRepo, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """Resolve the ref to a commit with `git ls-remote` (no content); a 40-hex ref is taken as the commit."""
    if SHA1_RE.match(entry.ref):
        commit, full_ref = entry.ref, None
    else:
        out = with_transient_retries(artifact_id, attempts=ctx.attempts, action=lambda: git("ls-remote", "--", entry.git, entry.ref, f"{entry.ref}^{{}}", what=artifact_id))
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            refs[name] = sha
        candidates = [n for n in refs if n in (entry.ref, f"refs/heads/{entry.ref}", f"refs/tags/{entry.ref}", f"refs/tags/{entry.ref}^{{}}")]
        if not candidates:
            raise WorkError(f"ref {entry.ref!r} not found in {entry.git}", artifact_id=artifact_id)
        peeled = [n for n in candidates if n.endswith("^{}")]
        full_ref = next((n for n in candidates if not n.endswith("^{}")), candidates[0])
        commit = refs[peeled[0]] if peeled else refs[full_ref]
    # The recorded URL has no credentials; the one that has them is used for the fetch only.
    source = {"url": redact_url(entry.git) if "://" in entry.git else entry.git, "ref": entry.ref, "full_ref": full_ref, "commit": commit}
    name = artifact_id.removeprefix("repos/")
    # A git bundle's size is known only once it is made: the plan shows it as unknown.
    return Resolved(artifact_id, "git", {k: v for k, v in source.items() if v is not None}, (RemoteFile(f"{name}.bundle", None),), fetch_url=entry.git)


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Fetch the pinned commit (and the tags in its history) into a git bundle blob in the cache."""
    source = resolved.source
    name = resolved.artifact_id.removeprefix("repos/")
    ctx.cache.store.ensure_dirs()
    work = Path(tempfile.mkdtemp(prefix="git-", dir=ctx.cache.store.tmp_dir))
    try:
        git("init", "-q", "--bare", str(work), what=resolved.artifact_id)
        full_ref = source.full_ref
        refspec = f"+{full_ref}:{full_ref}" if full_ref else source.commit

        def fetch_once() -> None:
            git("fetch", "-q", "--tags", "--", resolved.fetch_url or source.url, refspec, cwd=work, what=resolved.artifact_id)

        with_transient_retries(resolved.artifact_id, attempts=ctx.attempts, action=fetch_once)
        if not full_ref:
            git("update-ref", "refs/airlift/pinned", source.commit, cwd=work, what=resolved.artifact_id)
        got = git("rev-parse", f"{full_ref or 'refs/airlift/pinned'}^{{commit}}", cwd=work, what=resolved.artifact_id).strip()
        if got != source.commit:
            raise WorkError(f"{source.ref} moved to {got} after it was resolved to {source.commit}; build again", artifact_id=resolved.artifact_id)
        # Only the tags whose commits are in the ref's history travel with it.
        tags = git("tag", "--merged", got, cwd=work, what=resolved.artifact_id).split()
        refs = [full_ref or "refs/airlift/pinned", *(f"refs/tags/{t}" for t in tags if f"refs/tags/{t}" != full_ref)]
        bundle = work / f"{name}.bundle"
        git("bundle", "create", "-q", str(bundle), *refs, cwd=work, what=resolved.artifact_id)
        blob = ctx.cache.store.add_file(bundle)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ctx.progress(blob.size)
    return FileArtifact(
        id=resolved.artifact_id, kind="git", source=source, layout="file",
        files=[FileEntry(path=f"{name}.bundle", size=blob.size, sha256=blob.sha256)],
    )

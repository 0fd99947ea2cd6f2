"""What every source kind returns: remote files, a resolved (pinned) artifact, and the fetch context."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from airlift.bundle.manifest import MAX_FILE_SIZE
from airlift.bundle.source_records import Source, source_record
from airlift.fetch.cache import Cache
from airlift.util.confine import path_problem
from airlift.util.errors import InputError, WorkError
from airlift.util.net import ATTEMPTS
from airlift.util.settings import settings


@dataclass(frozen=True)
class RemoteFile:
    """One upstream file, as far as resolution knows it (no content fetched yet)."""

    path: str
    size: int | None
    sha256: str | None = None  # known up front for LFS files, pinned URLs, registries
    etag: str | None = None
    git_sha1: str | None = None
    executable: bool = False


def check_listing(artifact_id: str, kind: str, files: tuple[RemoteFile, ...]) -> None:
    """Refuse, before anything is downloaded, a listing whose paths the manifest would refuse.

    One line naming the file: a size that is not an int in 0..1 PiB, a control character (a newline in an rfilename or S3 key), a part over
    255 bytes, a name that is not UTF-8 (a `path:` file), a duplicate, including case-folded ones
    (`Config.json` and `config.json` collide on case-insensitive media). A local `path:` source is
    the user's input (exit 2); an upstream's listing is a failure of the upstream (exit 1).
    """
    error = InputError if kind == "path" else WorkError
    seen: dict[str, str] = {}
    for remote in files:
        if remote.size is not None and not (type(remote.size) is int and 0 <= remote.size <= MAX_FILE_SIZE):
            raise error(f"file {remote.path!r}: refused: size {remote.size!r} is not a size", artifact_id=artifact_id)
        problem = path_problem(remote.path)
        if problem:
            raise error(f"file {remote.path!r}: refused: {problem}", artifact_id=artifact_id)
        folded = remote.path.casefold()
        if folded in seen:
            raise error(f"file {remote.path!r}: refused: listed twice (also as {seen[folded]!r}, case-folded)", artifact_id=artifact_id)
        seen[folded] = remote.path


@dataclass(frozen=True)
class Resolved:
    """A spec entry pinned to exact upstream content: same Resolved, same bytes."""

    artifact_id: str
    kind: str
    source: Source
    files: tuple[RemoteFile, ...] = ()
    layout: str = "tree"
    # The URL with its credentials (userinfo, a signed query), for the request only: excluded from the
    # cache key, the repr and every record, so it never reaches a manifest, a log or a persisted result.
    fetch_url: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Sources hand in plain dicts; the record is validated and typed here, once.
        object.__setattr__(self, "source", source_record(self.kind, self.source))
        check_listing(self.artifact_id, self.kind, self.files)

    @property
    def cache_key(self) -> str:
        source = self.source.model_dump(mode="json", by_alias=True, exclude_none=True)
        pinned = json.dumps({"id": self.artifact_id, "kind": self.kind, "source": source}, sort_keys=True)
        return hashlib.sha256(pinned.encode()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


@dataclass
class FetchContext:
    """What a fetch needs from its caller: the cache, parallelism bounds, and a progress sink."""

    cache: Cache
    max_parallel_files: int = 8
    on_bytes: Callable[[int], None] | None = None
    attempts: int = ATTEMPTS  # the core's one attempt count (airlift.util.net)
    platform: str = "linux/amd64"  # the spec's default image platform
    # Upstream registries spoken to over plain HTTP (host[:port]); default AIRLIFT_INSECURE_REGISTRIES.
    insecure_registries: frozenset[str] = field(default_factory=lambda: settings().insecure_hosts)

    def plain_http(self, host: str) -> bool:
        return host in self.insecure_registries

    def progress(self, count: int) -> None:
        if self.on_bytes is not None:
            self.on_bytes(count)

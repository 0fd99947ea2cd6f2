"""`airlift plan`: what a build would fetch, from resolved references only (no content downloaded)."""

from __future__ import annotations

from dataclasses import dataclass, field

from airlift.fetch.base import Resolved
from airlift.fetch.cache import Cache
from airlift.util.units import human


@dataclass
class ArtifactPlan:
    id: str
    kind: str
    reference: str
    files: int
    bytes: int
    unknown_sizes: int
    cached_files: int
    cached_bytes: int
    # Bytes of this artifact that an earlier one in the plan already counts (same sha256: stored once).
    shared_bytes: int = 0
    shared_cached_bytes: int = 0
    # sha256 -> (size, cached) of the blobs known up front; not part of the printed plan.
    digests: dict[str, tuple[int, bool]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def to_fetch_bytes(self) -> int:
        return self.bytes - self.cached_bytes


@dataclass
class Plan:
    artifacts: list[ArtifactPlan] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A layer two images share (or a file two artifacts share) is fetched and stored once: count it once.
        seen: set[str] = set()
        for artifact in self.artifacts:
            artifact.shared_bytes = sum(size for d, (size, _) in artifact.digests.items() if d in seen)
            artifact.shared_cached_bytes = sum(size for d, (size, cached) in artifact.digests.items() if d in seen and cached)
            seen |= set(artifact.digests)

    @property
    def totals(self) -> dict[str, int]:
        total = sum(a.bytes - a.shared_bytes for a in self.artifacts)
        cached = sum(a.cached_bytes - a.shared_cached_bytes for a in self.artifacts)
        return {
            "artifacts": len(self.artifacts),
            "files": sum(a.files for a in self.artifacts),
            "bytes": total,
            "cached_bytes": cached,
            "to_fetch_bytes": total - cached,
            "unknown_sizes": sum(a.unknown_sizes for a in self.artifacts),
            "shared_bytes": sum(a.shared_bytes for a in self.artifacts),
        }


def _reference(resolved: Resolved) -> str:
    """What the entry resolved to; for a URL, the ETag (or sha256 pin), size and any redirect it followed."""
    source = resolved.source
    if resolved.kind != "url":
        return source.pinned
    seen = [f"ETag {source.etag}" if source.etag else "no ETag", human(source.size) if source.size is not None else "size unknown"]
    if source.sha256:
        seen.insert(0, f"sha256 {source.sha256[:12]}")
    if source.final_url and source.final_url != source.url:
        seen.append(f"via {source.final_url}")
    return ", ".join(seen)


def plan_artifact(resolved: Resolved, cache: Cache) -> ArtifactPlan:
    """Size one resolved artifact and say how much of it is already cached."""
    record = cache.load(resolved.cache_key)
    if record is not None:
        # Already fetched for exactly this reference: the record knows every file and size.
        sizes = {f.sha256: f.size for f in record.files}
        for blob in record.blobs:
            digest = blob.hex
            sizes.setdefault(digest, cache.store.blob_path(digest).stat().st_size)
        total = sum(f.size for f in record.files) + sum(size for d, size in sizes.items() if d not in {f.sha256 for f in record.files})
        count = len(record.files) + len(record.blobs)
        digests = {d: (size, True) for d, size in sizes.items()}
        return ArtifactPlan(resolved.artifact_id, resolved.kind, _reference(resolved), count, total, 0, count, total, digests=digests)
    complete = False
    files = resolved.files
    cached_files = cached_bytes = unknown = total = 0
    digests: dict[str, tuple[int, bool]] = {}
    for remote in files:
        size = remote.size
        if size is None:
            unknown += 1
        total += size or 0
        digest = remote.sha256 or cache.sha256_for_etag(remote.git_sha1, remote.size)
        cached = bool(complete or (digest and cache.store.has(digest, size)))
        if cached:
            cached_files += 1
            cached_bytes += size or (cache.store.blob_path(digest).stat().st_size if digest and cache.store.has(digest) else 0)
        if digest and size is not None:
            digests[digest] = (size, cached)
    return ArtifactPlan(resolved.artifact_id, resolved.kind, _reference(resolved), len(files), total, unknown, cached_files, cached_bytes, digests=digests)

"""Assemble a bundle from fetched artifacts: link blobs from the cache, write manifest and SHA256SUMS."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from airlift import __version__
from airlift.bundle.inventory import is_inventory, read_inventory
from airlift.bundle.layout import Bundle, with_evidence
from airlift.bundle.manifest import Artifact, Lineage, Manifest, now_iso
from airlift.config.spec import Spec
from airlift.fetch.cache import Cache
from airlift.util.errors import InputError
from airlift.util.names import Digest
from airlift.util.phase import progress, under_way


class BuildResult(BaseModel):
    """What a build wrote."""

    bundle: str
    manifest_sha256: str
    artifacts: int
    files: int
    bytes: int
    blobs_written: int
    blobs_skipped_since: int
    bytes_fetched: int = 0  # downloaded (or copied from a local path) by this build
    bytes_reused: int = 0  # already in the cache before it started


def resolution_digest(cache_keys: Sequence[tuple[str, str]]) -> str:
    """One digest for a whole spec's resolution: (artifact id, resolved cache key) pairs."""
    return hashlib.sha256(json.dumps(sorted(cache_keys)).encode()).hexdigest()


def check_model_signatures(spec: Spec, artifacts: Sequence[Artifact], cache: Cache) -> list[Artifact]:
    """v1.1: each artifact whose spec entry has `verify_signature`, checked and recorded (with its trust as blobs).

    Raises:
        IntegrityError: A signature does not match its files (the message names them): exit 1.
    """
    from airlift.bundle import modelsig
    from airlift.bundle.manifest import ModelSignature
    from airlift.config.spec import artifact_id_of

    trusts = {artifact_id_of(entry, section): entry.verify_signature for section, entry in spec.entries() if getattr(entry, "verify_signature", None)}
    out = []
    for artifact in artifacts:
        trust = trusts.get(artifact.id)
        if trust is None:
            out.append(artifact)
            continue
        stored = [cache.store.put_bytes(data).sha256 for data in modelsig.read_trust(trust.trust_files, artifact_id=artifact.id)]
        method = "key" if trust.key is not None else "certificate"
        covered = modelsig.check(
            artifact, method=method, signature=trust.signature, trust=[cache.store.blob_path(d) for d in stored],
            blob_path=cache.store.blob_path, scratch=cache.store.tmp_dir,
        )
        record = ModelSignature(method=method, signature=trust.signature, trust=[Digest(d) for d in stored], files=covered)
        blobs = [*artifact.blobs, *(Digest(d) for d in stored if Digest(d) not in artifact.blobs)]
        out.append(artifact.model_copy(update={"signature": record, "blobs": blobs}))
    return out


def assemble_bundle(
    *, spec: Spec, artifacts: Sequence[Artifact], out: Path, cache: Cache, since: Path | None = None, resolution: str | None = None,
    since_pubkeys: Sequence[Path] = (),
) -> BuildResult:
    """Write (or complete) the bundle at `out`. With `since`, blobs that OLD already has are left out.

    A `since` inventory is read once, here, and its signature checked against `since_pubkeys` when given
    (the CLI's check before the flow run is a courtesy: this is the one that counts).
    """
    bundle = Bundle(out)
    lineage = None
    old_blobs: set[str] = set()
    if since is not None and is_inventory(since):
        # v1.1: a site inventory, its signature checked against the trusted keys when any are given.
        inventory = read_inventory(since, pubkeys=list(since_pubkeys) or None)
        old_blobs = inventory.blobs()
        inventory_sha = hashlib.sha256(since.read_bytes()).hexdigest()
        lineage = Lineage(manifest_sha256=inventory_sha, name=f"inventory:{since.name}", created=inventory.created)
    elif since is not None:
        old = Bundle(since)
        if not old.exists():
            raise InputError(f"--since {since}: not a bundle (no manifest.json)")
        old_manifest = old.read_manifest()
        old_blobs = old_manifest.all_blobs()
        lineage = Lineage(manifest_sha256=old.manifest_sha256(), name=old_manifest.name, created=old_manifest.created)

    ordered = sorted(check_model_signatures(spec, artifacts, cache), key=lambda a: a.id)
    manifest = Manifest(
        name=spec.name,
        created=now_iso(),
        airlift_version=__version__,
        since=lineage,
        resolution=resolution,
        artifacts=ordered,
        spec=spec.redacted().model_dump(mode="json", by_alias=True, exclude_defaults=True),
    )
    if bundle.exists():
        previous = bundle.read_manifest()
        if previous.model_dump(exclude={"created", "evidence"}) == manifest.model_dump(exclude={"created", "evidence"}):
            manifest = previous.model_copy(update={"evidence": None})  # a no-op rebuild keeps the bundle byte-identical
    # v1.1: the SBOM and provenance are functions of the manifest, which then pins their digests.
    manifest, evidence = with_evidence(manifest)

    written = skipped = 0
    bundle.store.ensure_dirs()
    wanted = sorted(set().union(*(a.all_blobs() for a in manifest.artifacts)))  # the evidence blobs are written below
    with under_way("assemble", out.name):
        for done, digest in enumerate(wanted, 1):
            if digest in old_blobs:
                skipped += 1
                continue
            if not bundle.store.has(digest):
                cache.store.link_blob_to(bundle.store, digest, dirs_ready=True)  # ensured above
                written += 1
                progress(done=done, total=len(wanted))
        digest = bundle.write_manifest(manifest, evidence)
    bundle.store.cleanup_tmp()
    return BuildResult(
        bundle=str(out),
        manifest_sha256=digest,
        artifacts=len(ordered),
        files=sum(len(a.files) for a in ordered),
        bytes=sum(a.total_bytes for a in ordered),
        blobs_written=written,
        blobs_skipped_since=skipped,
    )

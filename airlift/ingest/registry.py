"""Push bundled images to the air-gapped registry, keeping every manifest digest unchanged.

Blobs the registry already has are skipped (HEAD); blobs another repository of this bundle already
pushed are mounted; the rest upload in chunks, and an interrupted upload resumes from the offset the
registry reports, using the session URL saved in a small state file. The manifest goes last, as the
exact bytes that were pulled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from airlift.bundle.manifest import ImageArtifact
from airlift.config.site import RegistryTarget
from airlift.oci import referrers
from airlift.oci.client import RegistryClient
from airlift.oci.reference import airgap_reference, parse_image, push_target
from airlift.util.errors import IntegrityError
from airlift.util.fs import write_bytes_atomic
from airlift.util.names import Digest
from airlift.util.net import with_transient_retries
from airlift.util.phase import under_way


@dataclass
class PushReport:
    image: str
    target: str
    digest: str
    uploaded: int = 0
    mounted: int = 0
    skipped: int = 0
    bytes: int = 0
    manifest_pushed: bool = False
    already_present: bool = False
    referrers_pushed: int = 0  # v1.1: signatures, attestations, SBOMs pushed beside the image
    referrers_present: int = 0


def target_repository(target: RegistryTarget, artifact: ImageArtifact) -> tuple[str, str]:
    """(registry host, repository under the site prefix) an image is pushed to."""
    host, repository, _ = push_target(target.url, repository=artifact.image.repository, tag=artifact.image.tag)
    return host, repository


def airgap_ref(target: RegistryTarget, artifact: ImageArtifact) -> str:
    """The image's air-gapped reference, `<registry url>/<repository>:<tag>`."""
    return airgap_reference(target.url, parse_image(artifact.image.ref))


class _UploadState:
    """Remembers an open upload session per (registry, repository, digest) so a rerun can resume it."""

    def __init__(self, directory: Path, host: str, repository: str, digest: str) -> None:
        key = hashlib.sha256(f"{host}\0{repository}\0{digest}".encode()).hexdigest()
        self.path = directory / f"{key}.json"

    def load(self) -> str | None:
        try:
            return json.loads(self.path.read_text())["location"]
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def save(self, location: str) -> None:
        write_bytes_atomic(self.path, json.dumps({"location": location}).encode())

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def push_image(
    artifact: ImageArtifact,
    *,
    target: RegistryTarget,
    blob_path: Callable[[str], Path],
    state_dir: Path,
    mount_from: Iterable[str] = (),
    on_bytes: Callable[[int], None] | None = None,
) -> PushReport:
    """Push one image with its digest unchanged: skip, mount or upload each blob, then the manifest bytes."""
    image = artifact.image
    host, repository = target_repository(target, artifact)
    report = PushReport(image=image.ref, target=airgap_ref(target, artifact), digest=image.digest)
    client = RegistryClient(host, insecure=target.insecure)
    label = f"{artifact.id} -> {report.target}"
    try:
        tag = image.tag or image.digest
        if with_transient_retries(label, action=lambda: client.head_manifest(repository, tag)) == image.digest:
            report.already_present = True
            _push_referrers(client, artifact, repository, report, blob_path, state_dir, host, label)
            return report
        manifest_digest = image.digest
        for digest in [image.config, *image.layers]:
            if with_transient_retries(label, action=lambda d=digest: client.has_blob(repository, d)):
                report.skipped += 1
                continue
            if any(client.mount_blob(repository, digest, from_repository=other) for other in mount_from if other != repository):
                report.mounted += 1
                continue
            with under_way("push", digest[:19]):  # one unit per layer, retries included (kill trials)
                report.bytes += with_transient_retries(label, action=lambda d=digest: _upload(client, repository, d, blob_path, state_dir, host, on_bytes))
            report.uploaded += 1
        raw = blob_path(manifest_digest.hex).read_bytes()
        for reference in (manifest_digest, tag):
            pushed = with_transient_retries(label, action=lambda r=reference: client.put_manifest(repository, r, raw=raw, media_type=image.media_type))
            if pushed and pushed != manifest_digest:
                # The contract's central promise is an unchanged digest: a registry that stored other
                # bytes (or rewrote them) has broken it, and the push must not look done.
                raise IntegrityError(
                    f"registry {host} answered the manifest PUT of {repository}:{reference} with digest {pushed}, expected {manifest_digest}",
                    artifact_id=artifact.id,
                )
        report.manifest_pushed = True
        _push_referrers(client, artifact, repository, report, blob_path, state_dir, host, label)
        return report
    finally:
        client.close()


def _push_referrers(
    client: RegistryClient, artifact: ImageArtifact, repository: str, report: PushReport, blob_path: Callable[[str], Path],
    state_dir: Path, host: str, label: str,
) -> None:
    """After the image itself (a referrer names its subject): its referrers, digests unchanged."""
    if not artifact.referrers:
        return
    pushed = with_transient_retries(f"{label}: referrers", action=lambda: referrers.push(
        client, repository, artifact.referrers, blob_path=blob_path,
        upload=lambda d: _upload(client, repository, d, blob_path, state_dir, host, None),
    ))
    report.referrers_pushed += pushed.pushed
    report.referrers_present += pushed.present


def _upload(client: RegistryClient, repository: str, digest: str, blob_path: Callable[[str], Path], state_dir: Path, host: str, on_bytes) -> int:
    path = blob_path(Digest(digest).hex)
    state = _UploadState(state_dir, host, repository, digest)
    saved = state.load()
    offset = client.upload_status(repository, saved) if saved else None
    if saved is None or offset is None:  # nothing to resume (or the registry forgot the session): start one
        location, offset = client.start_upload(repository), 0
        state.save(location)
    else:
        location = saved
    location = client.upload_chunks(repository, location, path=path, offset=offset, on_location=state.save, on_bytes=on_bytes)
    client.finish_upload(repository, location, digest=digest)
    state.clear()
    return path.stat().st_size - offset

"""An image's referrers (cosign signatures, attestations, SBOMs): found upstream, pushed beside the image.

Discovery, for each subject digest (the platform manifest and, for a multi-platform image, its index):
- the OCI 1.1 referrers API (`GET /v2/<repo>/referrers/<digest>`) where the registry answers it;
- otherwise the OCI fallback tag `sha256-<hex>` (an index of referrers, as `oras attach` writes to an
  older registry), and cosign's tag schema `sha256-<hex>.sig|.att|.sbom` (Debian's distribution 2.8).

Each referrer's manifest is kept as its exact bytes, so its digest (the one `cosign verify` checks)
never changes. Push: a cosign referrer goes back under its own tag; a `subject` referrer is pushed by
digest, and when the registry does not index subjects (no `OCI-Subject` header in its answer) the
fallback tag's index is written too, so a 1.1 client finds it on either kind of registry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airlift.bundle.manifest import Referrer
from airlift.bundle.oci_layout import MAX_IMAGE_MANIFEST, OCI_INDEX, OCI_MANIFEST
from airlift.bundle.store import BlobStore
from airlift.oci.auth import read_capped
from airlift.oci.client import DOCKER_MANIFEST, RegistryClient
from airlift.util.errors import WorkError
from airlift.util.names import DIGEST, MEDIA_TYPE

COSIGN_SUFFIXES = ("sig", "att", "sbom")
MAX_REFERRERS = 64  # per subject: a hostile registry must not make a build pull without end
MAX_REFERRER_BYTES = 64 << 20  # a signature or an SBOM is small; more is refused, not pulled
MAX_REFERRER_BLOBS = 256  # per referrer: cosign puts one layer per signature; each is a request
MAX_MEDIA_TYPE = 255
_DIGEST = re.compile(DIGEST)
_MEDIA_TYPE = re.compile(MEDIA_TYPE)


@dataclass
class Found:
    """One referrer found upstream: its manifest bytes and what it refers to."""

    digest: str
    media_type: str
    raw: bytes
    subject: str
    tag: str | None = None
    artifact_type: str | None = None
    blobs: list[dict] = field(default_factory=list)  # config and layer descriptors


def cosign_tag(subject: str, suffix: str) -> str:
    return f"{subject.replace(':', '-')}.{suffix}"


def fallback_tag(subject: str) -> str:
    return subject.replace(":", "-")


def _refuse(label: str, why: str) -> WorkError:
    """The registry's answer is hostile or malformed: a permanent refusal, one line (a retry reads the same)."""
    return WorkError(f"{label}: {why}; refused")


def _media_type_ok(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_MEDIA_TYPE and bool(_MEDIA_TYPE.match(value))


def _descriptor(value: object, label: str, where: str) -> dict:
    """`value` as a blob descriptor (sha256 digest, size a non-negative int, mediaType a bounded string)."""
    if not isinstance(value, dict):
        raise _refuse(label, f"{where} is not a descriptor object")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise _refuse(label, f"{where} digest is not sha256:<64 hex>")
    if type(size) is not int or size < 0:  # bool is no int here; the sum of sizes is bounded by the caller
        raise _refuse(label, f"{where} size {str(size)[:32]!r} is not a non-negative integer")
    if not _media_type_ok(value.get("mediaType")):
        raise _refuse(label, f"{where} mediaType is not a media type of at most {MAX_MEDIA_TYPE} characters")
    return value


def _json(raw: bytes, label: str) -> object:
    try:
        return json.loads(raw)
    except ValueError:  # also not UTF-8
        raise _refuse(label, "the manifest is not JSON") from None


def _found(raw: bytes, media_type: str, subject: str, tag: str | None, *, repository: str) -> Found | None:
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        return None  # an index or an unknown type: not a referrer airlift carries
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    label = f"{repository}@{subject[:19]}: referrer {tag or digest[:19]}"
    doc = _json(raw, label)
    if not isinstance(doc, dict):
        raise _refuse(label, "the manifest is not a JSON object")
    config, layers = doc.get("config"), doc.get("layers", [])
    if not isinstance(layers, list):
        raise _refuse(label, "layers is not a list")
    if len(layers) > MAX_REFERRER_BLOBS:
        raise _refuse(label, f"{len(layers)} layers, more than the {MAX_REFERRER_BLOBS} allowed")
    blobs = [] if config is None else [_descriptor(config, label, "config")]
    blobs += [_descriptor(layer, label, f"layer {n}") for n, layer in enumerate(layers)]
    if sum(d["size"] for d in blobs) > MAX_REFERRER_BYTES:
        return None
    artifact_type = doc.get("artifactType") or (config or {}).get("mediaType")
    if artifact_type is not None and not _media_type_ok(artifact_type):
        raise _refuse(label, "artifactType is not a media type")
    return Found(digest, media_type, raw, subject, tag, artifact_type, blobs)


def _listed(raw: bytes, label: str) -> list[str]:
    """The manifest digests an index of referrers lists, each checked to be `sha256:<64 hex>`."""
    doc = _json(raw, label)
    manifests = doc.get("manifests", []) if isinstance(doc, dict) else None
    if not isinstance(manifests, list):
        raise _refuse(label, "the index is not a JSON object with a manifests list")
    digests = [m.get("digest") for m in manifests if isinstance(m, dict) and "digest" in m]
    for digest in digests:
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise _refuse(label, f"lists {str(digest)[:80]!r}, not a sha256:<64 hex> digest")
    return digests


def discover(client: RegistryClient, repository: str, subject: str) -> list[Found]:
    """Every referrer of `subject` in `repository` (manifests only: blobs are pulled by `pull`)."""
    scope = f"repository:{repository}:pull"
    label = f"{repository}@{subject[:19]}: referrers index"
    digests: list[str] = []
    response = client.request("GET", f"/v2/{repository}/referrers/{subject}", scope=scope, headers={"Accept": OCI_INDEX}, stream=True)
    supported = response.status_code == 200 and response.headers.get("content-type", "").startswith(OCI_INDEX)
    if supported:
        digests = _listed(read_capped(response, MAX_IMAGE_MANIFEST, label), label)
    elif response.status_code not in (400, 404, 405):
        client.check(response, f"{repository}: referrers of {subject[:19]}")
        response.close()
    else:
        response.close()
        if client.head_manifest(repository, fallback_tag(subject)):
            raw, media_type, _ = client.get_manifest(repository, fallback_tag(subject))
            if media_type == OCI_INDEX:
                digests = _listed(raw, label)
    out: list[Found] = []
    for digest in digests[:MAX_REFERRERS]:
        raw, media_type, _ = client.get_manifest(repository, digest)
        found = _found(raw, media_type, subject, None, repository=repository)
        if found is not None:
            out.append(found)
    if not supported:
        for suffix in COSIGN_SUFFIXES:
            tag = cosign_tag(subject, suffix)
            if client.head_manifest(repository, tag) is None:
                continue
            raw, media_type, _ = client.get_manifest(repository, tag)
            found = _found(raw, media_type, subject, tag, repository=repository)
            if found is not None:
                out.append(found)
    return out


def pull(client: RegistryClient, repository: str, found: Found, *, store: BlobStore) -> list[str]:
    """Store a referrer's blobs, then its manifest; its blob digests (`sha256:<hex>`), manifest first.

    Each blob is pulled at its descriptor's size (checked by `_found`): a body running past it is
    stopped there, so a registry claiming 1 byte cannot stream until the disk is full.
    """
    for descriptor in found.blobs:
        client.pull_blob(repository, descriptor["digest"], store=store, size=descriptor["size"])
    manifest = store.put_bytes(found.raw)
    return [f"sha256:{manifest.sha256}", *(d["digest"] for d in found.blobs)]


@dataclass
class ReferrerPush:
    pushed: int = 0
    present: int = 0
    notes: list[str] = field(default_factory=list)


def push(
    client: RegistryClient, repository: str, referrers: list[Referrer], *, blob_path: Callable[[str], Path],
    upload: Callable[[str], int],
) -> ReferrerPush:
    """Push each referrer beside its image (after it: a referrer names its subject), digests unchanged."""
    report = ReferrerPush()
    fallback: dict[str, list[dict]] = {}
    for referrer in referrers:
        reference = referrer.tag or referrer.digest
        with open(blob_path(referrer.digest.hex), "rb") as handle:  # verified with the bundle
            raw = handle.read(MAX_REFERRER_BYTES)
        if client.head_manifest(repository, reference) == referrer.digest:
            report.present += 1
            continue
        for digest in referrer.blobs:
            if not client.has_blob(repository, digest):
                upload(digest)
        response = client.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": referrer.media_type}, content=raw,
        )
        client.check(response, f"push referrer {repository}@{reference}")
        pushed = response.headers.get("docker-content-digest", "")
        if pushed and pushed != referrer.digest:
            report.notes.append(f"registry reports {pushed} for referrer {reference}, expected {referrer.digest}")
        if referrer.tag is None and "oci-subject" not in response.headers:
            entry = {"mediaType": referrer.media_type, "digest": referrer.digest, "size": len(raw)}
            if referrer.artifact_type:
                entry["artifactType"] = referrer.artifact_type
            fallback.setdefault(referrer.subject, []).append(entry)
        report.pushed += 1
    for subject, entries in fallback.items():
        _write_fallback_index(client, repository, subject, entries)
    return report


def _write_fallback_index(client: RegistryClient, repository: str, subject: str, entries: list[dict]) -> None:
    """Add `entries` to the index at the fallback tag `sha256-<hex>`, keeping what it already lists."""
    tag = fallback_tag(subject)
    manifests: list[dict] = []
    if client.head_manifest(repository, tag):
        raw, media_type, _ = client.get_manifest(repository, tag)
        if media_type == OCI_INDEX:
            manifests = [m for m in json.loads(raw).get("manifests", []) if isinstance(m, dict)]
    known = {m.get("digest") for m in manifests}
    manifests += [e for e in entries if e["digest"] not in known]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    client.put_manifest(repository, tag, raw=index, media_type=OCI_INDEX)

"""BUNDLE/sbom.cdx.json: a CycloneDX (1.6) bill of materials of the bundle, made with cyclonedx-python-lib.

One component per artifact (bom-ref = the artifact id), with a package URL where one exists (an HF repo
at its commit, an image at its digest, each wheel by its PyPI name and version), and one `file`
sub-component per file or blob with its SHA-256. The document is a pure function of the manifest
(serial number and timestamp included), so a no-op rebuild writes the same bytes, and verify can check
it agrees with the manifest without trusting anything but the manifest's pin of its digest.

The library builds the document and every artifact's component; the `file` sub-components (one per
file: 10,000 in a dataset of small files) are added to its JSON output as the CycloneDX 1.6 schema
spells them. Why not through the library: it keeps children in sorted sets whose every comparison
builds a tuple of all of a component's fields, which cost 2.8 s for 1,000 files here (n log n, so
most of a build of 10,000 small files); written directly they cost milliseconds, sorted by bom-ref.

Verify checks an SBOM against its manifest in airlift/bundle/sbom_check.py, without this library.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from airlift import __version__
from airlift.bundle.manifest import Artifact, ImageArtifact, Manifest, artifacts_digest

_WHEEL_RE = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
_WHEEL_KINDS = ("wheels", "installer")  # their wheels are libraries, by PyPI name and version
_KIND_TYPE = {
    "hf-model": ComponentType.MACHINE_LEARNING_MODEL,
    "ngc-model": ComponentType.MACHINE_LEARNING_MODEL,
    "hf-dataset": ComponentType.DATA,
    "url": ComponentType.DATA,
    "path": ComponentType.DATA,
    "s3": ComponentType.DATA,
    "git": ComponentType.APPLICATION,
    "wheels": ComponentType.LIBRARY,
    "image": ComponentType.CONTAINER,
    "installer": ComponentType.APPLICATION,  # airlift itself and its dependency wheels
    "ngc-catalog": ComponentType.MACHINE_LEARNING_MODEL,
    "output": ComponentType.DATA,  # a job run's results, carried out by `airlift export`
}


def wheel_name_version(filename: str) -> tuple[str, str] | None:
    """(PyPI name, version) of a wheel file name (PEP 427), normalized as PyPI names it; else None."""
    match = _WHEEL_RE.match(filename.rsplit("/", 1)[-1])
    if not match:
        return None
    return re.sub(r"[-_.]+", "-", match["name"]).lower(), match["version"]


def _sha256(hexdigest: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)


def _file(owner: str, name: str, sha256: str, *, blob: bool = False) -> dict:
    """A `file` component in CycloneDX 1.6 JSON (see the module doc for why not a library Component).

    A blob's bom-ref is `<artifact>#/<digest>`: no file path starts with `/`, so a hostile file named
    `sha256:<hex>` cannot share a blob's bom-ref (bom-refs must be unique in a BOM).
    """
    ref = f"{owner}#/{name}" if blob else f"{owner}#{name}"
    return {"bom-ref": ref, "hashes": [{"alg": "SHA-256", "content": sha256}], "name": name, "type": "file"}


def _files(artifact: Artifact) -> list[dict]:
    """The artifact's files and blobs as `file` components (wheels are libraries instead); sbom_bytes orders them."""
    wheels = artifact.kind in _WHEEL_KINDS
    files = [_file(artifact.id, f.path, f.sha256) for f in artifact.files if not (wheels and wheel_name_version(f.path))]
    # Image manifests, configs, layers, referrers and trust material are blobs: each listed by digest.
    named = {f.sha256 for f in artifact.files}
    return files + [_file(artifact.id, b, b.hex, blob=True) for b in sorted(set(artifact.blobs)) if b.hex not in named]


def _purl(artifact: Artifact) -> PackageURL | None:
    source = artifact.source
    if artifact.kind in ("hf-model", "hf-dataset"):
        org, name = source.repo.split("/", 1)
        qualifiers = {"repository_type": "dataset"} if artifact.kind == "hf-dataset" else {}
        return PackageURL("huggingface", org, name, source.commit, qualifiers or None)
    if isinstance(artifact, ImageArtifact):
        image = artifact.image
        registry = getattr(source, "registry", None)
        repository_url = f"{registry}/{image.repository}" if registry else image.repository
        return PackageURL("oci", None, image.repository.rsplit("/", 1)[-1], image.digest, {"repository_url": repository_url})
    if artifact.kind == "git":
        return PackageURL("generic", None, artifact.id.removeprefix("repos/"), source.commit, {"vcs_url": f"git+{source.url}@{source.commit}"})
    if artifact.kind == "ngc-model":
        return PackageURL("generic", "ngc", source.target.split(":", 1)[0].replace("/", "."), source.version)
    return None


def _component(artifact: Artifact) -> Component:
    """The artifact's component; its `file` children are added to the JSON afterwards (`_files`)."""
    libraries = []
    if artifact.kind in _WHEEL_KINDS:
        # Each wheel is a library of its own, by its PyPI name and version (a few hundred at most).
        for entry in artifact.files:
            pinned = wheel_name_version(entry.path)
            if pinned is not None:
                libraries.append(Component(
                    type=ComponentType.LIBRARY, name=pinned[0], version=pinned[1], bom_ref=f"{artifact.id}#{entry.path}",
                    purl=PackageURL("pypi", None, pinned[0], pinned[1]), hashes=[_sha256(entry.sha256)],
                    properties=[Property(name="airlift:path", value=entry.path)],
                ))
    properties = [Property(name="airlift:kind", value=artifact.kind), Property(name="airlift:pinned", value=artifact.source.pinned or "-")]
    if artifact.signature is not None:
        properties.append(Property(name="airlift:model-signature", value=f"verified ({artifact.signature.method}, {artifact.signature.files} files, {artifact.signature.signature})"))
    referrers = artifact.referrers if isinstance(artifact, ImageArtifact) else []
    for referrer in referrers:
        properties.append(Property(name="airlift:referrer", value=f"{referrer.digest} {referrer.artifact_type or referrer.media_type}" + (f" tag {referrer.tag}" if referrer.tag else "")))
    hashes = [_sha256(artifact.image.digest.hex)] if isinstance(artifact, ImageArtifact) else []
    return Component(
        type=_KIND_TYPE[artifact.kind], name=artifact.id, version=artifact.source.pinned or None, bom_ref=artifact.id,
        purl=_purl(artifact), hashes=hashes, components=libraries, properties=properties,
    )


def sbom_bytes(manifest: Manifest) -> bytes:
    """The CycloneDX JSON of `manifest`'s artifacts: the same manifest always gives the same bytes."""
    digest = artifacts_digest(manifest.artifacts)
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"airlift:{manifest.name}:{digest}"))
    bom.metadata.timestamp = datetime.fromisoformat(manifest.created.replace("Z", "+00:00"))
    bom.metadata.component = Component(type=ComponentType.APPLICATION, name=manifest.name, version=manifest.created, bom_ref=f"bundle:{manifest.name}")
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="airlift", version=__version__))
    bom.metadata.properties.add(Property(name="airlift:artifacts_sha256", value=digest))
    components = [_component(artifact) for artifact in manifest.artifacts]
    for component in components:
        bom.components.add(component)
    bom.register_dependency(bom.metadata.component, components)  # the bundle is made of its artifacts
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    files = {artifact.id: _files(artifact) for artifact in manifest.artifacts}
    listed = doc.get("components", [])
    for index, component in enumerate(listed):
        children = files.get(component.get("bom-ref"), [])
        if children:
            component["components"] = sorted([*component.get("components", []), *children], key=lambda c: c["bom-ref"])
            listed[index] = dict(sorted(component.items()))  # the library writes a component's keys in this order
    return (json.dumps(doc, indent=2) + "\n").encode()

"""BUNDLE/provenance.json: an in-toto Statement v1 with a SLSA provenance v1 predicate of the build.

The subject is the manifest's artifact list (`manifest.json#artifacts`, digest `artifacts_digest`), not
the manifest file: the manifest pins this document's sha256 (`evidence.provenance_sha256`), and a file
cannot name the digest of a file that contains its own digest. Signing the manifest therefore covers
the provenance, and the provenance names exactly the artifacts the manifest carries.

`resolvedDependencies` has one entry per artifact (one per wheel for `wheels`): what the spec asked
for (annotations.asked) and what it resolved to (the digest set). Like the SBOM, it is a pure function
of the manifest, so a no-op rebuild writes the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from airlift import __version__
from airlift.bundle.manifest import Artifact, ImageArtifact, Manifest, artifacts_digest

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:airlift:build-bundle:v1"
BUILDER_ID = "urn:airlift:builder"
SUBJECT_NAME = "manifest.json#artifacts"


def _asked(artifact: Artifact) -> str:
    """What the spec asked for, before resolution: a revision, a ref, a tag, a URL."""
    source = artifact.source
    if artifact.kind in ("hf-model", "hf-dataset"):
        return f"{source.repo}@{source.revision}"
    if artifact.kind == "git":
        return f"{source.url}@{source.ref}"
    if artifact.kind == "image":
        return source.ref
    if artifact.kind == "ngc-model":
        return source.target
    if artifact.kind in ("url", "s3"):
        return source.url
    if artifact.kind == "path":
        return source.path
    return artifact.id


def _dependencies(artifact: Artifact) -> list[dict[str, Any]]:
    source = artifact.source
    notes = {"artifact_id": artifact.id, "kind": artifact.kind, "asked": _asked(artifact), "pinned": source.pinned or ""}
    if artifact.kind in ("wheels", "installer"):
        sha = {f.path.rsplit("/", 1)[-1]: f.sha256 for f in artifact.files}
        entries = [
            {"name": f"{artifact.id}/{name}", "uri": pin.url, "digest": {"sha256": pin.sha256 or sha.get(name, "")}, "annotations": notes | {"asked": name, "pinned": name}}
            for name, pin in sorted(source.wheels.items())
        ]
        if artifact.kind == "installer":  # airlift's own wheel: built by the airlift that ran the build, never fetched
            entries.append({
                "name": f"{artifact.id}/{source.airlift_wheel}", "uri": f"pkg:pypi/airlift@{source.airlift_version}",
                "digest": {"sha256": source.airlift_sha256},
                "annotations": notes | {"asked": "airlift (the running version)", "pinned": source.airlift_wheel, "built_from": source.built_from},
            })
        return entries
    digest: dict[str, str] = {}
    uri = _asked(artifact)
    if artifact.kind in ("hf-model", "hf-dataset", "git"):
        digest = {"gitCommit": source.commit}
        uri = f"pkg:huggingface/{source.repo}@{source.commit}" if artifact.kind != "git" else f"git+{source.url}@{source.commit}"
    elif isinstance(artifact, ImageArtifact):
        digest = {"sha256": artifact.image.digest.hex}
        registry = getattr(source, "registry", None)
        uri = f"{registry + '/' if registry else ''}{artifact.image.repository}@{artifact.image.digest}"
    elif len(artifact.files) == 1:
        digest = {"sha256": artifact.files[0].sha256}
    entry = {"name": artifact.id, "uri": uri, "annotations": notes}
    if digest:
        entry["digest"] = digest
    return [entry]


def provenance_bytes(manifest: Manifest) -> bytes:
    """The statement for `manifest`'s build: the same manifest always gives the same bytes."""
    external: dict[str, Any] = {"name": manifest.name}
    if manifest.spec is not None:
        external["spec"] = manifest.spec  # already redacted: a manifest carries no credentials
    if manifest.since is not None:
        external["since"] = manifest.since.model_dump(mode="json")
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": SUBJECT_NAME, "digest": {"sha256": artifacts_digest(manifest.artifacts)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"resolution": manifest.resolution} if manifest.resolution else {},
                "resolvedDependencies": [d for a in manifest.artifacts for d in _dependencies(a)],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"airlift": __version__}},
                "metadata": {"invocationId": f"{manifest.name}@{manifest.created}", "startedOn": manifest.created, "finishedOn": manifest.created},
            },
        },
    }
    return (json.dumps(statement, indent=2, sort_keys=True) + "\n").encode()


def provenance_problems(data: bytes, manifest: Manifest) -> list[str]:
    """What in the provenance disagrees with the manifest: its subject, or an artifact's resolved source."""
    try:
        doc = json.loads(data)
        subjects = doc["subject"]
        deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
        if not isinstance(subjects, list) or not isinstance(deps, list):
            raise TypeError
    except (ValueError, UnicodeDecodeError, TypeError, KeyError):
        return ["not an in-toto statement with a SLSA provenance predicate"]
    problems = []
    if doc.get("_type") != STATEMENT_TYPE or doc.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"_type/predicateType are not {STATEMENT_TYPE} / {PREDICATE_TYPE}")
    want = artifacts_digest(manifest.artifacts)
    if [s.get("digest", {}).get("sha256") for s in subjects if isinstance(s, dict)] != [want]:
        problems.append(f"subject is not the manifest's artifact list (sha256 {want[:12]})")
    recorded: dict[str, list[dict]] = {}
    for dep in deps:
        if isinstance(dep, dict) and isinstance(dep.get("annotations"), dict):
            recorded.setdefault(str(dep["annotations"].get("artifact_id")), []).append(dep)
    for artifact in manifest.artifacts:
        expected = _dependencies(artifact)
        actual = recorded.pop(artifact.id, [])
        if actual != expected:
            problems.append(f"{artifact.id}: resolved source differs from the manifest's ({artifact.source.pinned[:40] or '-'})")
    problems += [f"{name}: not an artifact of the manifest" for name in sorted(recorded)]
    return problems

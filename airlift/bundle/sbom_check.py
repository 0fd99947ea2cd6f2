"""Checking a bundle's SBOM (sbom.cdx.json) against its manifest: what `verify` runs on every bundle.

Apart from airlift/bundle/sbom.py, which writes the SBOM with cyclonedx-python-lib: reading one needs only
JSON, and `verify` (the far side's most frequent command) should not import the library to do it.
The document is hostile until checked (an unsigned bundle's SBOM is anyone's), so every value read
from it is type-checked: a wrong type is a problem reported, never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from airlift.bundle.manifest import Manifest

MAX_EVIDENCE_BYTES = 512 << 20  # an SBOM lists every file: bounded, but roomy


def _dicts(value: Any) -> list[dict]:
    """The objects of a JSON list (anything else in it, or a value that is no list, is left out)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _file_hashes(component: dict) -> Iterable[tuple[str, str]]:
    """(bom-ref, SHA-256) of each file child of an artifact's component; a claim of other types is kept,
    as text, so it is reported as not in the manifest rather than passed over."""
    for child in _dicts(component.get("components")):
        for entry in _dicts(child.get("hashes")):
            ref, content = child.get("bom-ref", ""), entry.get("content", "")
            if entry.get("alg") == "SHA-256":
                yield (ref if isinstance(ref, str) else f"<{type(ref).__name__}>", content if isinstance(content, str) else repr(content)[:64])


def sbom_problems(data: bytes, manifest: Manifest) -> list[str]:
    """What in the SBOM disagrees with the manifest: a missing artifact or file digest, an extra one."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ["not a CycloneDX JSON document"]
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX" or not isinstance(doc.get("components", []), list):
        return ["not a CycloneDX JSON document"]
    components: dict[str, dict] = {}
    problems = []
    for component in doc.get("components", []):
        ref = component.get("bom-ref") if isinstance(component, dict) else None
        if not isinstance(ref, str):
            problems.append(f"a component ({type(component).__name__}) without a bom-ref string")
            continue
        components[ref] = component
    for artifact in manifest.artifacts:
        component = components.pop(artifact.id, None)
        if component is None:
            problems.append(f"{artifact.id}: not listed")
            continue
        hashes = list(_file_hashes(component))
        listed = {(ref.split("#", 1)[-1], sha) for ref, sha in hashes}
        expected = {(f.path, f.sha256) for f in artifact.files}
        named = {f.sha256 for f in artifact.files}
        expected |= {(f"/{b}", b.hex) for b in artifact.blobs if b.hex not in named}
        refs = [ref for ref, _ in hashes]
        if len(refs) != len(set(refs)):
            problems.append(f"{artifact.id}: a bom-ref is listed twice")
        for path, sha in sorted(expected - listed)[:5]:
            problems.append(f"{artifact.id}: {path}: sha256 {sha[:12]} not listed")
        for path, sha in sorted(listed - expected)[:5]:
            problems.append(f"{artifact.id}: {path[:80]}: sha256 {sha[:12]} is not in the manifest")
        if (component.get("version") or "") != (artifact.source.pinned or ""):
            problems.append(f"{artifact.id}: version {str(component.get('version'))[:80]!r} is not the manifest's {artifact.source.pinned!r}")
    problems += [f"{ref[:120]}: not an artifact of the manifest" for ref in sorted(components)[:5]]
    return problems[:100]  # a hostile document could name millions: the first hundred say enough

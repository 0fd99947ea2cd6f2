"""A bundle on disk: `manifest.json`, `SHA256SUMS`, `blobs/sha256/<hex>`, and the OCI layout files.

`oci-layout` and `index.json` make the bundle an OCI image layout too (airlift/bundle/oci_layout.py):
they are derived from the manifest and written with SHA256SUMS, which pins them. (v1.1) `sbom.cdx.json`
and `provenance.json` are blobs pinned by the manifest's `evidence`; the top-level files are their copies,
written with SHA256SUMS too (docs/security.md says what pins what).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from airlift.bundle.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError, artifacts_digest
from airlift.bundle.oci_layout import (
    INDEX,
    LAYOUT_FILES,
    MAX_IMAGE_MANIFEST,
    MAX_INDEX_BYTES,
    index_bytes,
    layout_files,
    listed_ids,
)
from airlift.bundle.store import BlobStore
from airlift.util.confine import EscapeError, open_regular
from airlift.util.errors import InputError
from airlift.util.fs import write_bytes_atomic

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
SIGNATURE = "manifest.json.sig"
SBOM = "sbom.cdx.json"  # v1.1 (airlift/bundle/sbom.py)
PROVENANCE = "provenance.json"  # v1.1 (airlift/bundle/provenance.py)
EVIDENCE_FILES = (SBOM, PROVENANCE)
# The ONE list of derived top-level files: each is written with SHA256SUMS (which lists it) from the
# manifest and the blobs, so every copier of a bundle (transfer, unpack, install.sh) gets them by
# calling write_sums. The SBOM and the provenance are also blobs (pinned by the manifest's `evidence`),
# so they travel wherever blobs do; the top-level files are their readable copies.
TOP_LEVEL_FILES = (*LAYOUT_FILES, *EVIDENCE_FILES)


def evidence_files(manifest: Manifest) -> dict[str, bytes]:
    """`{name: bytes}` of the SBOM and the provenance of `manifest` (its `evidence` field aside)."""
    from airlift.bundle.provenance import provenance_bytes
    from airlift.bundle.sbom import sbom_bytes

    base = manifest.model_copy(update={"evidence": None})
    return {SBOM: sbom_bytes(base), PROVENANCE: provenance_bytes(base)}


def evidence_pins(manifest: Manifest) -> dict[str, str]:
    """`{top-level name: sha256}` the manifest pins (none for a manifest older than the evidence)."""
    if manifest.evidence is None:
        return {}
    return {SBOM: manifest.evidence.sbom_sha256, PROVENANCE: manifest.evidence.provenance_sha256}


def with_evidence(manifest: Manifest) -> tuple[Manifest, dict[str, bytes]]:
    """`manifest` pinning its SBOM and provenance (by sha256), and those two documents' bytes."""
    from airlift.bundle.manifest import Evidence

    files = evidence_files(manifest)
    evidence = Evidence(
        artifacts_sha256=artifacts_digest(manifest.artifacts),
        sbom_sha256=hashlib.sha256(files[SBOM]).hexdigest(),
        provenance_sha256=hashlib.sha256(files[PROVENANCE]).hexdigest(),
    )
    return manifest.model_copy(update={"evidence": evidence}), files


class Bundle:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.store = BlobStore(self.root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def require(self) -> Bundle:
        if not self.root.is_dir():
            raise InputError(f"{self.root}: bundle directory not found")
        if not self.exists():
            raise ManifestError(f"{self.root}: no {MANIFEST} (not a bundle, or an unfinished one)")
        return self

    def manifest_bytes(self) -> bytes:
        """The manifest's bytes, read no further than the size limit (a hostile bundle may be huge)."""
        try:
            with open(self.manifest_path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size > MAX_MANIFEST_BYTES:  # refused before a byte is read
                    raise ManifestError(f"{self.manifest_path}: manifest is larger than {MAX_MANIFEST_BYTES} bytes")
                data = handle.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise ManifestError(f"{self.root}: no {MANIFEST} (not a bundle, or an unfinished one)") from None
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{self.manifest_path}: manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        return data

    def read_manifest(self) -> Manifest:
        self.require()
        return Manifest.parse(self.manifest_bytes(), origin=str(self.manifest_path))

    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes()).hexdigest()

    def write_manifest(self, manifest: Manifest, evidence: dict[str, bytes] | None = None) -> str:
        """Store the evidence blobs, write manifest.json, then SHA256SUMS (last: its presence means the bundle is complete)."""
        for content in (evidence or {}).values():
            self.store.put_bytes(content)
        data = manifest.to_bytes()
        write_bytes_atomic(self.manifest_path, data)
        self.write_sums(manifest, hashlib.sha256(data).hexdigest())
        return hashlib.sha256(data).hexdigest()

    def write_sums(self, manifest: Manifest, manifest_sha256: str) -> None:
        # Blob names are their digests, so SHA256SUMS needs no hashing; only blobs present are listed
        # (a delta bundle lends the rest from its --store).
        lines = [f"{digest}  blobs/sha256/{digest}\n" for digest in sorted(manifest.all_blobs()) if self.store.has(digest)]
        # The OCI layout files go first, so SHA256SUMS (written last) pins them as well.
        for name, data in layout_files(manifest, blob_size=self.blob_size, read_blob=self.read_small_blob).items():
            write_bytes_atomic(self.root / name, data)
            lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
        # The evidence files are copies of their blobs, written only from a blob that hashes to its pin.
        for name, pinned in evidence_pins(manifest).items():
            content = self.read_evidence_blob(pinned)
            if content is not None:
                write_bytes_atomic(self.root / name, content)
                lines.append(f"{pinned}  {name}\n")
        lines.append(f"{manifest_sha256}  {MANIFEST}\n")
        write_bytes_atomic(self.root / SUMS, "".join(lines).encode())

    def blob_size(self, sha256: str) -> int | None:
        """The size of a blob this bundle holds, or None when it does not hold it."""
        try:
            return self.store.blob_path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def read_small_blob(self, sha256: str) -> bytes | None:
        """A small blob's bytes (an image manifest) if this bundle holds it and it hashes to its name; else None."""
        # The bundle may be hostile (inspect runs before any check): no symlink is followed, only a regular
        # file is read (not a FIFO or /dev/zero), and never more than the bound.
        try:
            fd = open_regular(self.root, str(self.store.blob_path(sha256).relative_to(self.root)))
        except (OSError, EscapeError):
            return None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_IMAGE_MANIFEST + 1)
        if len(data) > MAX_IMAGE_MANIFEST:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def layout_problems(self, manifest: Manifest) -> dict[str, str]:
        """`{file: reason}` for OCI layout files that differ from what `manifest` implies.

        A bundle written before the layout existed has neither file nor a SHA256SUMS line for them: that
        is not a problem. Otherwise each must hold exactly the bytes the manifest and the blobs present
        imply (a hostile index.json pointing elsewhere is reported, never followed). index.json may list
        fewer images than the blobs now allow (pushed from a delta onto a directory holding its lineage),
        but each entry it has must be exactly the one the manifest implies.
        """
        try:
            listed = {line.partition("  ")[2] for line in (self.root / SUMS).read_text().splitlines()}
        except (FileNotFoundError, UnicodeDecodeError):
            listed = set()
        problems = {}
        for name, expected in layout_files(manifest, blob_size=self.blob_size, read_blob=self.read_small_blob).items():
            path = self.root / name
            if not path.exists() and not path.is_symlink():
                if name in listed:
                    problems[name] = "missing"
                continue
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_INDEX_BYTES:
                problems[name] = "corrupt"
                continue
            actual = path.read_bytes()
            if actual == expected:
                continue
            ids = listed_ids(actual) if name == INDEX else None
            narrower = None if ids is None else index_bytes(manifest, blob_size=self.blob_size, read_blob=self.read_small_blob, only=ids)
            if actual != narrower:
                problems[name] = "corrupt"
        return problems

    def read_evidence_blob(self, sha256: str) -> bytes | None:
        """An evidence blob's bytes if this bundle holds it as a regular file hashing to its name; else None."""
        from airlift.bundle.sbom import MAX_EVIDENCE_BYTES

        try:
            fd = open_regular(self.root, str(self.store.blob_path(sha256).relative_to(self.root)))
        except (OSError, EscapeError):
            return None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_EVIDENCE_BYTES + 1)
        return data if len(data) <= MAX_EVIDENCE_BYTES and hashlib.sha256(data).hexdigest() == sha256 else None

    def evidence_problems(self, manifest: Manifest) -> dict[str, str]:
        """`{file: reason}` for an SBOM or provenance that is missing, not what the manifest pins, or disagrees with it.

        The top-level copies are checked here; verify rehashes their blobs with the others. A manifest older than the evidence (no `evidence` field) pins none: nothing to check.
        """
        if manifest.evidence is None:
            return {}
        from airlift.bundle.provenance import provenance_problems
        from airlift.bundle.sbom import MAX_EVIDENCE_BYTES, sbom_problems

        checks = {SBOM: sbom_problems, PROVENANCE: provenance_problems}
        problems = {}
        for name, pinned in evidence_pins(manifest).items():
            disagreement = checks[name]
            if self.read_evidence_blob(pinned) is None:
                continue  # verify names the blob itself; the copy is rewritten from it once it is good again
            try:
                fd = open_regular(self.root, name)
            except FileNotFoundError:
                problems[name] = "missing"
                continue
            except (OSError, EscapeError):
                problems[name] = "corrupt"
                continue
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(MAX_EVIDENCE_BYTES + 1)
            if len(data) > MAX_EVIDENCE_BYTES or hashlib.sha256(data).hexdigest() != pinned:
                problems[name] = "corrupt"
                continue
            # Pinned bytes that still disagree: a manifest and evidence made by different builds.
            found = disagreement(data, manifest)
            if manifest.evidence.artifacts_sha256 != artifacts_digest(manifest.artifacts):
                found.insert(0, "evidence.artifacts_sha256 is not the digest of the manifest's artifacts")
            if found:
                problems[name] = "disagrees with the manifest: " + "; ".join(found[:5])
        return problems

    def sums_manifest_digest(self) -> str | None:
        try:
            text = (self.root / SUMS).read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            digest, _, name = line.partition("  ")
            if name == MANIFEST:
                return digest
        return None

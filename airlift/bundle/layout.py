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

from airlift.bundle.install_sh import INSTALL_SH, INSTALL_SH_PATH
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
from airlift.util.confine import EscapeError, open_regular, read_regular
from airlift.util.errors import InputError
from airlift.util.fs import write_bytes_atomic

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
SIGNATURE = "manifest.json.sig"
SBOM = "sbom.cdx.json"  # v1.1 (airlift/bundle/sbom.py)
PROVENANCE = "provenance.json"  # v1.1 (airlift/bundle/provenance.py)
EVIDENCE_FILES = (SBOM, PROVENANCE)
# Every top-level file derived from the manifest (and the blobs it names), written before SHA256SUMS,
# which pins them. The one list: writers, checkers and every transport read it. A bundle holds only
# those that apply to it (install.sh needs tools/airlift; the SBOM and provenance need a manifest that
# pins them). The SBOM and the provenance are also blobs (pinned by the manifest's `evidence`), so they
# travel wherever blobs do; the top-level files are their readable copies.
DERIVED_FILES: tuple[str, ...] = (*LAYOUT_FILES, INSTALL_SH, *EVIDENCE_FILES)
# Every top-level small file a bundle may hold besides its manifest, in the order a transfer sends them
# (the manifest goes last, so a half-sent bundle is never taken for a whole one). Transports read this
# list and spell no name themselves: a file added here travels everywhere. At a local DEST the derived
# ones and SHA256SUMS are rewritten from the manifest (`write_sums`) rather than copied.
TOP_FILES: tuple[str, ...] = (*DERIVED_FILES, SUMS, SIGNATURE)
MAX_SUMS_BYTES = 64 << 20  # one line per blob: far beyond any real bundle


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
        # The guarded opener: a FIFO, a symlink to /dev/zero or a huge file is refused before a byte is read.
        try:
            return read_regular(self.root, MANIFEST, max_bytes=MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise ManifestError(f"{self.root}: no {MANIFEST} (not a bundle, or an unfinished one)") from None
        except EscapeError as exc:
            raise ManifestError(f"{self.manifest_path}: refused: {str(exc).rpartition(': ')[2]} (at most {MAX_MANIFEST_BYTES} bytes, a regular file)") from None

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
        for name, data in self.derived_files(manifest).items():
            write_bytes_atomic(self.root / name, data, mode=0o755 if name == INSTALL_SH else 0o644)
            lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
        # The evidence files are copies of their blobs, written only from a blob that hashes to its pin.
        for name, pinned in evidence_pins(manifest).items():
            content = self.read_evidence_blob(pinned)
            if content is not None:
                write_bytes_atomic(self.root / name, content)
                lines.append(f"{pinned}  {name}\n")
        lines.append(f"{manifest_sha256}  {MANIFEST}\n")
        write_bytes_atomic(self.root / SUMS, "".join(lines).encode())

    def locate_blob(self, sha256: str, lender: BlobStore | None = None) -> tuple[Path, bool]:
        """Where a blob is read from: this bundle's store or, for one a delta lacks, `lender`'s (then True).

        The one lending rule, for verify and for every ingest sink.
        """
        own = self.store.blob_path(sha256)
        if lender is not None and not own.exists() and lender.has(sha256):
            return lender.blob_path(sha256), True
        return own, False

    def derived_files(self, manifest: Manifest) -> dict[str, bytes]:
        """`{name: bytes}` of the OCI layout files and install.sh this bundle has (the evidence files, also derived,
        are written from their blobs by `write_sums`), in the order they are written."""
        files = layout_files(manifest, blob_size=self.blob_size, read_blob=self.read_small_blob)
        tools = manifest.artifact("tools/airlift")
        script = next((f for f in tools.files if f.path == INSTALL_SH_PATH), None) if tools is not None else None
        data = self.read_small_blob(script.sha256) if script is not None else None
        if data is not None:  # a delta that lends the blob from its store has no install.sh of its own
            files[INSTALL_SH] = data
        return files

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
            data = read_regular(self.root, str(self.store.blob_path(sha256).relative_to(self.root)), max_bytes=MAX_IMAGE_MANIFEST)
        except (OSError, EscapeError):
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
        text = self.sums_text()
        listed = {line.partition("  ")[2] for line in text.splitlines()} if text else set()
        problems = {}
        for name, expected in self.derived_files(manifest).items():
            path = self.root / name
            if not path.exists() and not path.is_symlink():
                if name in listed:
                    problems[name] = "missing"
                continue
            try:
                actual = read_regular(self.root, name, max_bytes=MAX_INDEX_BYTES)
            except (OSError, EscapeError):  # a symlink, a FIFO, a device, or too large
                problems[name] = "corrupt"
                continue
            if actual == expected:
                continue
            ids = listed_ids(actual) if name == INDEX else None
            narrower = None if ids is None else index_bytes(manifest, blob_size=self.blob_size, read_blob=self.read_small_blob, only=ids)
            if actual != narrower:
                problems[name] = "corrupt"
        return problems

    def read_evidence_blob(self, sha256: str) -> bytes | None:
        """An evidence blob's bytes if this bundle holds it as a regular file hashing to its name; else None."""
        from airlift.bundle.sbom_check import MAX_EVIDENCE_BYTES

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
        from airlift.bundle.sbom_check import MAX_EVIDENCE_BYTES, sbom_problems

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

    def sums_text(self) -> str | None:
        """SHA256SUMS as text (guarded, bounded), or None when it is absent or unreadable."""
        try:
            return read_regular(self.root, SUMS, max_bytes=MAX_SUMS_BYTES).decode()
        except (OSError, EscapeError, UnicodeDecodeError):
            return None

    def sums_manifest_digest(self) -> str | None:
        text = self.sums_text()
        if text is None:
            # Present but a symlink, a FIFO, too large or not text: a digest that matches nothing.
            return "unreadable" if os.path.lexists(self.root / SUMS) else None
        for line in text.splitlines():
            digest, _, name = line.partition("  ")
            if name == MANIFEST:
                return digest
        return None

"""A bundle on disk: `manifest.json`, `SHA256SUMS` and `blobs/sha256/<hex>`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from airlift.bundle.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError
from airlift.bundle.store import BlobStore
from airlift.util.errors import InputError
from airlift.util.fs import write_bytes_atomic

MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
SIGNATURE = "manifest.json.sig"


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

    def write_manifest(self, manifest: Manifest) -> str:
        """Write manifest.json, then SHA256SUMS (last, so its presence means the bundle is complete)."""
        data = manifest.to_bytes()
        write_bytes_atomic(self.manifest_path, data)
        self.write_sums(manifest, hashlib.sha256(data).hexdigest())
        return hashlib.sha256(data).hexdigest()

    def write_sums(self, manifest: Manifest, manifest_sha256: str) -> None:
        # Blob names are their digests, so SHA256SUMS needs no hashing; only blobs present are listed
        # (a delta bundle lends the rest from its --store).
        lines = [f"{digest}  blobs/sha256/{digest}\n" for digest in sorted(manifest.all_blobs()) if self.store.has(digest)]
        lines.append(f"{manifest_sha256}  {MANIFEST}\n")
        write_bytes_atomic(self.root / SUMS, "".join(lines).encode())

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

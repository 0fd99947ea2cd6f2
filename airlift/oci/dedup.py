"""Layer dedup by content: a map from a layer's diff_id (sha256 of the uncompressed tar) to a compressed blob.

A registry image names each layer twice: the manifest's `layers[i]` (the compressed blob) and the
config's `rootfs.diff_ids[i]` (its uncompressed content). The Docker engine knows only diff_ids. So
when an engine image (`from: docker`) is built FROM a registry image, its base layers are the same
content as blobs the cache already holds compressed; this map lets its synthesized manifest point at
those blobs instead of storing the base again, uncompressed, under another digest.

New engine layers are compressed with gzip (level 6, zlib's default), never zstd: the build
side cannot know the air-gapped registry and engine, and `docker load`, registries and runtimes older
than containerd 1.5 / Docker 23 refuse zstd layers. gzip is accepted everywhere.

The map lives in the cache (`<cache>/layers/<diff_id hex>.json`); an entry counts only while its blob
is in the store with the recorded size (the store names blobs by their verified sha256).

A registry image's config only *claims* its diff_ids: a hostile image could claim a popular base's
diff_id for a blob of its own, and an engine image built FROM that base would then ship the
attacker's layer (the blob hashes to its name, so `verify` cannot see it). So an entry learned from a
registry is unchecked until an engine image is about to use it: then its blob is decompressed once and
hashed (`confirm`), as the Docker engine does on `pull`. A layer airlift compressed itself is checked
by construction, and a checked entry replaces an unchecked one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airlift.bundle.manifest import ImageArtifact
from airlift.bundle.oci_layout import DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_TAR
from airlift.bundle.store import BlobStore, StoredBlob
from airlift.util.fs import CHUNK, write_bytes_atomic
from airlift.util.names import Digest

# Registry layer types an engine image may share, as the OCI type its manifest names them by (same bytes).
# zstd and foreign (non-distributable) layers are left out on purpose: see the module docstring.
SHAREABLE = {OCI_LAYER_GZIP: OCI_LAYER_GZIP, DOCKER_LAYER_GZIP: OCI_LAYER_GZIP, OCI_LAYER_TAR: OCI_LAYER_TAR, DOCKER_LAYER_TAR: OCI_LAYER_TAR}
GZIP_LEVEL = 6


class LayerBlob(BaseModel):
    """The compressed (or plain) blob that holds one diff_id, as an OCI layer descriptor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    media_type: str
    digest: Digest
    size: int = Field(ge=0)
    # True once the blob was seen to decompress to the diff_id (or was made from it); see the module docstring.
    checked: bool = False

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class LayerIndex:
    """diff_id -> LayerBlob, in `<cache root>/layers/`, checked against the blob store on every lookup."""

    FOLDER = "layers"  # under the cache root (fetch/cache.py CacheLayout names it from here)

    def __init__(self, root: Path, store: BlobStore) -> None:
        self.dir = Path(root) / self.FOLDER
        self.store = store

    def _path(self, diff_id: str) -> Path:
        return self.dir / f"{Digest(diff_id).hex}.json"  # ValueError unless a sha256 digest

    def lookup(self, diff_id: str, *, checked_only: bool = False) -> LayerBlob | None:
        """The blob holding `diff_id`, if it is in the store with its recorded size (and checked, if asked)."""
        try:
            entry = LayerBlob.model_validate_json(self._path(diff_id).read_bytes())
        except (FileNotFoundError, ValueError, ValidationError):
            return None
        if checked_only and not entry.checked:
            return None
        return entry if self.store.has(entry.digest.hex, entry.size) else None

    def remember(self, diff_id: str, blob: LayerBlob) -> None:
        """Record `blob` for `diff_id`, unless an entry as trusted is there (images sharing it then share bytes)."""
        known = self.lookup(diff_id)
        if known is None or (blob.checked and not known.checked):
            write_bytes_atomic(self._path(diff_id), blob.model_dump_json().encode())

    def confirm(self, diff_id: str) -> LayerBlob | None:
        """The entry for `diff_id` once its blob is seen to decompress to it; a false claim is forgotten.

        Decompresses the blob once (streaming); the result is recorded, so later uses read nothing.
        The blob's mtime is renewed too: `cache prune` keeps young blobs, and a build is about to use it.
        """
        entry = self.lookup(diff_id)
        if entry is None:
            return None
        blob_path = self.store.blob_path(entry.digest.hex)
        if not entry.checked:
            if _uncompressed_sha256(blob_path, gzipped=entry.media_type == OCI_LAYER_GZIP) != diff_id:
                self._path(diff_id).unlink(missing_ok=True)
                return None
            entry = entry.model_copy(update={"checked": True})
            write_bytes_atomic(self._path(diff_id), entry.model_dump_json().encode())
        with contextlib.suppress(OSError):  # a blob pruned meanwhile is found missing at assemble
            os.utime(blob_path)
        return entry

    def learn(self, manifest: dict, config: dict) -> int:
        """Pair `rootfs.diff_ids[i]` with `layers[i]` of a pulled image; returns how many were learned."""
        layers = manifest.get("layers") or []
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if not isinstance(layers, list) or not isinstance(diff_ids, list) or len(layers) != len(diff_ids):
            return 0
        learned = 0
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            media_type = SHAREABLE.get(layer.get("mediaType", "")) if isinstance(layer, dict) else None
            if media_type is None or not isinstance(diff_id, str):
                continue
            try:
                blob = LayerBlob(media_type=media_type, digest=layer.get("digest", ""), size=layer.get("size", -1))
                self.remember(diff_id, blob)
            except (ValueError, ValidationError):
                continue
            learned += 1
        return learned

    def learn_image(self, artifact: ImageArtifact) -> int:
        """Learn from a cached image artifact's manifest and config blobs (small reads; bad ones are skipped)."""
        image = artifact.image
        try:
            manifest = json.loads(self._read_verified(image.digest))
            config = json.loads(self._read_verified(manifest["config"]["digest"]))
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        return self.learn(manifest, config) if isinstance(config, dict) else 0

    def _read_verified(self, digest: str) -> bytes:
        data = self.store.blob_path(Digest(digest).hex).read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"blob {digest} does not hash to its name")
        return data


def _uncompressed_sha256(path: Path, *, gzipped: bool) -> str | None:
    """`sha256:<hex>` of a layer blob's uncompressed bytes; None for a gzip layer that is not whole gzip."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for piece in _gunzip(handle) if gzipped else iter(lambda: handle.read(CHUNK), b""):
                digest.update(piece)
    except zlib.error:
        return None
    return f"sha256:{digest.hexdigest()}"


def _gunzip(handle: BinaryIO) -> Iterator[bytes]:
    """The inflated bytes of every gzip member in `handle` (as `docker load` reads them), CHUNK at most at once.

    A small blob may inflate a thousandfold: output is bounded per call, so memory stays flat.

    Raises:
        zlib.error: Not whole gzip: garbage, an empty file, or a member cut short (even one missing only
            its trailer, which inflates to the right bytes here but fails `docker load`).
    """
    inflater, members, begun = zlib.decompressobj(31), 0, False  # begun: the current member has input
    while piece := handle.read(CHUNK):
        begun = True
        while piece:
            yield inflater.decompress(piece, CHUNK)
            if inflater.eof:  # a member ends; what follows is the next member
                members += 1
                piece, inflater = inflater.unused_data, zlib.decompressobj(31)
                begun = bool(piece)
            else:
                piece = inflater.unconsumed_tail
    while begun and (out := inflater.decompress(b"", CHUNK)):  # output the CHUNK bound held back
        yield out
        if inflater.eof:
            members, begun = members + 1, False
    if begun or not members:
        raise zlib.error("not whole gzip")


def gzip_layer(reader: BinaryIO, *, store: BlobStore, on_bytes: Callable[[int], None] | None = None) -> tuple[str, StoredBlob]:
    """Stream an uncompressed layer tar into the store gzip-compressed, hashing both forms in one pass.

    The gzip header carries no name and mtime 0, so the same layer compresses to the same blob again.

    Returns:
        (diff_id `sha256:<hex>` of the uncompressed bytes, the stored compressed blob).
    """
    plain = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        while piece := reader.read(CHUNK):
            plain.update(piece)
            if on_bytes:
                on_bytes(len(piece))
            if out := compressor.compress(piece):
                yield out
        yield compressor.flush()

    blob = store.put_stream(chunks())
    return f"sha256:{plain.hexdigest()}", blob

"""Fixed-size volumes for removable media (`airlift pack` / `airlift unpack`).

The blobs are streamed one after another through a writer that cuts fixed-size volume files, each
hashed while written, so packing needs no second copy of the bundle on disk. `index.json` says
where every blob lives (volume, offset, length, codec); `VOLUMES.SHA256SUMS` lets plain
`sha256sum -c` check every volume. Unpack checks each volume, names the missing and corrupt ones,
and still rebuilds every blob whose bytes all sit in intact volumes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import zstandard
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from airlift.bundle.layout import MANIFEST, MAX_SUMS_BYTES, SIGNATURE, SUMS, Bundle
from airlift.bundle.manifest import MAX_MANIFEST_BYTES
from airlift.util.confine import MAX_BLOB_BYTES, EscapeError, hash_regular, open_path, read_regular
from airlift.util.errors import InputError, IntegrityError, WorkError
from airlift.util.fs import CHUNK, IterReader, fsync_dir, write_bytes_atomic

INDEX = "index.json"
VOLUME_SUMS = "VOLUMES.SHA256SUMS"
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
# Compress only when a sample shrinks below this ratio: safetensors and compressed layers do not.
COMPRESS_WORTH = 0.9
SAMPLE = 256 * 1024
MAX_INDEX_BYTES = 256 << 20  # index.json: one placement per blob; far beyond any real bundle
MAX_SIGNATURE_BYTES = 4096
# File systems that cannot hold a file of 4 GiB or more (FAT12/16/32 as Linux mounts them).
FAT_TYPES = {"vfat", "msdos", "fat", "umsdos"}
FAT_MAX_FILE = (4 << 30) - 1


class VolumeEntry(BaseModel):
    """One volume file: its name, size and sha256 (also in VOLUMES.SHA256SUMS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^vol-\d{5}\.bin$")
    size: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BlobPlacement(BaseModel):
    """Where one blob's bytes are: (volume index, offset, length) segments, raw or zstd-compressed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=0)
    codec: Literal["raw", "zstd"]
    segments: list[tuple[int, int, int]]


class VolumeIndex(BaseModel):
    """`index.json`: hostile input on the far side, so every name, digest and segment bound is checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    volume_size: int = Field(gt=0)
    volumes: list[VolumeEntry]
    blobs: dict[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")], BlobPlacement]

    @model_validator(mode="after")
    def _bounds(self) -> VolumeIndex:
        for volume in self.volumes:
            if volume.size > self.volume_size:
                raise ValueError(f"volume {volume.name} is larger than the volume size")
        for digest, blob in self.blobs.items():
            for vol, offset, length in blob.segments:
                if not (0 <= vol < len(self.volumes) and offset >= 0 and length > 0 and offset + length <= self.volumes[vol].size):
                    raise ValueError(f"blob {digest[:12]}: segment outside its volume")
        return self


def parse_size(text: str) -> int:
    """Bytes from a size such as `4GiB`, `700MB` or `3MiB` (at least 64 KiB); InputError otherwise."""
    match = SIZE_RE.match(text)
    if not match:
        raise InputError(f"--volume-size {text!r}: expected a size such as 4GiB, 700MB or 3MiB")
    size = int(float(match[1]) * UNITS[(match[2] or "B").lower()])
    if size < 64 * 1024:
        raise InputError(f"--volume-size {text!r}: volumes must be at least 64 KiB")
    return size


class VolumeWriter:
    """Append-only byte stream cut into fixed-size volume files, each hashed as it is written."""

    def __init__(self, directory: Path, volume_size: int) -> None:
        self.directory = directory
        self.volume_size = volume_size
        self.volumes: list[VolumeEntry] = []
        self._handle = None
        self._hash = None
        self._written = 0

    def _open(self) -> None:
        name = f"vol-{len(self.volumes) + 1:05d}.bin"
        self._tmp = self.directory / f".{name}.tmp"
        self._name = name
        self._handle = open(self._tmp, "wb")  # noqa: SIM115 - closed in _close
        self._hash = hashlib.sha256()
        self._written = 0

    def _close(self) -> None:
        if self._handle is None:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self.directory / self._name)
        self.volumes.append(VolumeEntry(name=self._name, size=self._written, sha256=self._hash.hexdigest()))
        self._handle = None

    def write(self, data: bytes) -> list[list[int]]:
        """Write `data`; return its segments as [volume index, offset, length]."""
        segments: list[list[int]] = []
        view = memoryview(data)
        while view:
            if self._handle is None:
                self._open()
            room = self.volume_size - self._written
            piece = view[:room]
            self._handle.write(piece)
            self._hash.update(piece)
            if segments and segments[-1][0] == len(self.volumes) and segments[-1][1] + segments[-1][2] == self._written:
                segments[-1][2] += len(piece)
            else:
                segments.append([len(self.volumes), self._written, len(piece)])
            self._written += len(piece)
            view = view[len(piece):]
            if self._written == self.volume_size:
                self._close()
        return segments

    def finish(self) -> list[dict]:
        self._close()
        fsync_dir(self.directory)
        return self.volumes


def filesystem_type(path: Path, mounts: Path = Path("/proc/self/mounts")) -> str | None:
    """The type of the file system `path` lives on (the longest mount point above it), or None."""
    target = os.path.realpath(path)
    best, kind = "", None
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def check_target_filesystem(out: Path, volume_size: int, mounts: Path = Path("/proc/self/mounts")) -> None:
    """Refuse up front a volume size the target cannot hold (FAT32: no file of 4 GiB or more).

    Raises:
        InputError: The volumes would not fit on the target's file system (exit 2, before any is written).
    """
    kind = filesystem_type(out, mounts)
    if kind in FAT_TYPES and volume_size > FAT_MAX_FILE:
        raise InputError(f"--volume-size {volume_size}: {out} is on {kind} (FAT), which holds no file of 4 GiB or more; use --volume-size 4000MiB or less")


def _bounded(handle, size: int) -> Iterator[bytes]:  # noqa: ANN001 - a binary file
    """The file's first `size` bytes (its size when opened): a blob that grows meanwhile is cut there."""
    left = size
    while left > 0 and (chunk := handle.read(min(CHUNK, left))):
        left -= len(chunk)
        yield chunk


def _compressible(path: Path) -> bool:
    with os.fdopen(open_path(path, max_bytes=MAX_BLOB_BYTES), "rb") as handle:
        sample = handle.read(SAMPLE)
    if len(sample) < 4096:
        return False
    return len(zstandard.ZstdCompressor(level=3).compress(sample)) < COMPRESS_WORTH * len(sample)


@dataclass
class PackResult:
    volumes: int
    bytes_in: int
    bytes_out: int
    compressed_blobs: int


def pack(bundle: Bundle, *, out: Path, volume_size: int, zstd: bool = False, on_bytes: Callable[[int], None] | None = None) -> PackResult:
    """Cut the bundle's blobs into fixed-size volumes under `out`, with index.json and VOLUMES.SHA256SUMS."""
    manifest = bundle.read_manifest()
    out.mkdir(parents=True, exist_ok=True)
    check_target_filesystem(out, volume_size)
    for stale in list(out.glob("vol-*.bin")) + [out / INDEX, out / VOLUME_SUMS]:
        stale.unlink(missing_ok=True)
    writer = VolumeWriter(out, volume_size)
    blobs: dict[str, BlobPlacement] = {}
    bytes_in = compressed = 0
    declared = {f.sha256: f.size for a in manifest.artifacts for f in a.files}
    for digest in sorted(manifest.all_blobs()):
        path = bundle.store.blob_path(digest)
        if not os.path.lexists(path):
            continue  # a delta bundle: this blob travels with the older one
        codec = "zstd" if zstd and _compressible(path) else "raw"
        segments: list[list[int]] = []
        with os.fdopen(open_path(path, size=declared.get(digest), max_bytes=MAX_BLOB_BYTES), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if codec == "zstd":
                compressor = zstandard.ZstdCompressor(level=3).compressobj()
                for chunk in _bounded(handle, size):
                    segments += writer.write(compressor.compress(chunk))
                    if on_bytes:
                        on_bytes(len(chunk))
                segments += writer.write(compressor.flush())
                compressed += 1
            else:
                for chunk in _bounded(handle, size):
                    segments += writer.write(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
        bytes_in += size
        blobs[digest] = BlobPlacement(size=size, codec=codec, segments=[tuple(s) for s in _merge(segments)])
    volumes = writer.finish()
    limits = {MANIFEST: MAX_MANIFEST_BYTES, SUMS: MAX_SUMS_BYTES, SIGNATURE: MAX_SIGNATURE_BYTES}
    for name in (MANIFEST, SUMS, SIGNATURE):
        if os.path.lexists(bundle.root / name):
            write_bytes_atomic(out / name, _small(bundle.root, name, limits[name]))
    index = VolumeIndex(volume_size=volume_size, volumes=volumes, blobs=blobs)
    write_bytes_atomic(out / INDEX, index.model_dump_json(indent=1).encode())
    sums = [f"{v.sha256}  {v.name}\n" for v in volumes]
    for name in (INDEX, MANIFEST, SUMS, SIGNATURE):
        if (out / name).exists():
            sums.append(f"{hashlib.sha256((out / name).read_bytes()).hexdigest()}  {name}\n")
    write_bytes_atomic(out / VOLUME_SUMS, "".join(sums).encode())
    return PackResult(len(volumes), bytes_in, sum(v.size for v in volumes), compressed)


def _merge(segments: list[list[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for vol, offset, length in segments:
        if length == 0:
            continue
        if merged and merged[-1][0] == vol and merged[-1][1] + merged[-1][2] == offset:
            merged[-1][2] += length
        else:
            merged.append([vol, offset, length])
    return merged


# -- unpack -----------------------------------------------------------------------------------------
@dataclass
class UnpackResult:
    recovered: int = 0
    already: int = 0
    missing_volumes: list[str] = field(default_factory=list)
    corrupt_volumes: list[str] = field(default_factory=list)
    lost_blobs: list[str] = field(default_factory=list)
    lost_artifacts: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing_volumes or self.corrupt_volumes or self.lost_blobs)


def read_index(directory: Path) -> VolumeIndex:
    """Parse and validate index.json as hostile input: names, digests and segment bounds.

    Raises:
        InputError: There is no index, or it is invalid (exit 2, naming the file and the problem).
    """
    path = directory / INDEX
    try:
        data = read_regular(directory, INDEX, max_bytes=MAX_INDEX_BYTES)  # a FIFO index.json must not hang unpack
    except FileNotFoundError:
        raise InputError(f"{directory}: no {INDEX}; not a packed bundle") from None
    except EscapeError as exc:
        raise InputError(f"{path}: refused: {str(exc).rpartition(': ')[2]}") from None
    try:
        return VolumeIndex.model_validate_json(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InputError(f"{path}: invalid index: {where}: {error['msg']}") from None


def _volume_state(directory: Path, volume: VolumeEntry) -> str | None:
    try:
        return None if hash_regular(directory / volume.name, size=volume.size) == volume.sha256 else "corrupt"
    except FileNotFoundError:
        return "missing"
    except EscapeError:  # a symlink, a FIFO, a device, or not the size the index says
        return "corrupt"


def _segments(directory: Path, volumes: list[VolumeEntry], segments: list[tuple[int, int, int]]) -> Iterator[bytes]:
    for vol, offset, length in segments:
        with os.fdopen(open_path(directory / volumes[vol].name, size=volumes[vol].size), "rb") as handle:
            handle.seek(offset)
            remaining = length
            while remaining:
                chunk = handle.read(min(CHUNK, remaining))
                if not chunk:
                    raise WorkError(f"{volumes[vol].name}: shorter than its index says")
                remaining -= len(chunk)
                yield chunk


def _small(directory: Path, name: str, limit: int) -> bytes:
    """A small file of the volume set (manifest, signature), through the guarded opener."""
    try:
        return read_regular(directory, name, max_bytes=limit)
    except EscapeError as exc:
        raise InputError(f"{directory / name}: refused: {str(exc).rpartition(': ')[2]}") from None


def _at_most(chunks: Iterator[bytes], limit: int, digest: str) -> Iterator[bytes]:
    """Pass chunks through until `limit` bytes; one byte more is a lie about the size (or a bomb)."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise IntegrityError(f"blob {digest[:12]}: expands beyond its declared {limit} bytes; stopped there")
        yield chunk


def unpack(directory: Path, out: Path) -> UnpackResult:
    """Rebuild a bundle from volumes: name missing and corrupt volumes, recover every intact blob."""
    index = read_index(directory)
    volumes = index.volumes
    result = UnpackResult()
    bad: set[int] = set()
    for number, volume in enumerate(volumes):
        state = _volume_state(directory, volume)
        if state:
            bad.add(number)
            (result.missing_volumes if state == "missing" else result.corrupt_volumes).append(volume.name)
    bundle = Bundle(out)
    bundle.store.ensure_dirs()
    for digest, blob in sorted(index.blobs.items()):
        if bundle.store.has(digest, blob.size):
            result.already += 1
            continue
        if any(vol in bad for vol, _, _ in blob.segments):
            result.lost_blobs.append(digest)
            continue
        stream = _segments(directory, volumes, blob.segments)
        if blob.codec == "zstd":
            stream = zstandard.ZstdDecompressor().read_to_iter(IterReader(stream), read_size=CHUNK)
        try:
            bundle.store.put_stream(_at_most(stream, blob.size, digest), expected_sha256=digest, label=f"blob {digest[:12]}")
        except (IntegrityError, zstandard.ZstdError) as exc:
            # One bad blob (a bomb, bytes that hash wrong) is recorded; the others are still recovered.
            result.lost_blobs.append(digest)
            result.failures[digest] = str(exc)
            continue
        result.recovered += 1
    manifest_path = directory / MANIFEST
    if os.path.lexists(manifest_path):
        write_bytes_atomic(out / MANIFEST, _small(directory, MANIFEST, MAX_MANIFEST_BYTES))
        if os.path.lexists(directory / SIGNATURE):
            write_bytes_atomic(out / SIGNATURE, _small(directory, SIGNATURE, MAX_SIGNATURE_BYTES))
        manifest = bundle.read_manifest()
        bundle.write_sums(manifest, bundle.manifest_sha256())
        lost = set(result.lost_blobs)
        for artifact in manifest.artifacts:
            hit = sorted({f.path for f in artifact.files if f.sha256 in lost} | {f"blob {b[7:19]}" for b in artifact.blobs if b.hex in lost})
            if hit:
                result.lost_artifacts[artifact.id] = hit
    bundle.store.cleanup_tmp()
    return result

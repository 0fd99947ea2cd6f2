"""pack / unpack: fixed-size, independently checksummed volumes for removable media."""

from __future__ import annotations

from airlift_tasks.pack import pack_task, unpack_task
from prefect import flow

from airlift.bundle.volumes import PackResult, UnpackResult


@flow(name="pack-bundle")
def pack_flow(bundle: str, out: str, volume_size: int, zstd: bool = False) -> PackResult:
    """Stream `bundle`'s blobs into volumes of `volume_size` bytes under `out`, with an index and checksums.

    Args:
        bundle: Bundle directory.
        out: Directory for the volumes.
        volume_size: Bytes per volume (the last one may be smaller).
        zstd: Compress blobs that a sample shows to be compressible (never safetensors or compressed layers).
    """
    return pack_task(bundle=bundle, out=out, volume_size=volume_size, zstd=zstd)


@flow(name="unpack-bundle")
def unpack_flow(directory: str, out: str) -> UnpackResult:
    """Rebuild a bundle from volumes, naming missing or corrupt volumes and recovering every intact blob."""
    return unpack_task(directory=directory, out=out)

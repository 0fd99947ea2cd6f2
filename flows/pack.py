"""pack / unpack: fixed-size, independently checksummed volumes for removable media."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from airlift.bundle.layout import Bundle
from airlift.bundle.volumes import PackResult, UnpackResult, pack, unpack
from tasks.common import ProgressLog


@task(name="pack-volumes", task_run_name="pack {bundle}")
def pack_task(*, bundle: str, out: str, volume_size: int, zstd: bool) -> PackResult:
    return pack(Bundle(bundle), Path(out), volume_size, zstd=zstd, on_bytes=ProgressLog(f"pack {bundle}", None))


@task(name="unpack-volumes", task_run_name="unpack {directory}")
def unpack_task(*, directory: str, out: str) -> UnpackResult:
    return unpack(Path(directory), Path(out))


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

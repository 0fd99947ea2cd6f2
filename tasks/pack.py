"""Pack and unpack tasks: a bundle into fixed-size, checksummed volumes for removable media, and back."""

from __future__ import annotations

from pathlib import Path

from airlift_tasks.common import ProgressLog, manifest_bytes
from prefect import task

from airlift.bundle.layout import Bundle
from airlift.bundle.volumes import PackResult, UnpackResult, pack, unpack


@task(name="pack-volumes", task_run_name="pack {bundle}")
def pack_task(*, bundle: str, out: str, volume_size: int, zstd: bool) -> PackResult:
    """Stream the bundle's blobs into volumes of `volume_size` bytes under `out`."""
    return pack(Bundle(bundle), out=Path(out), volume_size=volume_size, zstd=zstd, on_bytes=ProgressLog(f"pack {bundle}", manifest_bytes(Bundle(bundle).read_manifest())))


@task(name="unpack-volumes", task_run_name="unpack {directory}")
def unpack_task(*, directory: str, out: str) -> UnpackResult:
    """Rebuild a bundle from volumes, recovering every blob whose volumes are intact."""
    return unpack(Path(directory), Path(out))

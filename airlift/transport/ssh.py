"""Bundles over ssh, with rsync: only missing blobs are sent, partial files are kept for resume, and
the blobs sent are hashed on the far side before the manifest is sent last."""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from airlift.bundle.layout import MANIFEST, SIGNATURE, SUMS, Bundle
from airlift.bundle.manifest import Manifest
from airlift.bundle.verify import verify_bundle
from airlift.transport.location import Location, blob_sizes
from airlift.util.errors import InputError, WorkError
from airlift.util.fs import write_bytes_atomic
from airlift.util.net import with_transient_retries
from airlift.util.proc import run

PARTIAL_DIR = ".rsync-partial"


@dataclass(frozen=True)
class SshOptions:
    key: str | None = None
    options: tuple[str, ...] = field(default_factory=tuple)  # KEY=VALUE, passed as -o

    def ssh_argv(self, location: Location) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes"]
        if location.port:
            argv += ["-p", str(location.port)]
        if self.key:
            argv += ["-i", self.key]
        for option in self.options:
            if "=" not in option:
                raise InputError(f"--ssh-option {option!r}: expected KEY=VALUE")
            argv += ["-o", option]
        return argv


def _target(location: Location) -> str:
    return f"{location.user}@{location.host}" if location.user else location.host


# ssh exits 255 on connection problems; rsync 10/12/30/35 are socket, protocol-stream and timeout errors.
_TRANSIENT_EXITS = {255, 10, 12, 30, 35}
ATTEMPTS = 6


def _run(argv: list[str], what: str, *, input_text: str | None = None) -> str:
    # The one retry layer for ssh and rsync: rsync --partial makes a retry resume, not restart.
    return with_transient_retries(
        what, attempts=ATTEMPTS, action=lambda: run(argv, what=what, input_text=input_text, transient=lambda code, _stderr: code in _TRANSIENT_EXITS),
    )


def remote(location: Location, opts: SshOptions, command: str, *, input_text: str | None = None) -> str:
    return _run([*opts.ssh_argv(location), _target(location), command], f"ssh {location.host}", input_text=input_text)


def remote_inventory(location: Location, opts: SshOptions) -> dict[str, int]:
    blobs = shlex.quote(f"{location.path.rstrip('/')}/blobs/sha256")
    out = remote(location, opts, f"mkdir -p {blobs} && find {blobs} -maxdepth 1 -type f -printf '%f %s\\n'")
    found = {}
    for line in out.splitlines():
        name, _, size = line.partition(" ")
        if len(name) == 64 and size.isdigit():
            found[name] = int(size)
    return found


def _rsync(opts: SshOptions, location: Location, sources: list[str], dest: str, files: list[str], *, what: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".files") as listing:
        listing.write("".join(f"{name}\n" for name in files))
        listing.flush()
        argv = [
            "rsync", "-a", "--partial", f"--partial-dir={PARTIAL_DIR}", "--files-from", listing.name,
            "-e", shlex.join(opts.ssh_argv(location)), *sources, dest,
        ]
        _run(argv, what)


def push(src: Bundle, location: Location, opts: SshOptions) -> tuple[list[str], int, int]:
    """Send what DEST lacks; returns (digests sent, bytes sent, blobs already there)."""
    manifest = src.read_manifest()
    carried = blob_sizes(manifest, src)
    present = remote_inventory(location, opts)
    missing = sorted(d for d, (_, size) in carried.items() if present.get(d) != size)
    dest = f"{_target(location)}:{location.path.rstrip('/')}/"
    if missing:
        _rsync(opts, location, [f"{src.root}/"], dest, [f"blobs/sha256/{d}" for d in missing], what=f"rsync to {location.text}")
        _check_remote_hashes(location, opts, missing)
    small = [name for name in (SUMS, SIGNATURE) if (src.root / name).exists()]
    _rsync(opts, location, [f"{src.root}/"], dest, small + [MANIFEST], what=f"rsync manifest to {location.text}")
    after = remote_inventory(location, opts)
    lost = [d for d, (_, size) in carried.items() if after.get(d) != size]
    if lost:
        raise WorkError(f"verification at {location.text} failed: {len(lost)} blobs missing or short, e.g. {lost[0]}")
    return missing, sum(carried[d][1] for d in missing), len(carried) - len(missing)


def _check_remote_hashes(location: Location, opts: SshOptions, digests: list[str]) -> None:
    """Hash the blobs just sent on the far side (sha256sum there), so DEST is verified where it lives."""
    root = shlex.quote(location.path.rstrip("/"))
    out = remote(location, opts, f"cd {root} && xargs -0 sha256sum --", input_text="\0".join(f"blobs/sha256/{d}" for d in digests))
    bad = []
    for line in out.splitlines():
        digest, _, name = line.partition("  ")
        if name.rsplit("/", 1)[-1] != digest:
            bad.append(name)
    if bad or len(out.splitlines()) != len(digests):
        raise WorkError(f"verification at {location.text} failed: {', '.join(bad) or 'not every blob was hashed'}")


def pull(location: Location, dest: Path, opts: SshOptions) -> tuple[list[str], int, int]:
    """Fetch a bundle from a remote directory into DEST, sending only what DEST lacks."""
    root = location.path.rstrip("/")
    manifest_bytes = remote(location, opts, f"cat {shlex.quote(root + '/' + MANIFEST)}").encode()

    manifest = Manifest.parse(manifest_bytes, origin=f"{location.text}/{MANIFEST}")
    bundle = Bundle(dest)
    offered = remote_inventory(location, opts)
    wanted = {d for a in manifest.artifacts for d in a.all_blobs() if d in offered}
    bundle.store.ensure_dirs()
    missing = sorted(d for d in wanted if not bundle.store.has(d, offered[d]))
    source = f"{_target(location)}:{root}/"
    if missing:
        _rsync(opts, location, [source], f"{dest}/", [f"blobs/sha256/{d}" for d in missing], what=f"rsync from {location.text}")
    signature = remote(location, opts, f"test -f {shlex.quote(root + '/' + SIGNATURE)} && cat {shlex.quote(root + '/' + SIGNATURE)} || true")
    if signature.strip():
        write_bytes_atomic(dest / SIGNATURE, signature.encode())
    write_bytes_atomic(dest / MANIFEST, manifest_bytes)
    bundle.write_sums(manifest, bundle.manifest_sha256())
    already = set(wanted) - set(missing)
    report = verify_bundle(bundle, trusted=already)  # the blobs just received are rehashed here
    if not report.ok:
        raise WorkError("verification at destination failed: " + "; ".join(p.describe() for p in report.problems))
    return missing, sum(offered[d] for d in missing), len(already)

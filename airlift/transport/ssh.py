"""Bundles over ssh, with rsync: only missing blobs are sent, partial files are kept for resume, and
the blobs sent are hashed on the far side before the manifest is sent last.

A blob already at an ssh DEST counts when the stamp airlift recorded there (`.airlift/verified.json`,
written after the far side hashed it) still matches its device, inode, size and mtime, which `find`
reports; otherwise it is hashed there with `sha256sum`. `--recheck` hashes every one. A damaged blob is
moved aside to `.corrupt/` on the far side and sent again.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from airlift.bundle.layout import MANIFEST, SIGNATURE, SUMS, TOP_LEVEL_FILES, Bundle
from airlift.bundle.manifest import Manifest
from airlift.bundle.stamps import STAMPS, Stamp, parse_stamps, render_stamps
from airlift.bundle.store import SHA256_RE
from airlift.transport.location import (
    Location,
    TransferPlan,
    TransferResult,
    blob_sizes,
    check_dest,
    lent_blobs,
    require_whole,
)
from airlift.transport.proof import prove_local
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


def _run(argv: list[str], what: str, *, input_text: str | None = None) -> str:
    # The one retry layer for ssh and rsync: rsync --partial makes a retry resume, not restart.
    return with_transient_retries(
        what, action=lambda: run(argv, what=what, input_text=input_text, transient=lambda code, _stderr: code in _TRANSIENT_EXITS),
    )


def remote(location: Location, opts: SshOptions, command: str, *, input_text: str | None = None) -> str:
    return _run([*opts.ssh_argv(location), _target(location), command], f"ssh {location.host}", input_text=input_text)


_STAT = "%f %D %i %s %T@\\n"  # name, device, inode, size, mtime (seconds, fraction to the nanosecond)
_MARK = "--airlift-stamps--"
_BATCH = 2000  # names per remote command: well inside ARG_MAX for `find` and `sha256sum`


def _stamp(fields: list[str]) -> Stamp | None:
    """(device, inode, size, mtime_ns) from `find -printf '%D %i %s %T@'` fields."""
    if len(fields) != 4 or not all(f.isdigit() for f in fields[:3]):
        return None
    seconds, _, fraction = fields[3].partition(".")
    if not seconds.isdigit() or not (fraction.isdigit() or fraction == ""):
        return None
    return (int(fields[0]), int(fields[1]), int(fields[2]), int(seconds) * 10**9 + int(fraction[:9].ljust(9, "0")))


def _parse_listing(text: str, tag: str = "") -> dict[str, Stamp]:
    found: dict[str, Stamp] = {}
    for line in text.splitlines():
        fields = line.split()
        if tag:
            if not fields or fields[0] != tag:
                continue
            fields = fields[1:]
        if len(fields) == 5 and SHA256_RE.match(fields[0]) and (stamp := _stamp(fields[1:])) is not None:
            found[fields[0]] = stamp
    return found


def remote_state(location: Location, opts: SshOptions, *, create: bool) -> tuple[dict[str, Stamp], dict[str, Stamp]]:
    """The remote bundle's blobs with their stamps as they are now, and the stamps recorded there.

    Args:
        location: The remote bundle.
        opts: ssh options.
        create: Create the blob directory first (the remote side is the destination).
    """
    root = location.path.rstrip("/")
    blobs = shlex.quote(f"{root}/blobs/sha256")
    listing = f"find {blobs} -maxdepth 1 -type f -printf '{_STAT}'"
    # The destination's blob directory is created; a source's is only read (it may be read-only).
    listing = f"mkdir -p {blobs} && {listing}" if create else f"{{ test ! -d {blobs} || {listing}; }}"
    out = remote(location, opts, f"{listing} && echo {_MARK} && {{ cat {shlex.quote(f'{root}/{STAMPS}')} 2>/dev/null || true; }}")
    found, _, recorded = out.partition(f"{_MARK}\n")
    return _parse_listing(found), parse_stamps(recorded.encode())


def remote_inventory(location: Location, opts: SshOptions) -> dict[str, int]:
    """The remote bundle's blobs with their sizes."""
    return {d: stamp[2] for d, stamp in remote_state(location, opts, create=False)[0].items()}


def remote_hash(location: Location, opts: SshOptions, digests: list[str]) -> dict[str, Stamp | None]:
    """Hash blobs on the far side with `sha256sum`, each between two `find` stats.

    Returns:
        For each blob that hashes to its name: its stamp, or None when it changed while it was hashed.
        Blobs that are missing or fail their hash are left out.
    """
    root = shlex.quote(location.path.rstrip("/"))
    before, after = (f"find \"$@\" -maxdepth 0 -printf '{tag} {_STAT}' 2>/dev/null" for tag in ("B", "A"))
    script = f"cd {root} || exit 3; set -- $(cat); {before}; sha256sum -- \"$@\" 2>/dev/null; {after}; true"
    proven: dict[str, Stamp | None] = {}
    for start in range(0, len(digests), _BATCH):
        batch = digests[start:start + _BATCH]
        out = remote(location, opts, script, input_text="".join(f"blobs/sha256/{d}\n" for d in batch))
        first, last = _parse_listing(out, "B"), _parse_listing(out, "A")
        wanted = set(batch)
        for line in out.splitlines():
            digest, _, name = line.partition("  ")
            if name == f"blobs/sha256/{digest}" and digest in wanted:
                proven[digest] = first.get(digest) if first.get(digest) == last.get(digest) else None
    return proven


def _set_aside(location: Location, opts: SshOptions, digests: list[str]) -> None:
    """Move damaged blobs to `.corrupt/` on the far side, as `airlift verify` does locally.

    A blob a retried command already moved is simply gone; one that cannot be moved is overwritten by
    the send or, failing that, fails the hash that follows it.
    """
    root = shlex.quote(location.path.rstrip("/"))
    remote(location, opts, f"cd {root} && mkdir -p .corrupt && for d in $(cat); do mv -f blobs/sha256/$d .corrupt/$d 2>/dev/null || :; done",
           input_text="".join(f"{d}\n" for d in digests))


def _write_stamps(location: Location, opts: SshOptions, stamps: Mapping[str, Stamp]) -> None:
    """Replace the far side's stamp file (temp file, then rename)."""
    target = shlex.quote(f"{location.path.rstrip('/')}/{STAMPS}")
    directory = shlex.quote(f"{location.path.rstrip('/')}/.airlift")
    remote(location, opts, f"mkdir -p {directory} && cat > {target}.$$.tmp && mv -f {target}.$$.tmp {target}",
           input_text=render_stamps(stamps).decode())


def _rsync(opts: SshOptions, location: Location, sources: list[str], dest: str, files: list[str], *, what: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".files") as listing:
        listing.write("".join(f"{name}\n" for name in files))
        listing.flush()
        argv = [
            "rsync", "-a", "--partial", f"--partial-dir={PARTIAL_DIR}", "--files-from", listing.name,
            "-e", shlex.join(opts.ssh_argv(location)), *sources, dest,
        ]
        _run(argv, what)


def push(src: Bundle, location: Location, opts: SshOptions, *, recheck: bool = False) -> TransferResult:
    """Send what DEST cannot prove it holds, hash what was sent on the far side, then send the manifest.

    Args:
        src: The local bundle.
        location: The remote directory.
        opts: ssh options.
        recheck: Hash every blob already at DEST, whatever its stamp says.

    Returns:
        What was sent, proven present, re-sent and left to a delta's lineage.

    Raises:
        WorkError: A blob failed its hash at DEST after it was sent, or went missing.
    """
    manifest = src.read_manifest()
    carried = blob_sizes(manifest, src)
    lent = lent_blobs(manifest, carried)
    require_whole(manifest, set(carried) | lent, where=str(src.root))
    now, recorded = remote_state(location, opts, create=True)
    proven, damaged, to_hash = set(), set(), []
    for digest, (_, size) in carried.items():
        if digest not in now:
            continue
        if now[digest][2] != size:
            damaged.add(digest)
        elif not recheck and recorded.get(digest) == now[digest]:
            proven.add(digest)
        else:
            to_hash.append(digest)
    observed = {d: stamp for d, stamp in recorded.items() if d in proven}
    hashed = remote_hash(location, opts, to_hash) if to_hash else {}
    for digest in to_hash:
        if hashed.get(digest) is not None:
            proven.add(digest)
            observed[digest] = hashed[digest]
        else:
            damaged.add(digest)
    if damaged:
        _set_aside(location, opts, sorted(damaged))
    missing = sorted(set(carried) - proven)
    dest = f"{_target(location)}:{location.path.rstrip('/')}/"
    if missing:
        _rsync(opts, location, [f"{src.root}/"], dest, [f"blobs/sha256/{d}" for d in missing], what=f"rsync to {location.text}")
        sent = remote_hash(location, opts, missing)
        bad = [d for d in missing if d not in sent]
        if bad:
            raise WorkError(f"verification at {location.text} failed: {len(bad)} blobs sent do not hash to their names, e.g. {bad[0]}")
        observed |= {d: stamp for d, stamp in sent.items() if stamp is not None}
    small = [name for name in (*TOP_LEVEL_FILES, SUMS, SIGNATURE) if (src.root / name).exists()]  # SHA256SUMS names the derived top-level files
    _rsync(opts, location, [f"{src.root}/"], dest, small + [MANIFEST], what=f"rsync manifest to {location.text}")
    after, _ = remote_state(location, opts, create=False)
    lost = [d for d, (_, size) in carried.items() if d not in after or after[d][2] != size]
    if lost:
        raise WorkError(f"verification at {location.text} failed: {len(lost)} blobs missing or short, e.g. {lost[0]}")
    _write_stamps(location, opts, {d: stamp for d, stamp in observed.items() if after.get(d) == stamp})
    plan = TransferPlan(manifest, src.manifest_bytes(), {d: carried[d] for d in missing}, len(carried) - len(missing), damaged=len(damaged), lent=lent)
    return plan.result(location.text, sent=missing)


def pull(location: Location, dest: Path, opts: SshOptions, *, recheck: bool = False) -> TransferResult:
    """Fetch a bundle from a remote directory into DEST, sending only what DEST cannot prove it holds.

    Args:
        location: The remote bundle.
        dest: The local destination directory.
        opts: ssh options.
        recheck: Rehash every blob DEST holds, whatever its stamp says.

    Returns:
        What was received, proven present, re-sent and left to a delta's lineage.

    Raises:
        WorkError: DEST does not verify after the transfer.
    """
    root = location.path.rstrip("/")
    manifest_bytes = remote(location, opts, f"cat {shlex.quote(root + '/' + MANIFEST)}").encode()
    manifest = Manifest.parse(manifest_bytes, origin=f"{location.text}/{MANIFEST}")
    bundle = Bundle(dest)
    offered = remote_inventory(location, opts)
    carried: dict[str, tuple[str, int]] = {}
    for artifact in manifest.artifacts:
        for digest in sorted(artifact.all_blobs()):
            if digest in offered and digest not in carried:
                carried[digest] = (artifact.id, offered[digest])
    for digest in sorted(manifest.all_blobs() - set(carried)):  # v1.1: the SBOM and provenance blobs
        if digest in offered:
            carried[digest] = ("evidence", offered[digest])
    proof = prove_local(dest, {d: v[1] for d, v in carried.items()}, recheck=recheck)
    missing = sorted(set(carried) - proof.proven)
    bundle.store.ensure_dirs()
    if missing:
        _rsync(opts, location, [f"{_target(location)}:{root}/"], f"{dest}/", [f"blobs/sha256/{d}" for d in missing], what=f"rsync from {location.text}")
    # rsync checks its own transfer; rehash here anyway, which also stamps what arrived.
    received = prove_local(dest, {d: carried[d][1] for d in missing}, recheck=True)
    if received.damaged or received.absent:
        bad = sorted(received.damaged | received.absent)
        raise WorkError(f"verification at {dest} failed: {len(bad)} blobs received missing or damaged, e.g. {bad[0]}")
    signature = remote(location, opts, f"test -f {shlex.quote(root + '/' + SIGNATURE)} && cat {shlex.quote(root + '/' + SIGNATURE)} || true")
    if signature.strip():
        write_bytes_atomic(dest / SIGNATURE, signature.encode())
    write_bytes_atomic(dest / MANIFEST, manifest_bytes)
    bundle.write_sums(manifest, bundle.manifest_sha256())
    plan = TransferPlan(
        manifest, manifest_bytes, {d: carried[d] for d in missing}, len(proof.proven),
        proven=proof.proven | received.proven, damaged=len(proof.damaged), lent=lent_blobs(manifest, carried),
    )
    check_dest(bundle, proven=plan.proven, lent=plan.lent, where=str(dest))
    return plan.result(str(dest), sent=missing)

"""Bundles over ssh, with rsync: only missing blobs are sent, partial files are kept for resume, and
the blobs sent are hashed on the far side before the manifest is sent last.

A blob already at an ssh DEST counts when the stamp airlift recorded there (`.airlift/verified.json`,
written after the far side hashed it) still matches its device, inode, size and mtime, which `find`
reports; otherwise it is hashed there with `sha256sum`. `--recheck` hashes every one. A damaged blob is
moved aside to `.corrupt/` on the far side and sent again.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from airlift.bundle.layout import MANIFEST, TOP_FILES, Bundle
from airlift.bundle.stamps import STAMPS, Stamp, parse_stamps, render_stamps
from airlift.bundle.store import SHA256_RE
from airlift.transport.base import Endpoint, OnBytes, Proof, TransferPlan
from airlift.transport.proof import prove_local
from airlift.util.errors import InputError, WorkError
from airlift.util.net import with_transient_retries
from airlift.util.proc import run

SSH_RE = re.compile(r"^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)$")

PARTIAL_DIR = ".rsync-partial"


@dataclass(frozen=True)
class SshPlace:
    """Where a remote bundle is: `ssh://[user@]host[:port]/abs/path`."""

    text: str
    host: str
    path: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str, *, argument: str) -> SshPlace:
        match = SSH_RE.match(text)
        if not match:
            raise InputError(f"{argument}: {text!r} is not ssh://[user@]host[:port]/abs/path")
        return cls(text, match["host"], match["path"], match["user"], int(match["port"]) if match["port"] else None)


@dataclass(frozen=True)
class SshOptions:
    key: str | None = None
    options: tuple[str, ...] = field(default_factory=tuple)  # KEY=VALUE, passed as -o

    def ssh_argv(self, location: SshPlace) -> list[str]:
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


def _target(location: SshPlace) -> str:
    return f"{location.user}@{location.host}" if location.user else location.host


# ssh exits 255 on connection problems; rsync 10/12/30/35 are socket, protocol-stream and timeout errors.
_TRANSIENT_EXITS = {255, 10, 12, 30, 35}


def _run(argv: list[str], what: str, *, input_text: str | None = None) -> str:
    # The one retry layer for ssh and rsync: rsync --partial makes a retry resume, not restart.
    return with_transient_retries(
        what, action=lambda: run(argv, what=what, input_text=input_text, transient=lambda code, _stderr: code in _TRANSIENT_EXITS),
    )


def remote(location: SshPlace, opts: SshOptions, command: str, *, input_text: str | None = None) -> str:
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


def remote_state(location: SshPlace, opts: SshOptions, *, create: bool) -> tuple[dict[str, Stamp], dict[str, Stamp]]:
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


def remote_hash(location: SshPlace, opts: SshOptions, digests: list[str]) -> dict[str, Stamp | None]:
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


def _set_aside(location: SshPlace, opts: SshOptions, digests: list[str]) -> None:
    """Move damaged blobs to `.corrupt/` on the far side, as `airlift verify` does locally.

    A blob a retried command already moved is simply gone; one that cannot be moved is overwritten by
    the send or, failing that, fails the hash that follows it.
    """
    root = shlex.quote(location.path.rstrip("/"))
    remote(location, opts, f"cd {root} && mkdir -p .corrupt && for d in $(cat); do mv -f blobs/sha256/$d .corrupt/$d 2>/dev/null || :; done",
           input_text="".join(f"{d}\n" for d in digests))


def _write_stamps(location: SshPlace, opts: SshOptions, stamps: Mapping[str, Stamp]) -> None:
    """Replace the far side's stamp file (temp file, then rename)."""
    target = shlex.quote(f"{location.path.rstrip('/')}/{STAMPS}")
    directory = shlex.quote(f"{location.path.rstrip('/')}/.airlift")
    remote(location, opts, f"mkdir -p {directory} && cat > {target}.$$.tmp && mv -f {target}.$$.tmp {target}",
           input_text=render_stamps(stamps).decode())


def _rsync(opts: SshOptions, location: SshPlace, sources: list[str], dest: str, files: list[str], *, what: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".files") as listing:
        listing.write("".join(f"{name}\n" for name in files))
        listing.flush()
        argv = [
            "rsync", "-a", "--partial", f"--partial-dir={PARTIAL_DIR}", "--files-from", listing.name,
            "-e", shlex.join(opts.ssh_argv(location)), *sources, dest,
        ]
        _run(argv, what)


class SshEndpoint:
    """A bundle directory on another host, reached with ssh and rsync."""

    def __init__(self, text: str, *, argument: str, opts: SshOptions | None = None) -> None:
        self.place = SshPlace.parse(text, argument=argument)
        self.text = text
        self.opts = opts or SshOptions()
        self.root = self.place.path.rstrip("/")

    def __repr__(self) -> str:
        return f"SshEndpoint({self.text!r})"

    def _remote(self, command: str, *, input_text: str | None = None) -> str:
        return remote(self.place, self.opts, command, input_text=input_text)

    def _rsync_files(self, sources: list[str], dest: str, files: list[str], *, what: str) -> None:
        _rsync(self.opts, self.place, sources, dest, files, what=what)

    def prepare(self, *, as_dest: bool) -> None:
        """Nothing to check before the first command: ssh's own errors name the host (and the
        destination's blob directory is created by the listing that proves what it holds)."""

    def read_manifest(self) -> bytes:
        return self._remote(f"cat {shlex.quote(self.root + '/' + MANIFEST)}").encode()

    def read_small(self, name: str) -> bytes | None:
        path = shlex.quote(f"{self.root}/{name}")
        out = self._remote(f"test -f {path} && cat {path} || true")
        return out.encode() if out.strip() else None

    def list_blobs(self) -> dict[str, int]:
        return {d: stamp[2] for d, stamp in remote_state(self.place, self.opts, create=False)[0].items()}

    def prove(self, wanted: Mapping[str, int], *, recheck: bool = False) -> Proof:
        """Proven by the far side's stamp (still matching what `find` reports) or by `sha256sum` there; damaged ones moved aside there."""
        now, recorded = remote_state(self.place, self.opts, create=True)
        proof = Proof()
        to_hash = []
        for digest, size in wanted.items():
            if digest not in now:
                proof.absent.add(digest)
            elif now[digest][2] != size:
                proof.damaged.add(digest)
            elif not recheck and recorded.get(digest) == now[digest]:
                proof.proven.add(digest)
                proof.stamps[digest] = now[digest]
            else:
                to_hash.append(digest)
        hashed = remote_hash(self.place, self.opts, to_hash) if to_hash else {}
        for digest in to_hash:
            if (stamp := hashed.get(digest)) is not None:
                proof.proven.add(digest)
                proof.stamps[digest] = stamp
            else:
                proof.damaged.add(digest)
        if proof.damaged:
            _set_aside(self.place, self.opts, sorted(proof.damaged))
        return proof

    def put_blobs(self, src: Bundle, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
        """rsync the blobs (partial files kept for resume), then hash them on the far side."""
        digests = list(digests)
        if not digests:
            return {}
        dest = f"{_target(self.place)}:{self.root}/"
        self._rsync_files([f"{src.root}/"], dest, [f"blobs/sha256/{d}" for d in digests], what=f"rsync to {self.text}")
        sent = remote_hash(self.place, self.opts, digests)
        bad = [d for d in digests if d not in sent]
        if bad:
            raise WorkError(f"verification at {self.text} failed: {len(bad)} blobs sent do not hash to their names, e.g. {bad[0]}")
        if on_bytes:
            on_bytes(sum(src.store.blob_path(d).stat().st_size for d in digests))
        return {d: sent[d] for d in digests}

    def get_blobs(self, dest: Bundle, digests: Sequence[str], *, on_bytes: OnBytes = None) -> dict[str, Stamp | None]:
        """rsync the blobs here, then rehash them (rsync checks its own transfer; this also stamps what arrived)."""
        digests = list(digests)
        dest.store.ensure_dirs()
        if not digests:
            return {}
        self._rsync_files([f"{_target(self.place)}:{self.root}/"], f"{dest.root}/", [f"blobs/sha256/{d}" for d in digests], what=f"rsync from {self.text}")
        sizes = {d: dest.store.blob_path(d).stat().st_size for d in digests if dest.store.has(d)}
        received = prove_local(dest.root, {d: sizes.get(d, -1) for d in digests}, recheck=True)
        if received.damaged or received.absent:
            bad = sorted(received.damaged | received.absent)
            raise WorkError(f"verification at {dest.root} failed: {len(bad)} blobs received missing or damaged, e.g. {bad[0]}")
        if on_bytes:
            on_bytes(sum(sizes.values()))
        return dict.fromkeys(digests)

    def finish(self, plan: TransferPlan, src: Endpoint, *, sent: Mapping[str, Stamp | None]) -> None:
        """Send the small files and the manifest (last), check every blob's size there, then record the far side's stamps."""
        if not isinstance(getattr(src, "bundle", None), Bundle):
            raise WorkError(f"transfer to {self.text}: the source must be a local directory")
        root: Bundle = src.bundle  # type: ignore[attr-defined]
        dest = f"{_target(self.place)}:{self.root}/"
        small = [name for name in TOP_FILES if (root.root / name).is_file()]
        self._rsync_files([f"{root.root}/"], dest, [*small, MANIFEST], what=f"rsync manifest to {self.text}")
        after, _ = remote_state(self.place, self.opts, create=False)
        lost = [d for d, (_, size) in plan.carried.items() if d not in after or after[d][2] != size]
        if lost:
            raise WorkError(f"verification at {self.text} failed: {len(lost)} blobs missing or short, e.g. {lost[0]}")
        observed = dict(plan.stamps) | {d: stamp for d, stamp in sent.items() if stamp is not None}
        _write_stamps(self.place, self.opts, {d: stamp for d, stamp in observed.items() if after.get(d) == tuple(stamp)})

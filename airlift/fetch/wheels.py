"""`wheels:` Python wheels for a target Python and platform, dependencies resolved by pip itself.

Resolution runs `pip install --dry-run --report` with `--only-binary=:all: --python-version
--platform --implementation`, which pins every wheel (name, version, URL, sha256) without
installing anything. Each wheel is then fetched by the resumable downloader and checked against
pip's sha256. Inside the gap, `shared_root/wheels` is a find-links directory.
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry
from airlift.config.spec import Wheels
from airlift.fetch import http
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.util.errors import WorkError
from airlift.util.net import bounded_map, with_transient_retries
from airlift.util.proc import run

_NETWORK_WORDS = ("connection", "timed out", "temporarily", "429", "500", "502", "503", "504")
# pip skips an index page it could not fetch and then reports only "no matching distribution": its
# debug log (`--log`) is the one place that says the index was unreachable rather than the package absent.
_INDEX_UNREACHABLE = re.compile(r"Could not fetch URL .*: (?:connection error|.*timed out|.*too many \d+ error responses|.*\b(?:429|5\d\d)\b)")


def _last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    return lines[-1].lower() if lines else ""


def _pip_failed_on_network(stderr: str, log: Path) -> bool:
    """True when pip's failure was the network's (worth a retry), not the requirements'."""
    if any(word in _last_line(stderr) for word in _NETWORK_WORDS):
        return True
    try:
        return _INDEX_UNREACHABLE.search(log.read_text(errors="replace")) is not None
    except OSError:
        return False


def _pip_report(entry: Wheels, constraints: tuple[str, ...] = (), platforms: tuple[str, ...] = ()) -> list[dict]:
    """pip's dry-run install report for `entry`, each version held to `constraints` (`name==version` lines),
    taking wheels for `platforms` too (pip does not widen one --platform to the older tags it implies)."""
    with tempfile.TemporaryDirectory(prefix="airlift-pip-") as work:
        report = Path(work) / "report.json"
        log = Path(work) / "pip.log"
        # The requirements were validated as PEP 508 (no pip options): pip reads them from a file we
        # wrote, so no spec value is ever a pip argument.
        requirements = Path(work) / "requirements.txt"
        requirements.write_text("".join(f"{line}\n" for line in entry.requirement_lines()))
        pinned = Path(work) / "constraints.txt"
        pinned.write_text("".join(f"{line}\n" for line in constraints))
        argv = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--report", str(report), "--target", str(Path(work) / "target"),
            "--only-binary=:all:", "--python-version", entry.python, "--platform", entry.platform,
            *(arg for platform in platforms for arg in ("--platform", platform)),
            "--implementation", entry.implementation, "-r", str(requirements), "-c", str(pinned),
            # pip's own retries (5 by default) off: the core retries the whole resolution, one layer only.
            "--retries", "0", "--log", str(log),
        ]
        run(
            argv, what=f"wheels: pip could not resolve {entry.requirements} for Python {entry.python} on {entry.platform}",
            transient=lambda _code, stderr: _pip_failed_on_network(stderr, log),
        )
        return json.loads(report.read_text())["install"]


def resolve(entries: tuple[Wheels, ...], *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """Ask pip (dry run, binary only, for the target Python and platform) which wheels the requirements need."""
    files: dict[str, RemoteFile] = {}
    urls: dict[str, str] = {}
    for entry in entries:
        for item in with_transient_retries(artifact_id, attempts=ctx.attempts, action=lambda e=entry: _pip_report(e)):
            info = item["download_info"]
            url = info["url"]
            filename = unquote(posixpath.basename(urlparse(url).path))
            sha256 = info.get("archive_info", {}).get("hashes", {}).get("sha256")
            if not filename.endswith(".whl"):
                raise WorkError(f"wheels: pip chose a non-wheel {filename}")
            files[filename] = RemoteFile(path=filename, size=_size(url), sha256=sha256)
            urls[filename] = url
    source = {
        "targets": [{"python": e.python, "platform": e.platform, "implementation": e.implementation} for e in entries],
        "wheels": {name: {"url": urls[name], "sha256": files[name].sha256} for name in sorted(files)},
    }
    return Resolved(artifact_id, "wheels", source, tuple(files[name] for name in sorted(files)))


def _size(url: str) -> int | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        return path.stat().st_size if path.exists() else None
    response = http.head(url, "wheels")
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Download every pinned wheel, checked against pip's sha256."""
    entries = bounded_map(lambda remote: fetch_wheel(remote, resolved.source.wheels[remote.path].url, ctx), resolved.files, workers=ctx.max_parallel_files)
    return FileArtifact(id=resolved.artifact_id, kind="wheels", source=resolved.source, files=entries)


def fetch_wheel(remote: RemoteFile, url: str, ctx: FetchContext) -> FileEntry:
    """One pinned wheel into the cache (taken from it when already stored), checked against pip's sha256."""
    if remote.sha256 and ctx.cache.store.has(remote.sha256):
        return FileEntry(path=remote.path, size=ctx.cache.store.blob_path(remote.sha256).stat().st_size, sha256=remote.sha256)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        blob = ctx.cache.store.add_file(Path(unquote(parsed.path)))
        if remote.sha256 and blob.sha256 != remote.sha256:
            raise WorkError(f"wheels: {remote.path}: sha256 {blob.sha256} does not match pip's {remote.sha256}")
    else:
        blob = http.download(url, ctx, label=f"wheels: {remote.path}", etag=None, size=remote.size, expected_sha256=remote.sha256)
    ctx.progress(blob.size)
    return FileEntry(path=remote.path, size=blob.size, sha256=blob.sha256)

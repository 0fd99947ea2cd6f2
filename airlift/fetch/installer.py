"""`installer:` airlift itself as the artifact `tools/airlift`: its wheel, every dependency's wheel, install.sh.

Resolution is the `wheels:` kind's (airlift/fetch/wheels.py): `pip install --dry-run --report` with
`--only-binary=:all:` for the target Python and platform, so no sdist is ever carried, and each wheel
is then fetched and checked against pip's sha256. The requirements are airlift's own (its wheel's
Requires-Dist, extras left out); airlift's wheel itself is built from the running airlift
(airlift/fetch/installer_wheel.py), never fetched.

**The pins.** Every version is held to the distributions installed beside the running airlift
(`name==version` of each, from their metadata), not to a `constraints.txt` file read from disk:
- an installed airlift has no checkout and so no constraints.txt, yet must carry itself on (a far side
  that builds an export or a new bundle); its environment is exactly what install.sh installed from
  the pins of the bundle it came from, so deriving the pins from it reproduces them;
- in a checkout, `make setup` installs with `-c constraints.txt`, so the installed versions *are*
  constraints.txt (tests/fast/test_installer.py checks that they agree).
A second copy of the pins shipped as package data would be one more thing to keep in step.
"""

from __future__ import annotations

import importlib.metadata
import posixpath
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.requirements import Requirement

from airlift.bundle.install_sh import INSTALL_SH_PATH, render_install_sh
from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry
from airlift.config.installer import Installer
from airlift.config.spec import Wheels
from airlift.fetch import wheels
from airlift.fetch.base import FetchContext, RemoteFile, Resolved
from airlift.fetch.installer_wheel import build_airlift_wheel
from airlift.util.errors import WorkError
from airlift.util.net import bounded_map, with_transient_retries

ARTIFACT_ID = "tools/airlift"


def runtime_requirements() -> list[str]:
    """airlift's declared dependencies (Requires-Dist), without those of its extras."""
    out = []
    for line in importlib.metadata.requires("airlift") or ():
        requirement = Requirement(line)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        out.append(str(requirement))
    return out


def pins() -> tuple[str, ...]:
    """`name==version` of every distribution installed beside the running airlift (airlift excluded)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name != "airlift":
            found.setdefault(name, dist.version)
    return tuple(f"{name}=={version}" for name, version in sorted(found.items()))


def compatible_platforms(platform: str) -> tuple[str, ...]:
    """The older platform tags a `manylinux_2_N_arch` target also runs (down to manylinux_2_17 and
    manylinux2014, as the platform's loader would), for pip, which takes only the tags it is given."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if match is None:
        return ()
    minor, arch = int(match.group(1)), match.group(2)
    older = tuple(f"manylinux_2_{n}_{arch}" for n in range(minor - 1, 16, -1))
    return (*older, f"manylinux2014_{arch}") if minor >= 17 else older


def marker_gaps(report: list[dict], python: str) -> list[str]:
    """Requirements the target may need that pip left out: pip evaluates markers for the interpreter it
    runs in, not for --python-version, so `python_full_version < "3.11.3"` (redis' async-timeout) is
    dropped by a 3.11.7 build for a 3.11.2 far side. Any micro version of the target counts."""
    from packaging.markers import default_environment

    have = {item["metadata"]["name"].lower().replace("_", "-") for item in report}
    envs = []
    for micro in range(0, 31):
        env = dict(default_environment())
        env.update(python_version=python, python_full_version=f"{python}.{micro}", implementation_version=f"{python}.{micro}", extra="")
        envs.append(env)
    out = set()
    for item in report:
        for line in item["metadata"].get("requires_dist", ()):
            requirement = Requirement(line)
            name = requirement.name.lower().replace("_", "-")
            if name in have or requirement.marker is None or "extra" in str(requirement.marker):
                continue
            if any(requirement.marker.evaluate(env) for env in envs):
                out.add(f"{name}{requirement.specifier}")
    return sorted(out)


def resolve(entry: Installer, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """Build airlift's wheel into the cache, then pin every dependency wheel for the target."""
    python, platform = entry.target()
    with tempfile.TemporaryDirectory(prefix="airlift-installer-") as work:
        wheel_path, built_from = build_airlift_wheel(Path(work))
        own = ctx.cache.store.add_file(wheel_path)
    script = ctx.cache.store.put_bytes(render_install_sh())
    target = Wheels(requirements=runtime_requirements(), python=python, platform=platform)
    constraints = pins()

    def report_for(requirements: list[str]) -> list[dict]:
        wanted = target.model_copy(update={"requirements": requirements})
        return with_transient_retries(artifact_id, attempts=ctx.attempts, action=lambda: wheels._pip_report(wanted, constraints, compatible_platforms(platform)))

    report = report_for(target.requirements)
    for _round in range(3):  # each round may add a dependency that itself has one
        missing = marker_gaps(report, python)
        if not missing:
            break
        report += report_for(missing)
    files = [
        RemoteFile(path=wheel_path.name, size=own.size, sha256=own.sha256),
        RemoteFile(path=INSTALL_SH_PATH, size=script.size, sha256=script.sha256, executable=True),
    ]
    pinned: dict[str, dict[str, str | None]] = {}
    for item in report:
        info = item["download_info"]
        url = info["url"]
        filename = unquote(posixpath.basename(urlparse(url).path))
        if not filename.endswith(".whl"):
            raise WorkError(f"pip chose a non-wheel {filename}", artifact_id=artifact_id)
        if filename.startswith("airlift-") or filename in pinned:
            continue  # never fetched: the running airlift's own wheel is the one carried
        sha256 = info.get("archive_info", {}).get("hashes", {}).get("sha256")
        files.append(RemoteFile(path=filename, size=wheels._size(url), sha256=sha256))
        pinned[filename] = {"url": url, "sha256": sha256}
    source = {
        "python": python, "platform": platform, "airlift_version": importlib.metadata.version("airlift"),
        "airlift_wheel": wheel_path.name, "airlift_sha256": own.sha256, "built_from": built_from,
        "wheels": dict(sorted(pinned.items())),
    }
    return Resolved(artifact_id, "installer", source, tuple(sorted(files, key=lambda f: f.path)))


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Every dependency wheel into the cache (airlift's wheel and install.sh are there since resolve)."""
    def one(remote: RemoteFile) -> FileEntry:
        if remote.path in resolved.source.wheels:
            return wheels.fetch_wheel(remote, resolved.source.wheels[remote.path].url, ctx)
        if not (remote.sha256 and ctx.cache.store.has(remote.sha256, remote.size)):
            raise WorkError(f"{remote.path} left the cache since it was built; build again", artifact_id=resolved.artifact_id)
        return FileEntry(path=remote.path, size=remote.size or 0, sha256=remote.sha256, executable=remote.executable)

    entries = bounded_map(one, resolved.files, workers=ctx.max_parallel_files)
    return FileArtifact(id=resolved.artifact_id, kind="installer", source=resolved.source, files=entries)

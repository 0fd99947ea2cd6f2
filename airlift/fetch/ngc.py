"""`ngc:` models through the NVIDIA NGC SDK (`ngcsdk`).

NGC publishes no checksums, so files are hashed locally as they enter the store and the manifest
records the result. The SDK client is created in one place, `ngc_client()`, from `client_factory`:
`ngcsdk.Client` unless a test has injected a double there (tests/ngc_cli.py does): NGC needs a real
account. Nothing in the environment chooses the code that runs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airlift.bundle.manifest import Artifact, FileEntry
from airlift.config.spec import NgcModel
from airlift.fetch.base import FetchContext, Resolved
from airlift.util.errors import WorkError
from airlift.util.net import bounded_map
from airlift.util.settings import settings

KEY_VARIABLES = ("NGC_API_KEY", "NGC_CLI_API_KEY")
# Makes the SDK client; None means `ngcsdk.Client`. Only tests set it (to tests/ngc_double.FakeClient).
client_factory: Callable[[], Any] | None = None


def api_key() -> str:
    key = settings().ngc_api_key  # NGC_API_KEY, else NGC_CLI_API_KEY
    if key:
        return key.get_secret_value()
    raise WorkError("NGC needs an API key: set NGC_API_KEY (or NGC_CLI_API_KEY) in the environment")


def ngc_client(org: str, team: str | None) -> Any:
    """A configured `ngcsdk.Client` (or the double a test injected as `client_factory`)."""
    key = api_key()
    factory = client_factory
    if factory is None:
        from ngcsdk import Client as factory
    client = factory()
    client.configure(api_key=key, org_name=org, team_name=team)
    return client


def _split(target: str) -> tuple[str, str | None, str, str | None]:
    path, _, version = target.partition(":")
    parts = path.split("/")
    org, team, name = (parts[0], None, parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])
    return org, team, name, version or None


def _latest_version(info: Any) -> str | None:
    model = getattr(info, "model", info)
    for attribute in ("latestVersionIdStr", "latest_version_id_str"):
        value = getattr(model, attribute, None)
        if value:
            return str(value)
    return None


def resolve(entry: NgcModel, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """Pin an NGC model to a version (the latest when none is given), through the NGC SDK."""
    org, team, name, version = _split(entry.ngc)
    if version is None:
        client = ngc_client(org, team)
        version = _latest_version(client.registry.model.info(entry.ngc))
        if not version:
            raise WorkError(f"NGC did not say which version is latest; pin one as {entry.ngc}:<version>", artifact_id=artifact_id)
    target = f"{org}/{team + '/' if team else ''}{name}:{version}"
    source = {"target": target, "org": org, "team": team, "name": name, "version": version, "allow": entry.allow}
    return Resolved(artifact_id, "ngc-model", {k: v for k, v in source.items() if v is not None})


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Download the pinned version with the NGC SDK and store each file by the sha256 computed here."""
    source = resolved.source
    client = ngc_client(source.org, source.team)
    ctx.cache.store.ensure_dirs()
    # Download next to the store so files are hard-linked in, not copied, then drop the temp tree.
    workdir = Path(tempfile.mkdtemp(prefix="ngc-", dir=ctx.cache.store.tmp_dir))
    try:
        result = client.registry.model.download_version(source.target, destination=str(workdir), file_patterns=source.allow)
        status = getattr(result, "status", "completed")
        if status not in (None, "completed", "COMPLETED"):
            raise WorkError(f"NGC download ended with status {status!r}", artifact_id=resolved.artifact_id)
        root = Path(getattr(result, "path", "") or workdir)
        if not root.is_relative_to(workdir):
            raise WorkError(f"NGC SDK reported a path outside its destination: {root}", artifact_id=resolved.artifact_id)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        if not files:
            raise WorkError(f"NGC download of {source.target} produced no files", artifact_id=resolved.artifact_id)

        def one(path: Path) -> FileEntry:
            blob = ctx.cache.store.add_file(path)  # NGC gives no checksums: hash here, record it
            ctx.progress(blob.size)
            return FileEntry(path=path.relative_to(root).as_posix(), size=blob.size, sha256=blob.sha256, executable=bool(path.stat().st_mode & 0o111))

        entries = bounded_map(one, files, workers=ctx.max_parallel_files)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Artifact(id=resolved.artifact_id, kind="ngc-model", source=source, files=entries)

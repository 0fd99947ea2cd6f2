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
from types import SimpleNamespace
from typing import Any

from airlift.bundle.manifest import Artifact, FileArtifact, FileEntry
from airlift.config.ngcspec import NgcCatalog
from airlift.config.spec import NgcModel
from airlift.fetch.base import FetchContext, Resolved
from airlift.util.errors import WorkError
from airlift.util.net import bounded_map
from airlift.util.settings import settings

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
    _sdk(client.configure, f"org {org}" + (f" team {team}" if team else ""), api_key=key, org_name=org, team_name=team)
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


def _sdk(call: Any, what: str, *args: Any, **kwargs: Any) -> Any:
    """One SDK call; whatever the SDK raises (an unknown org or model, a refused key) becomes one clear line."""
    try:
        return call(*args, **kwargs)
    except WorkError:
        raise
    except Exception as exc:  # noqa: BLE001 - the SDK's exception types are its own (ResourceNotFound, ...)
        raise WorkError(f"NGC {what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'failed'}") from None


def _names_in(listing: Any) -> dict[str, str | None]:
    """Model name -> latest version from `registry.model.list`, which yields pages (lists) of models."""
    found: dict[str, str | None] = {}
    stack = [listing]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
            continue
        name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
        if name:
            found[str(name)] = _latest_version(SimpleNamespace(**item) if isinstance(item, dict) else item)
    return found


def _resolve_catalog(entry: NgcModel, artifact_id: str) -> Resolved:
    """Every wanted model of an org/team, each pinned: listed through the SDK, `:latest` or none resolved."""
    catalog = entry.ngc
    assert isinstance(catalog, NgcCatalog)
    org, team = catalog.org_team.split("/")
    client = ngc_client(org, team)
    listing = _names_in(_sdk(client.registry.model.list, f"org/team {catalog.org_team}", target=f"{catalog.org_team}/*"))
    if not listing:
        raise WorkError(f"NGC lists no models under {catalog.org_team} (unknown org or team, or the key cannot see it)", artifact_id=artifact_id)
    wanted = catalog.wanted()
    models: dict[str, str] = {}
    for item in wanted if wanted is not None else sorted(listing):
        name, _, version = item.partition(":")
        if name not in listing:
            raise WorkError(f"NGC has no model {name} under {catalog.org_team} (it lists {', '.join(sorted(listing))})", artifact_id=artifact_id)
        if version in ("", "latest"):
            version = listing[name] or _latest_version(_sdk(client.registry.model.info, f"model {catalog.org_team}/{name}", f"{catalog.org_team}/{name}")) or ""
        if not version:
            raise WorkError(f"NGC did not say which version of {name} is latest; pin one as {name}:<version>", artifact_id=artifact_id)
        models[name] = version
    source = {"org": org, "team": team, "models": models, "allow": entry.allow}
    return Resolved(artifact_id, "ngc-catalog", {k: v for k, v in source.items() if v is not None})


def resolve(entry: NgcModel, *, artifact_id: str, ctx: FetchContext) -> Resolved:
    """Pin an NGC model to a version (the latest when none is given, or `:latest`), through the NGC SDK.

    `org/team/*` and the catalog forms (airlift/config/ngcspec.py) pin every model they name or list.
    """
    if isinstance(entry.ngc, str) and entry.ngc.endswith("/*"):
        entry = entry.model_copy(update={"ngc": NgcCatalog(org_team=entry.ngc.removesuffix("/*"))})
    if isinstance(entry.ngc, NgcCatalog):
        return _resolve_catalog(entry, artifact_id)
    org, team, name, version = _split(entry.ngc)
    if version in (None, "latest"):
        client = ngc_client(org, team)
        bare = entry.ngc.split(":", 1)[0]
        version = _latest_version(_sdk(client.registry.model.info, f"model {bare}", bare))
        if not version:
            raise WorkError(f"NGC did not say which version is latest; pin one as {bare}:<version>", artifact_id=artifact_id)
    target = f"{org}/{team + '/' if team else ''}{name}:{version}"
    source = {"target": target, "org": org, "team": team, "name": name, "version": version, "allow": entry.allow}
    return Resolved(artifact_id, "ngc-model", {k: v for k, v in source.items() if v is not None})


def fetch(resolved: Resolved, ctx: FetchContext) -> Artifact:
    """Download the pinned version(s) with the NGC SDK and store each file by the sha256 computed here."""
    source = resolved.source
    if resolved.kind == "ngc-catalog":  # each model in its own directory of the one artifact
        files: list[FileEntry] = []
        for name, version in sorted(source.models.items()):
            one = Resolved(resolved.artifact_id, "ngc-model", {
                "target": f"{source.org}/{source.team}/{name}:{version}", "org": source.org, "team": source.team,
                "name": name, "version": version, **({"allow": source.allow} if source.allow else {}),
            })
            files += [entry.model_copy(update={"path": f"{name}/{entry.path}"}) for entry in fetch(one, ctx).files]
        return FileArtifact(id=resolved.artifact_id, kind="ngc-catalog", source=source, files=files)
    client = ngc_client(source.org, source.team)
    ctx.cache.store.ensure_dirs()
    # Download next to the store so files are hard-linked in, not copied, then drop the temp tree.
    workdir = Path(tempfile.mkdtemp(prefix="ngc-", dir=ctx.cache.store.tmp_dir))
    try:
        result = _sdk(client.registry.model.download_version, f"model {source.target}", source.target, destination=str(workdir), file_patterns=source.allow)
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
    return FileArtifact(id=resolved.artifact_id, kind="ngc-model", source=source, files=entries)

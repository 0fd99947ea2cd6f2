"""The one test double in this project: an `ngcsdk.Client` stand-in (NGC needs a real account).

It mirrors the calls airlift makes on the real SDK, `Client().configure(api_key=, org_name=,
team_name=)`, `registry.model.info(target)` and `registry.model.download_version(target,
destination=, file_patterns=)`, writes files the way the SDK lays them out
(`<destination>/<name>_v<version>/...`), and logs each call (never the key) to
$AIRLIFT_NGC_DOUBLE_LOG so a test can show what the real SDK is called with.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
from pathlib import Path
from types import SimpleNamespace

FILES = {
    "config.yaml": b"model: tiny-nemo\nhidden: 64\n",
    "weights/model.nemo": random.Random(3).randbytes(300_000),
    "README.md": b"# tiny NGC model\n",
}
LATEST = "2.0"
# What `registry.model.list("nvidia/tao/*")` shows (TAO FTMS's pretrained_models discovery): name -> latest.
CATALOG = {"nvidia/tao": {"pretrained_classification": "2.0", "pretrained_detection": "1.1", "pretrained_segformer": "3.0"}}
KNOWN_ORGS = {"nvidia"}


class ResourceNotFoundException(Exception):
    """The SDK's own exception type for an unknown org, team or model."""


def _log(call: str, **kwargs) -> None:
    path = os.environ.get("AIRLIFT_NGC_DOUBLE_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({"call": call, **kwargs}) + "\n")


class _Models:
    def info(self, target: str):
        _log("registry.model.info", target=target)
        if target.split("/", 1)[0] not in KNOWN_ORGS:
            raise ResourceNotFoundException(f"Target '{target}' could not be found.")
        return SimpleNamespace(model=SimpleNamespace(latestVersionIdStr=LATEST))

    def list(self, target: str | None = None, **_kwargs):
        """Pages (lists) of models, as the SDK returns them."""
        _log("registry.model.list", target=target)
        org_team = (target or "").removesuffix("/*")
        if org_team.split("/", 1)[0] not in KNOWN_ORGS:
            raise ResourceNotFoundException(f"Org '{org_team.split('/', 1)[0]}' could not be found.")
        models = [SimpleNamespace(name=n, latestVersionIdStr=v) for n, v in sorted(CATALOG.get(org_team, {}).items())]
        return [models[:2], models[2:]]

    def download_version(self, target: str, destination: str | None = ".", file_patterns=None, exclude_patterns=None, progress_callback_func=None):
        _log("registry.model.download_version", target=target, destination=destination, file_patterns=file_patterns)
        name, _, version = target.rsplit("/", 1)[-1].partition(":")
        root = Path(destination) / f"{name}_v{version}"
        for relative, data in FILES.items():
            if file_patterns and not any(fnmatch.fnmatch(relative, p) for p in file_patterns):
                continue
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return SimpleNamespace(status="completed", path=str(root), completed_count=len(FILES))


class FakeClient:
    def __init__(self) -> None:
        self.registry = SimpleNamespace(model=_Models())

    def configure(self, api_key=None, org_name=None, team_name=None) -> None:
        _log("configure", api_key_given=bool(api_key), org_name=org_name, team_name=team_name)

"""The Prefect UI renders each deployed flow's parameter descriptions as Markdown in its run form, so the
descriptions (from the flows' docstrings) must read the same as plain text: no code spans, no tags."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKDOWN = re.compile(r"[`<>]|\*\*|\[[^\]]*\]\(")


def _entrypoints() -> list[str]:
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    return sorted({d["entrypoint"] for d in config["deployments"]})


@pytest.mark.parametrize("entrypoint", _entrypoints())
def test_every_deployed_parameter_description_is_plain_text(entrypoint):
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    schema = parameter_schema(getattr(module, name).fn).model_dump()
    for parameter, prop in schema["properties"].items():
        description = prop.get("description") or ""
        assert description, f"{entrypoint}: {parameter} has no description"
        assert not MARKDOWN.search(description), f"{entrypoint}: {parameter}: {description!r} renders differently as Markdown"

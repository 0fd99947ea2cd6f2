"""The wheel carries the whole program: every package folder is listed in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    found = {"airlift"} | {f"airlift.{p.parent.name}" for p in (ROOT / "airlift").glob("*/__init__.py")}
    for name, folder in mapped.items():
        assert (folder / "__init__.py").is_file(), f"{name} maps to {folder}, which is no package"
        found.add(name)
        found |= {f"{name}.{p.parent.name}" for p in folder.glob("*/__init__.py")}
    assert found == listed, f"listed but missing: {sorted(listed - found)}; not listed: {sorted(found - listed)}"


def test_the_prefect_side_has_names_of_its_own_in_site_packages() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"airlift_flows": "flows", "airlift_tasks": "tasks"}
    assert not {"flows", "tasks", "deployments"} & set(config["packages"])

"""The layers point one way: deployments -> flows -> tasks -> airlift (the core is Prefect-free)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORDER = ["airlift", "tasks", "flows", "deployments"]


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_layer_imports_a_layer_above_it():
    for rank, layer in enumerate(ORDER):
        above = set(ORDER[rank + 1:])
        for path in (REPO / layer).rglob("*.py"):
            # The CLI is the composition root the contract places in airlift/: it may reach the flows,
            # but only inside the command that runs one, never at import time.
            top_level_only = path == REPO / "airlift" / "cli.py"
            bad = _imports(path, top_level_only=top_level_only) & above
            assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_core_does_not_import_prefect():
    for path in (REPO / "airlift").rglob("*.py"):
        assert "prefect" not in _imports(path, top_level_only=path.name == "cli.py"), f"{path.relative_to(REPO)} imports prefect"
    code = "import sys, airlift.cli.main, airlift.fetch.assemble, airlift.bundle.verify, airlift.ingest.sharedfs, airlift.fetch.kinds; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

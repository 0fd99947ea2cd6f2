"""The composition root: the one place in the core that reaches the Prefect flows.

Each command asks for its flow here, so Prefect is imported only when a command that runs a flow
has validated its input. The Prefect side (`tasks/`, `flows/`, `deployments/`) lives in the checkout
beside this package rather than in site-packages, where generic top-level names like `tasks` and
`flows` would collide with other distributions; `_prefect_side_importable` puts that checkout on
the path when the CLI is started from elsewhere.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from airlift.util.errors import WorkError

CHECKOUT = Path(__file__).resolve().parents[2]


def _prefect_side_importable() -> None:
    if importlib.util.find_spec("flows") is not None:
        return
    if not (CHECKOUT / "flows" / "__init__.py").is_file():
        raise WorkError(f"the Prefect flows are not installed beside airlift (looked in {CHECKOUT}/flows); run from a checkout")
    sys.path.insert(0, str(CHECKOUT))


def flow(name: str, *, verbose: bool) -> Any:
    """The flow a CLI command runs, with Prefect's console output tamed for a terminal.

    Args:
        name: The command's flow: build, plan, verify, keygen, sign, transfer, ingest, pack,
            unpack, mirror-refresh or submit.
        verbose: Show Prefect's task logs.

    Returns:
        The Prefect flow object.
    """
    _prefect_side_importable()
    from airlift.cli.server import use_embedded_server

    use_embedded_server()  # before Prefect is imported: its settings are read at import
    from flows._util import configure_console

    chosen = _FLOWS[name]()
    configure_console(verbose=verbose)
    return chosen


def build_task_runner(dask: str) -> Any:
    """The Dask task runner for `airlift build --dask` (a scheduler address, or "local")."""
    _prefect_side_importable()
    from flows.build import task_runner_for

    return task_runner_for(dask)


def _build() -> Any:
    from flows.build import build_bundle

    return build_bundle


def _plan() -> Any:
    from flows.plan import plan_bundle

    return plan_bundle


def _verify() -> Any:
    from flows.verify import verify_bundle_flow

    return verify_bundle_flow


def _keygen() -> Any:
    from flows.sign import keygen_flow

    return keygen_flow


def _sign() -> Any:
    from flows.sign import sign_flow

    return sign_flow


def _transfer() -> Any:
    from flows.transfer import transfer_bundle

    return transfer_bundle


def _ingest() -> Any:
    from flows.ingest import ingest_bundle

    return ingest_bundle


def _pack() -> Any:
    from flows.pack import pack_flow

    return pack_flow


def _unpack() -> Any:
    from flows.pack import unpack_flow

    return unpack_flow


def _mirror() -> Any:
    from flows.mirror import mirror_refresh

    return mirror_refresh


def _submit() -> Any:
    from flows.submit import submit_jobs

    return submit_jobs


_FLOWS = {
    "build": _build, "plan": _plan, "verify": _verify, "keygen": _keygen, "sign": _sign,
    "transfer": _transfer, "ingest": _ingest, "pack": _pack, "unpack": _unpack, "mirror-refresh": _mirror,
    "submit": _submit,
}

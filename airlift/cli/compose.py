"""The composition root: the one place in the core that reaches the Prefect flows.

Each command asks for its flow here, so Prefect is imported only when a command that runs a flow
has validated its input. The Prefect side is installed with the core: the repository's `flows/` and
`tasks/` folders are the packages `airlift_flows` and `airlift_tasks` (pyproject.toml maps them), so a
wheel installed anywhere runs every command, and no generic top-level name like `flows` is claimed in
site-packages.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any


def flow(name: str, *, verbose: bool) -> Any:
    """The flow a CLI command runs, with Prefect's console output tamed for a terminal.

    Args:
        name: The command's flow: build, plan, verify, keygen, sign, transfer, ingest, pack,
            unpack, mirror-refresh or submit.
        verbose: Show Prefect's task logs.

    Returns:
        The Prefect flow object.
    """
    from airlift.cli.server import use_embedded_server

    prefect_loaded = "prefect" in sys.modules  # imported before this process's settings were set (a warm runner's worker)
    mode = use_embedded_server()  # before Prefect is imported: its settings are read at import
    if prefect_loaded:
        _reread_prefect_settings()
    from airlift_flows._util import configure_console

    chosen = _FLOWS[name]()
    configure_console(verbose=verbose)
    if mode == "embedded":
        _without_heartbeats()
    _quiet_exit_drain()
    if mode == "ephemeral":  # its API server dies with this process: there is no UI to link to
        return chosen
    return chosen.with_options(on_running=[*chosen.on_running_hooks, _announce_run])


def _reread_prefect_settings() -> None:
    """Make an already imported Prefect read this process's environment and streams again: its settings
    context and its logging handlers were made from the warm runner's, before the command's arrived."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging import configuration

    refresh_global_settings_context()
    import prefect

    initialize_plugins = getattr(prefect, "_initialize_plugins", None)  # run at import, under the runner's settings
    if initialize_plugins is not None:
        initialize_plugins()
    configuration.PROCESS_LOGGING_CONFIG.clear()
    configuration.setup_logging()


_PROCESS_SETTINGS = contextlib.ExitStack()  # entered for the life of the CLI process, never exited


def _without_heartbeats() -> None:
    """No flow-run heartbeats for CLI runs on the embedded server.

    Prefect's sync engine joins its heartbeat thread each time it leaves a run context (twice per
    flow run), which costs up to a second per run. Heartbeats only feed a zombie-run automation,
    which the embedded server has no reason to have; no environment value can unset the setting
    (it parses as an int), so the CLI process overrides it in its own settings context.
    """
    from prefect.settings import temporary_settings

    _PROCESS_SETTINGS.enter_context(temporary_settings(updates={"flows.heartbeat_frequency": None}))


class _DropDrainProgress(logging.Filter):
    """Prefect's event and log workers warn "Still processing items" when the process exits before
    they have sent everything; they then send it all anyway (the exit waits for them), so the
    warning says nothing a terminal user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Still processing items")


def _quiet_exit_drain() -> None:
    for name in ("EventsWorker", "APILogWorker"):  # the loggers Prefect's queue services log to
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropDrainProgress) for f in logger.filters):
            logger.addFilter(_DropDrainProgress())


_ANNOUNCED: set[str] = set()


def _announce_run(flow: Any, flow_run: Any, state: Any) -> None:
    """Print the run's UI address to stderr once (stdout stays the command's output, e.g. `--json`)."""
    from prefect.utilities.urls import url_for

    url = url_for(flow_run)
    if url and str(flow_run.id) not in _ANNOUNCED:
        _ANNOUNCED.add(str(flow_run.id))
        print(f"flow run: {url}", file=sys.stderr, flush=True)


def build_task_runner(dask: str) -> Any:
    """The Dask task runner for `airlift build --dask` (a scheduler address, or "local")."""
    from airlift_flows.build import task_runner_for

    return task_runner_for(dask)


def _build() -> Any:
    from airlift_flows.build import build_bundle

    return build_bundle


def _plan() -> Any:
    from airlift_flows.plan import plan_bundle

    return plan_bundle


def _verify() -> Any:
    from airlift_flows.verify import verify_bundle_flow

    return verify_bundle_flow


def _keygen() -> Any:
    from airlift_flows.sign import keygen_flow

    return keygen_flow


def _sign() -> Any:
    from airlift_flows.sign import sign_flow

    return sign_flow


def _transfer() -> Any:
    from airlift_flows.transfer import transfer_bundle

    return transfer_bundle


def _ingest() -> Any:
    from airlift_flows.ingest import ingest_bundle

    return ingest_bundle


def _pack() -> Any:
    from airlift_flows.pack import pack_flow

    return pack_flow


def _unpack() -> Any:
    from airlift_flows.pack import unpack_flow

    return unpack_flow


def _mirror() -> Any:
    from airlift_flows.mirror import mirror_refresh

    return mirror_refresh


def _submit() -> Any:
    from airlift_flows.submit import submit_jobs

    return submit_jobs


def _export() -> Any:
    from airlift_flows.export import export_outputs_flow

    return export_outputs_flow


def _inventory() -> Any:
    from airlift_flows.export import inventory_flow

    return inventory_flow


_FLOWS = {
    "build": _build, "plan": _plan, "verify": _verify, "keygen": _keygen, "sign": _sign,
    "transfer": _transfer, "ingest": _ingest, "pack": _pack, "unpack": _unpack, "mirror-refresh": _mirror,
    "submit": _submit, "export": _export, "inventory": _inventory,
}

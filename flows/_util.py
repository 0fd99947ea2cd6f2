"""Helpers the flows share: gather futures so one failure never hides another."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from prefect.futures import PrefectFuture, wait

from airlift.util.errors import AirliftError, WorkError, describe


def gather(futures: Sequence[PrefectFuture], labels: Sequence[str]) -> list[Any]:
    """Wait for all futures; raise one error that names every failed artifact and its cause."""
    wait(list(futures))
    results, failures = [], []
    first: BaseException | None = None
    for future, label in zip(futures, labels, strict=True):
        try:
            results.append(future.result())
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            first = first or exc
            failures.append(describe(exc, label))
    if failures:
        exit_code = first.exit_code if isinstance(first, AirliftError) else 1
        error = WorkError("; ".join(failures))
        error.exit_code = exit_code
        raise error
    return results


class _DropFailureTracebacks(logging.Filter):
    """The CLI prints one line per failure itself; the API handler still receives the full record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


def configure_console(*, verbose: bool) -> None:
    """Quiet Prefect's console output for CLI runs: warnings (retries) stay, failure tracebacks go."""
    import prefect  # noqa: F401 - importing prefect (re)configures logging; adjust after that
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [
        logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict) if name.startswith("prefect")
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.INFO if verbose else logging.WARNING)
                if not any(isinstance(f, _DropFailureTracebacks) for f in handler.filters):
                    handler.addFilter(_DropFailureTracebacks())

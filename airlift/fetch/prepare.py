"""What `airlift build` (and `plan`, `mirror-refresh`) need before any work, read once by one function that
the CLI and the flow share: the spec, validated, and the credentials its sources need."""

from __future__ import annotations

from pathlib import Path

from airlift.config.spec import NgcModel, Spec, load_spec
from airlift.util.errors import InputError


def check_credentials(spec: Spec) -> None:
    """Fail before any work when a source needs a credential that is not in the environment."""
    if any(isinstance(m, NgcModel) for m in spec.models):
        from airlift.fetch.ngc import api_key  # only then: the NGC source's imports cost CLI start-up

        api_key()


def prepare_build(spec: str | Path, since: str | Path | None = None) -> Spec:
    """The spec, validated, with its credentials present; `since`, when given, must be a bundle.

    Raises:
        InputError: The spec is invalid or `since` is not a bundle (exit 2).
        WorkError: A source's credential is missing from the environment.
    """
    parsed = load_spec(spec)
    check_credentials(parsed)
    if since and not Path(since, "manifest.json").is_file():
        raise InputError(f"--since {since}: not a bundle (no manifest.json)")
    return parsed

"""What `airlift build` (and `plan`, `mirror-refresh`) need before any work, read once by one function that
the CLI and the flow share: the spec, validated, and the credentials its sources need."""

from __future__ import annotations

from pathlib import Path

from airlift.config.spec import NgcModel, Spec, load_spec
from airlift.util.errors import InputError
from airlift.util.handoff import Handoff, fingerprint

_HANDOFF = Handoff()


def check_credentials(spec: Spec) -> None:
    """Fail before any work when a source needs a credential that is not in the environment."""
    if any(isinstance(m, NgcModel) for m in spec.models):
        from airlift.fetch.ngc import api_key  # only then: the NGC source's imports cost CLI start-up

        api_key()


def prepare_build(spec: str | Path, since: str | Path | None = None, *, hand_off: bool = False) -> Spec:
    """The spec, validated, with its credentials present; `since`, when given, must be a bundle or an inventory file.

    Args:
        spec: The spec file.
        since: The older bundle of a delta build.
        hand_off: Keep the result for the flow this process starts next (the CLI sets it); that flow's
            own call with the same arguments takes it if the spec file did not change (airlift/util/handoff.py).

    Raises:
        InputError: The spec is invalid or `since` is not a bundle (exit 2).
        WorkError: A source's credential is missing from the environment.
    """
    key = (str(Path(spec).resolve()), fingerprint(spec), str(since) if since else None)
    parsed = None if hand_off else _HANDOFF.take(key)
    if parsed is None:
        parsed = load_spec(spec)
    check_credentials(parsed)  # the environment is read each time: it is cheap and may differ
    if since and not Path(since).is_file() and not Path(since, "manifest.json").is_file():  # a file: an inventory (v1.1)
        raise InputError(f"--since {since}: not a bundle (no manifest.json) nor an inventory file")
    if hand_off:
        _HANDOFF.put(key, parsed)
    return parsed

"""What `airlift ingest` needs before any work, read once by one function that the CLI and the flow share.

The CLI calls it to fail fast (a bad site or bundle is exit 2 before a flow run; a refused signature
exit 1); the flow calls the same function, so the two can never disagree on which keys a bundle
must be signed by or which manifest is ingested.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from airlift.bundle.layout import SIGNATURE, Bundle
from airlift.bundle.signing import TrustedManifest, trusted_manifest
from airlift.config.site import Site, load_site
from airlift.util.errors import InputError
from airlift.util.handoff import Handoff, fingerprint

_HANDOFF = Handoff()


@dataclass(frozen=True)
class PreparedIngest:
    """The site profile, the keys a bundle must be signed by, and the manifest as opened (signature checked)."""

    site: Site
    keys: list[str]
    opened: TrustedManifest

    @property
    def store(self) -> str | None:
        return str(self.site.store) if self.site.store else None


def trusted_key_paths(extra: list[str] | None, site: Site | None = None) -> list[str]:
    """`extra` (--pubkey, repeatable) plus the site's trust.keys; every one must be a readable file.

    Raises:
        InputError: A key file does not exist.
    """
    keys = [str(k) for k in extra or []]
    if site is not None:
        keys = site.trusted_keys(extra=keys)
    for key in keys:
        if not Path(key).is_file():
            raise InputError(f"--pubkey/trust.keys {key}: no such file")
    return keys


def _key(bundle: str | Path, site: str | Path, pubkeys: list[str] | None) -> tuple:
    opened = Bundle(bundle)
    keys = tuple(str(k) for k in pubkeys or ())
    return (
        str(Path(bundle).resolve()), fingerprint(opened.manifest_path), fingerprint(opened.root / SIGNATURE),
        str(Path(site).resolve()), fingerprint(site), keys, tuple(fingerprint(k) for k in keys),
    )


def prepare_ingest(bundle: str | Path, site: str | Path, pubkeys: list[str] | None = None, *, hand_off: bool = False) -> PreparedIngest:
    """Load the site, gather the trusted keys, and open the bundle's manifest, refusing it unless one of them signed it.

    Args:
        bundle: The bundle directory.
        site: The site profile.
        pubkeys: Keys given on the command line, besides the site's `trust.keys`.
        hand_off: Keep the result for the flow this process starts next (the CLI sets it): that flow's
            own call with the same arguments then takes it instead of reading everything again,
            provided no input file changed in between (airlift/util/handoff.py).

    Raises:
        InputError: The site or the manifest is invalid, or a key file is missing (exit 2).
        WorkError: Keys are required and none of them signed the manifest (exit 1).
    """
    key = _key(bundle, site, pubkeys)
    if not hand_off and (kept := _HANDOFF.take(key)) is not None:
        return kept
    profile = load_site(site)
    keys = trusted_key_paths(pubkeys, profile)
    prepared = PreparedIngest(profile, keys, trusted_manifest(Bundle(bundle), [Path(k) for k in keys]))
    if hand_off:
        _HANDOFF.put(key, prepared)
    return prepared

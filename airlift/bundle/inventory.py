"""The site inventory (v1.1): what the air-gapped side really holds, carried out so the next delta is
computed against it (`airlift build --since inv.json`).

`inv.json` lists every ingested artifact with the blobs the site can lend from its `store:`; a
signature over its exact bytes goes in `inv.json.sig` (Ed25519, the same keys as bundles). The file
comes back across the gap from a less trusted side, so it is read bounded and validated; with
`--pubkey`, an inventory no trusted key signed is refused as bad input (exit 2), as the build must not
leave blobs out on the word of an unsigned list.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated

from cryptography.exceptions import InvalidSignature
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airlift.bundle.signing import _load
from airlift.util.errors import InputError
from airlift.util.fs import write_bytes_atomic

KIND = "airlift-inventory"
MAX_INVENTORY_BYTES = 256 << 20


class InventoryArtifact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=1024)
    kind: str = Field(min_length=1, max_length=64)
    content_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    blobs: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(default_factory=list, description="held by the site's store")


class Inventory(BaseModel):
    """inv.json: every artifact a site has ingested, and the blobs its store holds for each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(default=KIND, pattern=f"^{KIND}$")
    version: int = 1
    created: str
    artifacts: list[InventoryArtifact]

    def blobs(self) -> set[str]:
        """Every blob the site can lend to a delta (its store holds them)."""
        return {digest for artifact in self.artifacts for digest in artifact.blobs}

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode()


def is_inventory(path: Path) -> bool:
    """True when `path` is a file (an inventory) rather than a bundle directory."""
    return path.is_file()


def write_inventory(path: Path, inventory: Inventory, *, key: Path | None = None) -> None:
    """Write `path` (and `path.sig` when `key` is given) atomically."""
    data = inventory.to_bytes()
    write_bytes_atomic(path, data)
    signature = Path(f"{path}.sig")
    if key is not None:
        write_bytes_atomic(signature, base64.b64encode(_load(key, "private").sign(data)) + b"\n")
    elif signature.exists():
        signature.unlink()  # it signed an older inventory


def read_inventory(path: Path, *, pubkeys: list[Path] | None = None, argument: str = "--since") -> Inventory:
    """Read and validate an inventory; with `pubkeys`, refuse one that none of them signed.

    Raises:
        InputError: Not a valid inventory, or (with `pubkeys`) not signed by a trusted key; the message
            names the file and the field.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INVENTORY_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{argument} {path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_INVENTORY_BYTES:
        raise InputError(f"{argument} {path}: larger than {MAX_INVENTORY_BYTES} bytes")
    if pubkeys:
        _check(path, data, pubkeys, argument)
    try:
        inventory = Inventory.model_validate_json(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
        raise InputError(f"{path}: {loc}: {error['msg']}") from None
    return inventory


def _check(path: Path, data: bytes, pubkeys: list[Path], argument: str) -> None:
    sig_path = Path(f"{path}.sig")
    try:
        raw = sig_path.read_bytes()[:4096]
        signature = base64.b64decode(raw.strip(), validate=True)
    except (OSError, ValueError):
        raise InputError(f"{argument} {path}: signature: no valid {sig_path.name}; the inventory is not signed") from None
    for key_path in pubkeys:
        try:
            _load(Path(key_path), "public").verify(signature, data)
            return
        except InvalidSignature:
            continue
    raise InputError(f"{argument} {path}: signature: not signed by a trusted key ({', '.join(str(k) for k in pubkeys)})")

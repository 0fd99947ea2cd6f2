"""OpenSSF model-signing signatures: checked at build against the spec's trust material, again on the far side.

A model repository (Hub or NGC) may carry a model-signing signature (a Sigstore bundle whose DSSE
payload lists every file's digest; by default `model.sig`). The `model-signing` package does the
checking: the signature against the trust material (an elliptic-curve public key, or a certificate
chain), then each file against the digest the signature lists.

The files live in a blob store under their sha256, so the check lays them out as the repository's tree
in a scratch directory by hard link (a copy only across file systems), the signature file beside it,
never inside: nothing is downloaded or hashed twice by airlift itself, and the scratch directory goes
away afterwards. The trust material travels as blobs of the artifact (pinned by the manifest), so
`airlift verify --model-signatures` needs no network and nothing from the build host.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from airlift.bundle.manifest import Artifact, ModelSignature
from airlift.util.errors import IntegrityError, WorkError

MAX_TRUST_BYTES = 1 << 20  # a PEM key or certificate chain


def _lay_out(tree: Path, files: dict[str, Path]) -> None:
    for relative, blob in files.items():
        target = tree / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blob, target)
        except OSError:
            shutil.copyfile(blob, target)


def _named_files(message: str) -> list[str]:
    """The file names a model-signing mismatch message gives (hash mismatch, extra or missing files)."""
    message = message.replace("\\'", "'")  # the list is repr()'d: a quote may come escaped
    names = re.findall(r"Hash mismatch for '([^']+)'", message)
    for listed in re.findall(r"(?:Extra|Missing) files (?:found )?in model '[^']*': ([^\]\"]+)", message):
        names += [n.strip().strip("'\"") for n in listed.split(",")]
    return sorted(dict.fromkeys(n for n in names if n))


def check(
    artifact: Artifact, *, method: str, signature: str, trust: list[Path], blob_path: Callable[[str], Path], scratch: Path,
) -> int:
    """Check `artifact`'s files against its model-signing `signature` (a path among its files).

    Returns:
        How many files the check covered.

    Raises:
        IntegrityError: The signature does not verify, or names files that differ, are missing or extra
            (the message names them).
        WorkError: The signature file is not among the artifact's files.
    """
    from model_signing import verifying

    entries = {f.path: f for f in artifact.files}
    if signature not in entries:
        raise WorkError(f"{artifact.id}: verify_signature: no {signature} among its files (is it signed? is it excluded by allow/ignore?)")
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="modelsig-", dir=scratch))
    try:
        tree = work / "model"
        tree.mkdir()
        model_files = {path: blob_path(e.sha256) for path, e in entries.items() if path != signature}
        _lay_out(tree, model_files)
        signature_path = work / "model.sig"
        shutil.copyfile(blob_path(entries[signature].sha256), signature_path)
        config = verifying.Config()
        if method == "key":
            config.use_elliptic_key_verifier(public_key=trust[0])
        else:
            config.use_certificate_verifier(certificate_chain=trust)
        try:
            config.verify(tree, signature_path)
        except Exception as exc:  # noqa: BLE001 - model-signing raises ValueError and crypto/protobuf errors alike
            message = str(exc)
            names = _named_files(message)
            if names:
                raise IntegrityError(f"{artifact.id}: model signature {signature} does not match these files: {', '.join(names)}") from None
            raise IntegrityError(f"{artifact.id}: model signature {signature} does not verify: {message.splitlines()[0][:300] if message else type(exc).__name__}") from None
        return len(model_files)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_trust(paths: list[str], *, artifact_id: str) -> list[bytes]:
    """The trust files the spec names, each bounded (exit 2 naming the file when one is unreadable)."""
    from airlift.util.errors import InputError

    out = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_TRUST_BYTES + 1)
        except OSError as exc:
            raise InputError(f"verify_signature: {path}: {exc.strerror or exc}", artifact_id=artifact_id) from None
        if len(data) > MAX_TRUST_BYTES or b"-----BEGIN" not in data:
            raise InputError(f"verify_signature: {path}: not a PEM key or certificate", artifact_id=artifact_id)
        out.append(data)
    return out


def recheck(artifact: Artifact, *, blob_path: Callable[[str], Path], scratch: Path) -> str | None:
    """Check a bundled artifact's recorded signature again, with its bundled trust; a problem, or None."""
    record: ModelSignature | None = artifact.signature
    if record is None:
        return None
    trust = [blob_path(digest.hex) for digest in record.trust]
    try:
        check(artifact, method=record.method, signature=record.signature, trust=trust, blob_path=blob_path, scratch=scratch)
    except WorkError as exc:
        return str(exc).removeprefix(f"{artifact.id}: ")
    return None

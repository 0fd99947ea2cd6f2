"""airlift's own wheel, made from the airlift that runs the build (never fetched from an index).

Two cases, decided by where the running `airlift` package lives:
- **a checkout** (the package sits beside a `pyproject.toml` naming airlift, as `make setup`'s editable
  install leaves it): `pip wheel --no-deps` builds it from that source tree, so the wheel is exactly the
  code that is running, uncommitted edits included.
- **an installed wheel** (site-packages, e.g. an airlift installed on the far side by `install.sh`):
  there is no source tree, so the wheel is recreated from the installed distribution's RECORD. Each
  file is checked against the sha256 RECORD gives it first (an installed copy edited in place is
  refused, not carried), bytecode and the console script pip generated are left out (pip makes them
  again on install), and the archive is written with fixed timestamps in sorted order, so the same
  installed airlift always recreates byte-identical wheels (the cache and deltas then carry it once).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import airlift
from airlift.util.errors import WorkError
from airlift.util.proc import run

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no build time leaks into the bytes
_LEFT_OUT = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}  # written by pip at install, not in a wheel


def checkout_root() -> Path | None:
    """The source tree the running airlift is imported from, or None when it is an installed wheel."""
    root = Path(airlift.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text()
    except OSError:
        return None
    return root if 'name = "airlift"' in text else None


def build_airlift_wheel(dest: Path) -> tuple[Path, str]:
    """Write airlift's wheel into `dest`; returns (its path, "checkout" | "installed")."""
    root = checkout_root()
    if root is not None:
        return _from_checkout(root, dest), "checkout"
    return _from_installed(dest), "installed"


def _from_checkout(root: Path, dest: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="airlift-wheel-") as work:
        # SOURCE_DATE_EPOCH: the wheel tooling stamps files with it instead of the build time.
        run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", work, str(root)],
            what=f"tools/airlift: building airlift's wheel from {root}", env={"SOURCE_DATE_EPOCH": "315532800"},
        )
        built = sorted(Path(work).glob("airlift-*.whl"))
        if len(built) != 1:
            raise WorkError(f"tools/airlift: pip wheel {root} made {len(built)} airlift wheels, expected one")
        target = dest / built[0].name
        os.replace(built[0], target)
    return target


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def _from_installed(dest: Path) -> Path:
    dist = importlib.metadata.distribution("airlift")
    version = dist.version
    info_dir = f"airlift-{version}.dist-info"
    members: dict[str, bytes] = {}
    for item in dist.files or ():
        name = item.as_posix()
        if name.startswith("../") or "__pycache__/" in name or name.endswith(".pyc"):
            continue  # scripts outside site-packages and bytecode: pip makes them again on install
        if name.startswith(info_dir + "/") and name.rsplit("/", 1)[-1] in _LEFT_OUT:
            continue
        data = Path(item.locate()).read_bytes()
        if item.hash is not None and _record_hash(data) != f"{item.hash.mode}={item.hash.value}":
            raise WorkError(f"tools/airlift: installed file {name} differs from its RECORD hash; reinstall airlift before carrying it")
        members[name] = data
    if f"{info_dir}/WHEEL" not in members or f"{info_dir}/METADATA" not in members:
        raise WorkError(f"tools/airlift: the installed airlift {version} has no {info_dir}/WHEEL or METADATA to rebuild a wheel from")
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in sorted(members.items()))
    members[f"{info_dir}/RECORD"] = (record + f"{info_dir}/RECORD,,\n").encode()
    target = dest / f"airlift-{version}-py3-none-any.whl"
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # dist-info last, RECORD very last, as the wheel spec recommends.
        for name in sorted(members, key=lambda n: (n.startswith(info_dir + "/"), n.endswith("/RECORD"), n)):
            entry = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, members[name])
    os.replace(tmp, target)
    return target

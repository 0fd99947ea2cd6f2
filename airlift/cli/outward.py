"""The v1.1 commands that carry things back out of the gap: `export` (finished runs' outputs) and
`inventory` (what the site holds). Kept beside commands.py, with the same rules: input is validated
here (exit 2, one line) before any flow runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from airlift.cli.commands import _flow
from airlift.util.errors import InputError
from airlift.util.units import human


def _site_root(site: Path) -> Path:
    from airlift.config.site import load_site

    return load_site(site).required_shared_root(source=str(site))


def cmd_export(args: argparse.Namespace) -> int:
    from airlift.bundle.volumes import SIZE_RE, UNITS

    _site_root(args.site)
    match = SIZE_RE.match(args.max_size)
    if not match:
        raise InputError(f"--max-size {args.max_size!r}: expected a size such as 50GiB, 700MB or 1TiB")
    limit = int(float(match[1]) * UNITS[(match[2] or "B").lower()])
    if args.key and not Path(args.key).is_file():
        raise InputError(f"--key {args.key}: no such file")
    key = str(args.key) if args.key else None
    result = _flow("export")(site=str(args.site), out=str(args.out), jobs=args.job, key=key, max_size=limit)
    for run in result.runs:
        print(f"  {run.status:12} outputs/{run.job}/{run.run_id}  {run.files} files {human(run.bytes)}  {run.detail}")
    print(f"exported {len(result.exported)} runs to {result.bundle}: {result.blobs_written} blobs written"
          + ("" if result.manifest_changed else "; manifest unchanged"))
    too_large = [r for r in result.runs if r.status == "too-large"]
    if too_large:
        print("airlift: error: outputs too large: " + ", ".join(f"outputs/{r.job}/{r.run_id} ({human(r.bytes)})" for r in too_large)
              + f" exceed --max-size {args.max_size}", file=sys.stderr)
        return 1
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    _site_root(args.site)
    if args.key and not Path(args.key).is_file():
        raise InputError(f"--key {args.key}: no such file")
    count = _flow("inventory")(site=str(args.site), out=str(args.out), key=str(args.key) if args.key else None)
    print(f"inventory {args.out}: {count} artifacts" + (f", signed ({args.out}.sig)" if args.key else ""))
    return 0

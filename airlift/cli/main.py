"""The `airlift` command line. Every command runs a Prefect flow: on PREFECT_API_URL's server when it
is set, else on the embedded local server the CLI starts once and reuses (cli/server.py), or on an
ephemeral one only when AIRLIFT_PREFECT=ephemeral.

Input is validated here, before Prefect starts, so a bad spec, site or argument costs no flow run
and gets exit 2 with one line naming the file and field. This module imports no Prefect at load
time: the flow for a command is imported only when that command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from airlift import __version__
from airlift.cli import commands, maintenance, outward
from airlift.util.errors import AirliftError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as the contract says
        print(f"airlift: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (or says it is required), so `--help` stands on its own."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            return text
        if action.required or (not action.option_strings and action.nargs is None):
            return f"{text} (required)"
        default = action.default
        if isinstance(action, argparse._StoreTrueAction):
            shown = "off"
        elif default in (None, []):
            shown = "none"
        else:
            shown = str(default).replace("%", "%%")
        return f"{text} (default: {shown})"


def _example(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _prefect_env(verbose: bool) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # No client telemetry from a secure site (and ~0.3 s less start-up per command).
    os.environ.setdefault("DO_NOT_TRACK", "1")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(prog="airlift", description="Move everything an ML workload needs across an air gap.", formatter_class=_Help,
                     epilog="A first spec and site profile: examples/minimal/ (README, 'A first bundle in one minute').")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's task logs")
    parser.add_argument("--version", action="version", version=f"airlift {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show Prefect's task logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser

    def add_parser(name: str, **kwargs):
        return _add(name, parents=[common], formatter_class=_Help, **kwargs)

    sub.add_parser = add_parser  # every command also takes -v after its name

    p = sub.add_parser(
        "plan", help="resolve every reference and show what a build would fetch",
        description="Resolve every reference of a spec (revision -> commit, URL -> ETag and size) and show sizes, "
        "what is cached and what a build would fetch; downloads no content. Spec format: examples/minimal/airgap.yaml "
        "(smallest), examples/airgap.full.yaml (every key, annotated).",
        epilog=_example("airlift plan examples/minimal/airgap.yaml"),
    )
    p.add_argument("spec", type=Path, help="the spec file (airgap.yaml); see examples/")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.set_defaults(func=commands.cmd_plan)

    p = sub.add_parser("build", help="build or complete a bundle from a spec",
                       epilog=_example("airlift build examples/minimal/airgap.yaml --out /tmp/hello-bundle"))
    p.add_argument("spec", type=Path, help="the spec file (airgap.yaml); see examples/")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="bundle directory: new, empty, or a bundle to complete (anything else is refused)")
    p.add_argument("--since", help="older bundle, or a site inventory (airlift inventory): write only blobs it lacks (a delta)")
    p.add_argument("--pubkey", action="append", default=[], help="trusted Ed25519 public key: refuse an inventory none of them signed (repeatable; default: none)")
    p.add_argument("--dask", default=os.environ.get("AIRLIFT_DASK_ADDRESS"), help="run per-artifact tasks on Dask: a scheduler address, or 'local' for a LocalCluster (default: $AIRLIFT_DASK_ADDRESS, else in this process)")
    p.add_argument("--installer", action="store_true", help="carry airlift itself (tools/airlift, install.sh) for this host's Python and platform when the spec has no installer:")
    p.set_defaults(func=commands.cmd_build)

    p = sub.add_parser("verify", help="rehash a bundle and name what is broken",
                       epilog=_example("airlift verify /tmp/hello-bundle --pubkey keys/site.pub"))
    p.add_argument("bundle", type=Path, help="the bundle directory")
    p.add_argument("--store", help="blob store (or older bundle) lending blobs a delta lacks (default: none, a delta's missing blobs are broken)")
    p.add_argument("--pubkey", action="append", default=[], help="trusted Ed25519 public key (repeatable): refuse a bundle none of them signed")
    p.add_argument("--receipt", help="directory for the verification receipt (default: BUNDLE/receipts)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (counts, bytes, per-artifact results)")
    p.add_argument("--model-signatures", action="store_true", help="also check each model-signing signature the build checked, with its bundled trust")
    p.set_defaults(func=commands.cmd_verify)

    p = sub.add_parser("mirror-refresh", help="write a delta bundle only if something upstream changed",
                       epilog=_example("airlift mirror-refresh airgap.yaml --bundles-dir mirrors/ --transfer-to /mnt/drop"))
    p.add_argument("spec", type=Path, help="the spec file (airgap.yaml) to re-resolve")
    p.add_argument("--bundles-dir", required=True, type=Path, metavar="DIR", help="where the mirror's bundles live; the newest is the delta's base")
    p.add_argument("--transfer-to", help="send a new bundle here (path, ssh:// or s3://) (default: none, keep it in --bundles-dir)")
    p.set_defaults(func=commands.cmd_mirror_refresh)

    p = sub.add_parser("submit", help="preflight, then submit the spec's jobs to Slurm",
                       epilog=_example("airlift submit /tmp/hello-bundle --site site.yaml --job train --wait"))
    p.add_argument("bundle", type=Path, help="the ingested bundle whose spec lists the jobs")
    p.add_argument("--site", required=True, type=Path, help="site profile (site.yaml) with slurm: or prefect:")
    p.add_argument("--job", action="append", default=[], help="job name (repeatable); default: all")
    p.add_argument("--wait", action="store_true", help="wait for the jobs, streaming their output; exit 1 if any failed")
    p.add_argument("--force", action="store_true", help="submit even jobs that are pending, running or done")
    p.add_argument("--dry-run", action="store_true", help="print each job's sbatch script (or Prefect run parameters); submit nothing")
    p.add_argument("--pubkey", action="append", default=[], help="trusted Ed25519 public key (repeatable), besides the site's trust.keys")
    p.set_defaults(func=commands.cmd_submit)

    p = sub.add_parser("serve", help="read-only HF Hub API, PEP 503 index, files and git mirrors inside the gap",
                       epilog=_example("airlift serve /tmp/airlift-shared --port 8808   # then HF_ENDPOINT=http://127.0.0.1:8808"))
    p.add_argument("path", type=Path, help="a bundle or an ingested shared_root")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8808, help="port to listen on")
    p.add_argument("--site", type=Path, help="site profile whose trust.keys a bundle must be signed by (default: none, no signature required)")
    p.add_argument("--pubkey", action="append", default=[], help="trusted Ed25519 public key (repeatable)")
    p.add_argument("--max-connections", type=int, default=128, help="connections served at once; more get 503")
    p.add_argument("--header-timeout", type=float, default=10.0, help="seconds a client may take to send its request headers")
    p.set_defaults(func=commands.cmd_serve)

    p = sub.add_parser("keygen", help="create an Ed25519 key pair PREFIX.key / PREFIX.pub",
                       epilog=_example("airlift keygen --out keys/site   # writes keys/site.key and keys/site.pub"))
    p.add_argument("--out", required=True, type=Path, metavar="PREFIX", help="path prefix of the two key files; an existing PREFIX.key is never overwritten")
    p.set_defaults(func=commands.cmd_keygen)

    p = sub.add_parser("sign", help="sign a bundle's manifest", epilog=_example("airlift sign /tmp/hello-bundle --key keys/site.key"))
    p.add_argument("bundle", type=Path, help="the bundle directory")
    p.add_argument("--key", required=True, type=Path, help="the Ed25519 private key (PREFIX.key from keygen)")
    p.add_argument("--expires", metavar="DURATION", help="the signature expires after this long (e.g. 30d, 12h, 2w); ingest, submit and serve refuse it then")
    p.set_defaults(func=commands.cmd_sign)

    p = sub.add_parser("inspect", help="list a bundle's artifacts", epilog=_example("airlift inspect /tmp/hello-bundle"))
    p.add_argument("bundle", type=Path, help="the bundle directory")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a table")
    p.add_argument("--site", type=Path, help="site profile: show each image's air-gapped reference (default: none, <registry>/...)")
    p.set_defaults(func=commands.cmd_inspect)

    p = sub.add_parser("transfer", help="send a bundle where it is needed, only what DEST lacks",
                       epilog=_example("airlift transfer /tmp/hello-bundle --to ssh://ops@gateway:22/srv/drop/hello --ssh-key ~/.ssh/id_ed25519"))
    p.add_argument("src", help="the bundle: a directory, ssh://user@host[:port]/path or s3://bucket/prefix")
    p.add_argument("--to", required=True, metavar="DEST", help="where it goes: a directory, ssh://... or s3://... (one side must be a directory)")
    p.add_argument("--ssh-key", help="private key for ssh:// endpoints (default: ssh's own)")
    p.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE", help="passed to ssh as -o (repeatable)")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (default: $AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--recheck", action="store_true", help="rehash every blob already at DEST, trusting no stamp (on S3: download each)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (counts, bytes, per-artifact results)")
    p.set_defaults(func=commands.cmd_transfer)

    p = sub.add_parser("pack", help="cut a bundle into fixed-size volumes for removable media",
                       epilog=_example("airlift pack /tmp/hello-bundle --out /media/usb --volume-size 4GiB --zstd"))
    p.add_argument("bundle", type=Path, help="the bundle directory")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory the volumes and VOLUMES.SHA256SUMS are written to")
    p.add_argument("--volume-size", required=True, help="largest volume, e.g. 4GiB, 700MB, 3MiB")
    p.add_argument("--zstd", action="store_true", help="compress blobs where a sample shows it helps")
    p.set_defaults(func=commands.cmd_pack)

    p = sub.add_parser("unpack", help="rebuild a bundle from volumes", epilog=_example("airlift unpack /media/usb --out /srv/bundles/hello"))
    p.add_argument("dir", type=Path, help="directory holding the volumes and VOLUMES.SHA256SUMS")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="bundle directory to rebuild")
    p.set_defaults(func=commands.cmd_unpack)

    p = sub.add_parser(
        "server", help="the embedded local Prefect server every command reports to (UI included)",
        description="The local Prefect server (SQLite under $AIRLIFT_HOME) that commands report to when PREFECT_API_URL "
        "is unset; the first command starts it. Actions: status (address, pid, log; exit 1 if not answering), "
        "start (start it, or keep the running one), stop (stop it; its port is remembered for the next start).",
        epilog=_example("airlift server start --port 4200   # UI at http://127.0.0.1:4200"),
    )
    p.add_argument("action", choices=["status", "start", "stop"], help="status | start | stop (see above)")
    p.add_argument("--port", type=int, default=None, help="start: the port to listen on (default: $AIRLIFT_SERVER_PORT, else the last one if free, else any)")
    p.set_defaults(func=maintenance.cmd_server)

    p = sub.add_parser(
        "cache", help="the download cache ($AIRLIFT_CACHE): info, prune (local maintenance; runs no Prefect flow)",
        epilog=_example("airlift cache info", "airlift cache prune --older-than 7d --keep-bundle /tmp/hello-bundle"),
        description="Local maintenance of the download cache ($AIRLIFT_CACHE, default ~/.cache/airlift). "
        "These commands run no Prefect flow and need no server.",
    )
    actions = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    c = actions.add_parser("info", parents=[common], formatter_class=_Help, help="size, blobs, records, and what prune could remove",
                           epilog=_example("airlift cache info --json"))
    c.add_argument("--json", action="store_true", help="print the figures as JSON")
    c.set_defaults(func=maintenance.cmd_cache_info)
    c = actions.add_parser(
        "prune", parents=[common], formatter_class=_Help, epilog=_example("airlift cache prune --older-than 7d --keep-bundle /tmp/hello-bundle"),
        help="remove blobs no cache record or kept bundle references, and stale temp files, partials and locks",
        description="Remove blobs that no cache record and no --keep-bundle references, dangling ETag entries, "
        "and temp files, partial downloads and locks whose writer is gone. Anything modified more recently "
        "than --older-than stays, so it is safe while a build runs. Runs no Prefect flow.",
    )
    c.add_argument("--older-than", default="24h", help="only remove what is older than this (e.g. 7d, 12h, 30m; default 24h)")
    c.add_argument("--keep-bundle", action="append", default=[], type=Path, metavar="DIR", help="also keep every blob this bundle references (repeatable)")
    c.add_argument("--dry-run", action="store_true", help="count what would go; remove nothing")
    c.add_argument("--records", action="store_true", help="also evict cache records no build has reused for --older-than, so their blobs can go too")
    c.add_argument("--artifact", action="append", default=[], metavar="ID", help="also evict the records of this artifact id, e.g. models/acme/x, whatever their age (repeatable)")
    c.add_argument("--all", action="store_true", help="empty the cache: every record and blob, whatever its age (--records --older-than 0s); not while a build runs")
    c.set_defaults(func=maintenance.cmd_cache_prune)

    p = sub.add_parser("export", help="results out: finished job runs' declared outputs as a signed bundle",
                       epilog=_example("airlift export --site site.yaml --out results/ --job train --key keys/site.key"))
    p.add_argument("--site", required=True, type=Path, help="site profile (site.yaml) whose shared_root holds the runs")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the bundle of outputs to write or complete")
    p.add_argument("--job", action="append", default=[], help="job name (repeatable); default: all")
    p.add_argument("--key", type=Path, help="the site's Ed25519 private key: sign the bundle")
    p.add_argument("--max-size", default="1TiB", help="refuse (and name) a run whose outputs are larger (e.g. 50GiB)")
    p.set_defaults(func=outward.cmd_export)

    p = sub.add_parser("inventory", help="what the site holds: every ingested artifact with its blobs, as JSON",
                       epilog=_example("airlift inventory --site site.yaml --out inv.json --key keys/site.key"))
    p.add_argument("--site", required=True, type=Path, help="site profile (site.yaml) whose ingest markers and store are listed")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="the inventory JSON file to write")
    p.add_argument("--key", type=Path, help="Ed25519 private key: sign the inventory (OUT.sig)")
    p.set_defaults(func=outward.cmd_inventory)

    p = sub.add_parser("ingest", help="verify, then load a bundle into the site's sinks",
                       epilog=_example("airlift ingest /tmp/hello-bundle --site examples/minimal/site.yaml"))
    p.add_argument("bundle", type=Path, help="the bundle directory")
    p.add_argument("--site", required=True, type=Path, help="site profile (site.yaml): which sinks exist; see examples/")
    p.add_argument("--pubkey", action="append", default=[], help="trusted Ed25519 public key (repeatable), besides the site's trust.keys")
    p.add_argument("--json", action="store_true", help="print the result as JSON (counts, bytes, per-artifact results)")
    p.add_argument("--allow-older", action="store_true", help="ingest a bundle older than the one already ingested under its name (recorded)")
    p.set_defaults(func=commands.cmd_ingest)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (0, 1 work failed, 2 invalid input)."""
    args = build_parser().parse_args(argv)
    _prefect_env(args.verbose)
    commands.VERBOSE = args.verbose
    try:
        return args.func(args)
    except AirliftError as exc:
        print(f"airlift: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("airlift: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract promises no tracebacks
        if os.environ.get("AIRLIFT_DEBUG"):
            raise
        if isinstance(exc, OSError):
            from airlift.util.errors import resource_error

            if full := resource_error(exc, getattr(exc, "filename", None) or "disk"):
                print(f"airlift: error: {full}", file=sys.stderr)
                return 1
        from botocore.exceptions import NoCredentialsError  # (imported on failure only: the CLI starts fast)

        if isinstance(exc, NoCredentialsError):
            print("airlift: error: S3: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)", file=sys.stderr)
            return 1
        print(f"airlift: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1




if __name__ == "__main__":
    sys.exit(main())

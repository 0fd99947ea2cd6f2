"""The `airlift` command line. Every command runs a Prefect flow (ephemeral unless PREFECT_API_URL is set).

Input is validated here, before Prefect starts, so a bad spec, site or argument costs no flow run
and gets exit 2 with one line naming the file and field. This module imports no Prefect at load
time: the flow for a command is imported only when that command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from airlift.util.errors import AirliftError, InputError
from airlift.util.units import human


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as the contract says
        print(f"airlift: error: {message} (see 'airlift --help')", file=sys.stderr)
        raise SystemExit(2)


def _prefect_env(verbose: bool) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # No client telemetry from a secure site (and ~0.3 s less start-up per command).
    os.environ.setdefault("DO_NOT_TRACK", "1")


_VERBOSE = False


def _flow(name: str):
    """The flow for a command, imported only now that its input is valid (the core stays Prefect-free)."""
    from airlift.cli.compose import flow

    return flow(name, verbose=_VERBOSE)


# -- commands --------------------------------------------------------------------------------------
def cmd_build(args: argparse.Namespace) -> int:
    from airlift.config.spec import load_spec

    _check_credentials(load_spec(args.spec))
    if args.since and not Path(args.since, "manifest.json").is_file():
        raise InputError(f"--since {args.since}: not a bundle (no manifest.json)")
    build_bundle = _flow("build")
    if args.dask:
        from airlift.cli.compose import build_task_runner

        build_bundle = build_bundle.with_options(task_runner=build_task_runner(args.dask))
    result = build_bundle(spec=str(args.spec), out=str(args.out), since=args.since)
    print(
        f"built {result['bundle']}: {result['artifacts']} artifacts, {result['files']} files, {human(result['bytes'])}; "
        f"{result['blobs_written']} blobs written, manifest sha256 {result['manifest_sha256']}"
    )
    if args.since:
        print(f"delta since {args.since}: {result['blobs_skipped_since']} blobs left to the old bundle")
    return 0


def _check_credentials(spec) -> None:
    """Fail before any work when a source needs a credential that is not in the environment."""
    if any(type(m).__name__ == "NgcModel" for m in spec.models):
        from airlift.fetch.ngc import api_key

        api_key()


def cmd_plan(args: argparse.Namespace) -> int:
    from airlift.config.spec import load_spec

    _check_credentials(load_spec(args.spec))
    plan = _flow("plan")(spec=str(args.spec))
    totals = plan.totals
    if args.json:
        import json
        from dataclasses import asdict

        print(json.dumps({"artifacts": [asdict(a) | {"to_fetch_bytes": a.to_fetch_bytes} for a in plan.artifacts], "totals": totals}, indent=1))
        return 0
    print(f"{'artifact':50} {'kind':11} {'files':>6} {'size':>11} {'cached':>11} {'to fetch':>11}  resolved")
    for a in plan.artifacts:
        size = human(a.bytes) + ("+?" if a.unknown_sizes else "")
        print(f"{a.id:50} {a.kind:11} {a.files:6} {size:>11} {human(a.cached_bytes):>11} {human(a.to_fetch_bytes):>11}  {a.reference[:64]}")
    print(
        f"total: {totals['artifacts']} artifacts, {totals['files']} files, {human(totals['bytes'])}; "
        f"cached {human(totals['cached_bytes'])}, to fetch {human(totals['to_fetch_bytes'])}"
        + (f" (+{totals['unknown_sizes']} files of unknown size)" if totals["unknown_sizes"] else "")
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from airlift.bundle.layout import Bundle

    Bundle(args.bundle).read_manifest()  # a malformed or hostile manifest fails here, before any flow
    if args.store and not Path(args.store).is_dir():
        raise InputError(f"--store {args.store}: not a directory")
    if args.pubkey and not Path(args.pubkey).is_file():
        raise InputError(f"--pubkey {args.pubkey}: no such file")
    verify_bundle_flow = _flow("verify")
    report = verify_bundle_flow(bundle=str(args.bundle), store=args.store, pubkey=args.pubkey, receipt_dir=args.receipt)
    for problem in report.problems:
        print(f"BROKEN {problem.describe()}")
    for path in report.quarantined:
        print(f"moved aside: {path} (the next build or transfer puts good bytes back)")
    if report.manifest_matches_sums is False:
        print("BROKEN manifest.json: does not match its line in SHA256SUMS")
    status = "OK" if report.ok else "FAILED"
    print(
        f"{status}: {len(report.artifacts)} artifacts, {report.blobs_checked} blobs, {human(report.bytes_checked)} rehashed"
        + (f" ({report.blobs_from_store} lent by --store)" if report.blobs_from_store else "")
        + f"; signature: {report.signature}"
    )
    print(f"receipt: {' '.join(report.receipt)}")
    return 0 if report.ok else 1


def cmd_keygen(args: argparse.Namespace) -> int:
    if Path(f"{args.out}.key").exists():
        raise InputError(f"--out {args.out}: {args.out}.key already exists; refusing to overwrite a key")
    paths = _flow("keygen")(out=str(args.out))
    print(f"wrote {paths[0]} (keep it secret) and {paths[1]}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from airlift.bundle.layout import Bundle

    Bundle(args.bundle).read_manifest()
    if not Path(args.key).is_file():
        raise InputError(f"--key {args.key}: no such file")
    print(f"signed: {_flow('sign')(bundle=str(args.bundle), key=str(args.key))}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from airlift.bundle.layout import Bundle

    Bundle(args.bundle).read_manifest()
    target = None
    if args.site:
        from airlift.config.site import load_site

        target = load_site(args.site).registry
    inspect_bundle = _flow("inspect")
    manifest = inspect_bundle(bundle=str(args.bundle))
    if args.json:
        print(manifest.to_bytes().decode(), end="")
        return 0
    print(f"{manifest.name}  created {manifest.created}" + (f"  delta since {manifest.since.name} ({manifest.since.manifest_sha256[:12]})" if manifest.since else ""))
    from airlift.oci.reference import airgap_reference, parse_image

    for artifact in manifest.artifacts:
        if artifact.image is not None:
            image = artifact.image
            name = parse_image(image.ref)
            where = airgap_reference(target.url, name) if target else f"<registry>/{name.repository}:{name.tag or image.digest}"
            print(f"  {artifact.id:50} image       {len(image.layers):3} layers {human(image.size):>11}  {image.platform}  {image.digest}")
            print(f"      {image.ref} -> {where}")
            continue
        ref = artifact.source.get("commit") or artifact.source.get("sha256") or artifact.source.get("etag") or ""
        print(f"  {artifact.id:50} {artifact.kind:11} {len(artifact.files):6} files {human(artifact.total_bytes):>11}  {ref}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from airlift.transport.location import parse_location

    source = parse_location(args.src, argument="SRC")
    target = parse_location(args.to, argument="--to")
    if "dir" not in (source.kind, target.kind):
        raise InputError(f"transfer {source.kind} -> {target.kind}: one side must be a local directory")
    if source.kind == "dir":
        from airlift.bundle.layout import Bundle

        Bundle(source.path).read_manifest()
    if args.ssh_key and not Path(args.ssh_key).is_file():
        raise InputError(f"--ssh-key {args.ssh_key}: no such file")
    for option in args.ssh_option:
        if "=" not in option:
            raise InputError(f"--ssh-option {option!r}: expected KEY=VALUE")
    transfer_bundle = _flow("transfer")
    result = transfer_bundle(src=args.src, dest=args.to, ssh_key=args.ssh_key, ssh_options=args.ssh_option, s3_endpoint=args.s3_endpoint)
    print(f"transferred to {result['dest']}: {result['blobs_sent']} blobs ({human(result['bytes_sent'])}) sent, {result['blobs_present']} already there; verified")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from airlift.bundle.layout import Bundle
    from airlift.config.site import load_site

    load_site(args.site)
    Bundle(args.bundle).read_manifest()
    ingest_bundle = _flow("ingest")
    summary = ingest_bundle(bundle=str(args.bundle), site=str(args.site))
    print(
        f"ingested {summary['artifacts']} artifacts: S3 {summary['s3_uploaded']} uploaded ({human(summary['s3_bytes'])}), "
        f"{summary['s3_skipped']} already there; shared_root {summary['materialized']} placed, {summary['materialized_skipped']} already there"
    )
    if summary["image_refs"] or summary["images_loaded"]:
        print(
            f"images: {summary['images_pushed']} pushed, {summary['images_present']} already in the registry; "
            f"blobs {summary['blobs_uploaded']} uploaded, {summary['blobs_mounted']} mounted, {summary['blobs_skipped']} already there; "
            f"{summary['images_loaded']} loaded into Docker"
        )
        for original, target in sorted(summary["image_refs"].items()):
            print(f"  {original} -> {target}")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from airlift.bundle.layout import Bundle
    from airlift.bundle.volumes import parse_size

    size = parse_size(args.volume_size)
    Bundle(args.bundle).read_manifest()
    result = _flow("pack")(bundle=str(args.bundle), out=str(args.out), volume_size=size, zstd=args.zstd)
    print(
        f"packed {human(result.bytes_in)} into {result.volumes} volumes ({human(result.bytes_out)}) under {args.out}; "
        f"{result.compressed_blobs} blobs compressed; check with: (cd {args.out} && sha256sum -c VOLUMES.SHA256SUMS)"
    )
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from airlift.bundle.volumes import read_index

    read_index(Path(args.dir))
    result = _flow("unpack")(directory=str(args.dir), out=str(args.out))
    for name in result.missing_volumes:
        print(f"MISSING volume {name}")
    for name in result.corrupt_volumes:
        print(f"CORRUPT volume {name}")
    for digest, reason in sorted(result.failures.items()):
        print(f"LOST blob {digest}: {reason}")
    for artifact_id, paths in sorted(result.lost_artifacts.items()):
        print(f"LOST {artifact_id}: {', '.join(paths)}")
    print(f"{'OK' if result.ok else 'DAMAGED'}: {result.recovered} blobs recovered, {result.already} already present, {len(result.lost_blobs)} lost -> {args.out}")
    return 0 if result.ok else 1


def cmd_mirror_refresh(args: argparse.Namespace) -> int:
    from airlift.config.spec import load_spec

    _check_credentials(load_spec(args.spec))
    result = _flow("mirror-refresh")(spec=str(args.spec), bundles_dir=str(args.bundles_dir), transfer_to=args.transfer_to)
    if result["changed"]:
        print(f"new bundle {result['bundle']}: {result['blobs_written']} blobs" + (f", delta since {result['since']}" if result["since"] else ""))
    else:
        print(f"nothing changed upstream since {result['since']}; no bundle written")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from airlift.bundle.layout import Bundle
    from airlift.config.site import load_site
    from airlift.jobs.common import select_jobs, spec_of

    profile = load_site(args.site)
    manifest = Bundle(args.bundle).read_manifest()
    if (profile.slurm is None and profile.prefect is None) or profile.shared_root is None:
        raise InputError(f"{args.site}: submit needs shared_root: and slurm: (or prefect:) in the site profile")
    select_jobs(spec_of(manifest), args.job)
    result = _flow("submit")(bundle=str(args.bundle), site=str(args.site), jobs=args.job, wait=args.wait, force=args.force)
    print(f"submitted: {', '.join(result['submitted']) or 'nothing new'}")
    for name, info in result["jobs"].items():
        print(f"  {name:20} job {info['id']:>8}  {info.get('state', '')}  log {info['log']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # A long-lived server, not a batch workflow: it runs outside Prefect so no flow run stays open forever.
    from airlift.serve.catalog import Catalog
    from airlift.serve.server import serve

    Catalog.open(args.path)  # fail fast (exit 2) on something that is neither a bundle nor a root
    serve(args.path, args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="airlift", description="Move everything an ML workload needs across an air gap.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Prefect's task logs")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show Prefect's task logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser

    def add_parser(name: str, **kwargs):
        return _add(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # every command also takes -v after its name

    p = sub.add_parser("plan", help="resolve every reference and show what a build would fetch")
    p.add_argument("spec", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("build", help="build or complete a bundle from a spec")
    p.add_argument("spec", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--since", help="older bundle: write only blobs it lacks (a delta)")
    p.add_argument("--dask", default=os.environ.get("AIRLIFT_DASK_ADDRESS"), help="run per-artifact tasks on Dask: a scheduler address, or 'local' for a LocalCluster")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("verify", help="rehash a bundle and name what is broken")
    p.add_argument("bundle", type=Path)
    p.add_argument("--store", help="blob store (or older bundle) lending blobs a delta lacks")
    p.add_argument("--pubkey", help="Ed25519 public key: refuse a manifest that does not match its signature")
    p.add_argument("--receipt", help="directory for the verification receipt (default: BUNDLE/receipts)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("mirror-refresh", help="write a delta bundle only if something upstream changed")
    p.add_argument("spec", type=Path)
    p.add_argument("--bundles-dir", required=True, type=Path)
    p.add_argument("--transfer-to", help="send a new bundle here (path, ssh:// or s3://)")
    p.set_defaults(func=cmd_mirror_refresh)

    p = sub.add_parser("submit", help="preflight, then submit the spec's jobs to Slurm")
    p.add_argument("bundle", type=Path)
    p.add_argument("--site", required=True, type=Path)
    p.add_argument("--job", action="append", default=[], help="job name (repeatable); default: all")
    p.add_argument("--wait", action="store_true", help="wait for the jobs; exit 1 if any failed")
    p.add_argument("--force", action="store_true", help="submit even jobs that are pending, running or done")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("serve", help="read-only HF Hub API, PEP 503 index, files and git mirrors inside the gap")
    p.add_argument("path", type=Path, help="a bundle or an ingested shared_root")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8808)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("keygen", help="create an Ed25519 key pair PREFIX.key / PREFIX.pub")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="sign a bundle's manifest")
    p.add_argument("bundle", type=Path)
    p.add_argument("--key", required=True, type=Path)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("inspect", help="list a bundle's artifacts")
    p.add_argument("bundle", type=Path)
    p.add_argument("--json", action="store_true")
    p.add_argument("--site", type=Path, help="site profile: show each image's air-gapped reference")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("transfer", help="send a bundle where it is needed, only what DEST lacks")
    p.add_argument("src")
    p.add_argument("--to", required=True)
    p.add_argument("--ssh-key", help="private key for ssh:// endpoints")
    p.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE", help="passed to ssh as -o (repeatable)")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (default: AWS_ENDPOINT_URL)")
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("pack", help="cut a bundle into fixed-size volumes for removable media")
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--volume-size", required=True, help="e.g. 4GiB, 700MB, 3MiB")
    p.add_argument("--zstd", action="store_true", help="compress blobs where a sample shows it helps")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("unpack", help="rebuild a bundle from volumes")
    p.add_argument("dir", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_unpack)

    p = sub.add_parser("ingest", help="verify, then load a bundle into the site's sinks")
    p.add_argument("bundle", type=Path)
    p.add_argument("--site", required=True, type=Path)
    p.set_defaults(func=cmd_ingest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _prefect_env(args.verbose)
    global _VERBOSE
    _VERBOSE = args.verbose
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
        if type(exc).__name__ == "NoCredentialsError":
            print("airlift: error: S3: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)", file=sys.stderr)
            return 1
        print(f"airlift: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1




if __name__ == "__main__":
    sys.exit(main())

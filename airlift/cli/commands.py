"""The `airlift` commands: validate input (exit 2, one line), run the command's flow, print the outcome.

Input is validated here, before Prefect starts, so a bad spec, site or argument costs no flow run.
Prefect is imported only when a command's flow is (see airlift/cli/compose.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from airlift.util.errors import InputError
from airlift.util.units import human

VERBOSE = False


def _flow(name: str):
    """The flow for a command, imported only now that its input is valid (the core stays Prefect-free)."""
    from airlift.cli.compose import flow

    return flow(name, verbose=VERBOSE)


# -- commands --------------------------------------------------------------------------------------
def cmd_build(args: argparse.Namespace) -> int:
    from airlift.fetch.prepare import prepare_build

    _check_out(Path(args.out))
    if args.since and Path(args.since).is_file():  # v1.1: a site inventory; --pubkey makes its signature required
        from airlift.bundle.inventory import read_inventory

        read_inventory(Path(args.since), pubkeys=[Path(k) for k in _trusted_keys(args)])
    prepare_build(args.spec, args.since, hand_off=True)  # the flow's same call takes this: read once, one place decides
    build_bundle = _flow("build")
    if args.dask:
        from airlift.cli.compose import build_task_runner

        build_bundle = build_bundle.with_options(task_runner=build_task_runner(args.dask))
    result = build_bundle(spec=str(args.spec), out=str(args.out), since=args.since, installer=args.installer, pubkeys=_trusted_keys(args))
    print(
        f"built {result.bundle}: {result.artifacts} artifacts, {result.files} files, {human(result.bytes)}; "
        f"{result.blobs_written} blobs written, manifest sha256 {result.manifest_sha256}"
    )
    print(f"content: {human(result.bytes_fetched)} downloaded, {human(result.bytes_reused)} reused from the cache")
    if args.since:
        print(f"delta since {args.since}: {result.blobs_skipped_since} blobs left to the old bundle")
    return 0


def _check_out(out: Path) -> None:
    """`build --out` writes into a new or empty directory, or completes a bundle (or an unfinished one, which
    starts with `blobs/`): never into a directory holding anything else, which the bundle would be mixed into."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file() and not (out / "blobs").is_dir():
        raise InputError(f"--out {out}: an existing directory that is neither empty nor a bundle; choose a new one")


def _check_credentials(spec) -> None:
    """Fail before any work when a source needs a credential that is not in the environment."""
    from airlift.fetch.prepare import check_credentials

    check_credentials(spec)


def cmd_plan(args: argparse.Namespace) -> int:
    from airlift.fetch.prepare import prepare_build

    prepare_build(args.spec, hand_off=True)  # the plan flow's same call takes this: read once
    plan = _flow("plan")(spec=str(args.spec))
    totals = plan.totals
    if args.json:
        import json
        from dataclasses import asdict

        rows = [{k: v for k, v in asdict(a).items() if k != "digests"} | {"to_fetch_bytes": a.to_fetch_bytes} for a in plan.artifacts]
        print(json.dumps({"artifacts": rows, "totals": totals}, indent=1))
        return 0
    print(f"{'artifact':50} {'kind':11} {'files':>6} {'size':>11} {'cached':>11} {'to fetch':>11}  resolved")
    for a in plan.artifacts:
        size = human(a.bytes) + ("+?" if a.unknown_sizes else "")
        print(f"{a.id:50} {a.kind:11} {a.files:6} {size:>11} {human(a.cached_bytes):>11} {human(a.to_fetch_bytes):>11}  {a.reference[:96]}")
        if a.kind == "ngc-catalog":  # v1.1 discovery: every model, with the version it was pinned to
            print("".join(f"      {pin}\n" for pin in a.reference.split()), end="")
    print(
        f"total: {totals['artifacts']} artifacts, {totals['files']} files, {human(totals['bytes'])}; "
        f"cached {human(totals['cached_bytes'])}, to fetch {human(totals['to_fetch_bytes'])}"
        + (f" (+{totals['unknown_sizes']} files of unknown size)" if totals["unknown_sizes"] else "")
        + (f"; {human(totals['shared_bytes'])} shared between artifacts, counted once" if totals["shared_bytes"] else "")
    )
    return 0


def _trusted_keys(args: argparse.Namespace, profile=None) -> list[str]:  # noqa: ANN001 - a Site or None
    """--pubkey (repeatable) plus the site's trust.keys; every one must be a readable file."""
    from airlift.ingest.prepare import trusted_key_paths

    return trusted_key_paths([str(k) for k in getattr(args, "pubkey", None) or []], profile)


def _open_trusted(bundle: Path, keys: list[str]):  # noqa: ANN202 - TrustedManifest
    """Fail fast, before any flow: a hostile manifest is exit 2, a refused signature exit 1."""
    from airlift.bundle.layout import Bundle
    from airlift.bundle.signing import trusted_manifest

    return trusted_manifest(Bundle(bundle), [Path(k) for k in keys])


def cmd_verify(args: argparse.Namespace) -> int:
    keys = _trusted_keys(args)
    _open_trusted(args.bundle, keys)
    if args.store and not Path(args.store).is_dir():
        raise InputError(f"--store {args.store}: not a directory")
    verify_bundle_flow = _flow("verify")
    report = verify_bundle_flow(
        bundle=str(args.bundle), store=args.store, receipt_dir=args.receipt, pubkeys=keys,
        **({"model_signatures": True} if getattr(args, "model_signatures", False) else {}),
    )
    if getattr(args, "json", False):
        _print_json("verify", report.model_dump(mode="json") | {"ok": report.ok})
        return 0 if report.ok else 1
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


JSON_SCHEMA = "airlift/v1.1"


def _print_json(command: str, body: dict) -> None:
    """`--json` (contract v1.1): one JSON object on stdout, naming the command and the contract version."""
    import json

    print(json.dumps({"schema": JSON_SCHEMA, "command": command} | body, indent=1, sort_keys=False))


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
    with open(args.key, "rb") as handle:
        if b"PUBLIC KEY-----" in handle.read(4096):  # the commonest slip: PREFIX.pub for PREFIX.key
            raise InputError(f"--key {args.key}: is a public key; sign needs the private key (PREFIX.key from keygen)")
    from airlift.bundle.signing import _load

    _load(Path(args.key), "private")  # any other unusable key: exit 2 now, not inside a flow run
    expires_in = None
    if getattr(args, "expires", None):
        from airlift.fetch.cache import parse_age

        expires_in = parse_age(args.expires, option="--expires")
        if expires_in <= 0:
            raise InputError(f"--expires {args.expires!r}: must be positive")
    print(f"signed: {_flow('sign')(bundle=str(args.bundle), key=str(args.key), expires_in=expires_in)}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    # Read-only and local, no work worth a flow run: inspect never starts Prefect.
    from airlift.bundle.layout import Bundle
    from airlift.bundle.sharing import image_sharing

    bundle = Bundle(args.bundle)
    manifest = bundle.read_manifest()
    target = None
    if args.site:
        from airlift.config.site import load_site

        target = load_site(args.site).registry
    sharing = image_sharing(bundle, manifest)
    if args.json:
        if not sharing:
            print(manifest.to_bytes().decode(), end="")
            return 0
        import json

        # Additive: the manifest's keys as before, plus what each image shares with the others.
        out = json.loads(manifest.to_bytes()) | {"image_sharing": {k: v.model_dump() for k, v in sharing.items()}}
        print(json.dumps(out, indent=2))
        return 0
    print(f"{manifest.name}  created {manifest.created}" + (f"  delta since {manifest.since.name} ({manifest.since.manifest_sha256[:12]})" if manifest.since else ""))
    print(f"  {'artifact':50} {'kind':11} {'count':>12} {'size':>11}  pinned to (commit, digest, ETag; image: platform, digest)")
    from airlift.bundle.manifest import ImageArtifact
    from airlift.oci.reference import airgap_reference, parse_image

    for artifact in manifest.artifacts:
        if isinstance(artifact, ImageArtifact):
            image = artifact.image
            name = parse_image(image.ref)
            where = airgap_reference(target.url, name) if target else f"<registry>/{name.repository}:{name.tag or image.digest}"
            print(f"  {artifact.id:50} image       {len(image.layers):3} layers {human(image.size):>11}  {image.platform}  {image.digest}")
            print(f"      {image.ref} -> {where}")
            for referrer in artifact.referrers:  # v1.1: signatures, attestations, SBOMs that travel with it
                print(f"      referrer {referrer.digest}  {referrer.artifact_type or referrer.media_type}" + (f"  tag {referrer.tag}" if referrer.tag else f"  subject {referrer.subject[:19]}"))
            shared = sharing[artifact.id]
            if shared.shared_with:
                print(f"      shares {human(shared.shared_bytes)} of {human(shared.total_bytes)} with {', '.join(shared.shared_with)}")
            continue
        ref = artifact.source.pinned
        print(f"  {artifact.id:50} {artifact.kind:11} {len(artifact.files):6} files {human(artifact.total_bytes):>11}  {ref}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from airlift.transport.engine import check_pair, parse_endpoint
    from airlift.transport.local import DirEndpoint

    source = parse_endpoint(args.src, argument="SRC")
    check_pair(source, parse_endpoint(args.to, argument="--to"))
    if isinstance(source, DirEndpoint):
        source.bundle.read_manifest()
    if args.ssh_key and not Path(args.ssh_key).is_file():
        raise InputError(f"--ssh-key {args.ssh_key}: no such file")
    for option in args.ssh_option:
        if "=" not in option:
            raise InputError(f"--ssh-option {option!r}: expected KEY=VALUE")
    transfer_bundle = _flow("transfer")
    result = transfer_bundle(
        src=args.src, dest=args.to, ssh_key=args.ssh_key, ssh_options=args.ssh_option, s3_endpoint=args.s3_endpoint, recheck=args.recheck,
    )
    if getattr(args, "json", False):
        _print_json("transfer", result.model_dump(mode="json") | {"ok": True})
        return 0
    print(result.summary())
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from airlift.ingest.prepare import prepare_ingest

    prepared = prepare_ingest(args.bundle, args.site, [str(k) for k in args.pubkey], hand_off=True)  # the flow's same call takes this
    if prepared.site.shared_root:  # refused here too, before a flow run starts: nothing is written
        from airlift.ingest import rollback

        rollback.check(prepared.site.shared_root, prepared.opened.manifest, prepared.opened.sha256, origin=str(args.bundle), allow_older=args.allow_older)
    profile, opened = prepared.site, prepared.opened
    since = opened.manifest.since
    if since is not None and since.name.startswith("inventory:") and profile.store is None:
        # v1.1: a delta computed from the site's inventory leaves out the blobs the site's store holds.
        raise InputError(f"{args.site}: store: required to ingest {args.bundle}, a delta built against {since.name.removeprefix('inventory:')}")
    ingest_bundle = _flow("ingest")
    summary = ingest_bundle(bundle=str(args.bundle), site=str(args.site), pubkeys=[str(k) for k in args.pubkey], allow_older=args.allow_older)
    if getattr(args, "json", False):
        _print_json("ingest", summary.model_dump(mode="json") | {"ok": True})
        return 0
    # Only the sinks this site has: "S3 0 uploaded" for a site with no S3 reads as a failure.
    sinks = [f"S3 {summary.s3_uploaded} uploaded ({human(summary.s3_bytes)}), {summary.s3_skipped} already there, "
             f"at s3://{profile.s3.bucket}/{profile.s3.prefix}"] if profile.s3 else []
    if profile.shared_root:
        sinks.append(f"shared_root {summary.materialized} placed, {summary.materialized_skipped} already there, under {profile.shared_root}")
    print(f"ingested {summary.artifacts} artifacts" + (f": {'; '.join(sinks)}" if sinks else ""))
    if summary.image_refs or summary.images_loaded:
        print(
            f"images: {summary.images_pushed} pushed, {summary.images_present} already in the registry; "
            f"blobs {summary.blobs_uploaded} uploaded, {summary.blobs_mounted} mounted, {summary.blobs_skipped} already there; "
            f"{summary.images_loaded} loaded into Docker"
        )
        for original, target in sorted(summary.image_refs.items()):
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
    if result.changed:
        print(f"new bundle {result.bundle}: {result.blobs_written} blobs" + (f", delta since {result.since}" if result.since else ""))
    else:
        print(f"nothing changed upstream since {result.since}; no bundle written")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from airlift.config.site import load_site
    from airlift.jobs.common import select_jobs, spec_of
    from airlift.jobs.sites import require_scheduler

    profile = load_site(args.site)
    manifest = _open_trusted(args.bundle, _trusted_keys(args, profile)).manifest
    job_site = require_scheduler(profile, source=str(args.site))
    select_jobs(spec_of(manifest), args.job)
    if getattr(args, "dry_run", False):  # renders only: no flow run, nothing created, nothing submitted
        from airlift.jobs.dryrun import dry_run

        print(dry_run(manifest, job_site, args.job), end="")
        return 0
    result = _flow("submit")(
        bundle=str(args.bundle), site=str(args.site), jobs=args.job, wait=args.wait, force=args.force, pubkeys=[str(k) for k in args.pubkey],
        stream=args.wait,
    )
    print(f"submitted: {', '.join(result.submitted) or 'nothing new'}")
    for name, info in result.jobs.items():
        print(f"  {name:20} job {info.id:>8}  {info.state or ''}  log {info.log}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # A long-lived server, not a batch workflow: it runs outside Prefect so no flow run stays open forever.
    from airlift.config.site import load_site
    from airlift.serve.server import serve

    keys = _trusted_keys(args, load_site(args.site) if args.site else None)
    if args.max_connections < 1 or args.header_timeout <= 0:
        raise InputError("--max-connections and --header-timeout must be positive")
    serve(args.path, host=args.host, port=args.port, trusted_keys=[Path(k) for k in keys],
          max_connections=args.max_connections, header_timeout=args.header_timeout)
    return 0

"""The local maintenance commands: the download cache (`cache info|prune`) and the embedded server.

Neither runs a flow: they look after this machine's own state, with nothing to retry or observe.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from airlift.util.errors import InputError
from airlift.util.units import human


def cmd_cache_info(args: argparse.Namespace) -> int:
    """`airlift cache info`: local maintenance, no flow run (nothing to retry, cache or observe)."""
    from airlift.fetch.cache import Cache
    from airlift.fetch.cache_prune import cache_info

    info = cache_info(Cache())
    if args.json:
        print(info.model_dump_json(indent=1))
        return 0
    print(f"cache {info.root}: {human(info.total_bytes)}")
    print(
        f"  blobs    {info.blobs} ({human(info.blob_bytes)}); referenced by no record: "
        f"{info.unreferenced_blobs} ({human(info.unreferenced_bytes)})"
    )
    print(f"  records  {info.records}; ETag entries {info.etags}; pending uploads {info.pending_uploads}")
    print(
        f"  temp     {info.partials} partial downloads ({human(info.partial_bytes)}, {info.partials_in_use} in use); "
        f"{info.stale_temp} stale temp files ({human(info.stale_temp_bytes)}); {info.stale_locks} stale locks"
    )
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    """`airlift cache prune`: local maintenance, no flow run; safe beside a running build."""
    from airlift.bundle.layout import Bundle
    from airlift.fetch.cache import Cache, parse_age
    from airlift.fetch.cache_prune import prune_cache

    age = 0.0 if args.all else parse_age(args.older_than)
    for bundle in args.keep_bundle:  # a wrong --keep-bundle stops prune before it removes anything
        if not Path(bundle, "manifest.json").is_file():
            raise InputError(f"--keep-bundle {bundle}: not a bundle (no manifest.json)")
        Bundle(bundle).read_manifest()
    cache = Cache()
    report = prune_cache(cache, older_than=age, keep_bundles=args.keep_bundle, dry_run=args.dry_run,
                         records=args.records or args.all, artifacts=args.artifact)
    verb = "would remove" if report.dry_run else "removed"
    print(
        f"{verb} from {cache.root}: {report.records_removed} records, {report.blobs_removed} blobs ({human(report.blob_bytes_removed)}), "
        f"{report.partials_removed} partial downloads ({human(report.partial_bytes_removed)}), "
        f"{report.temp_removed} temp files ({human(report.temp_bytes_removed)}), {report.locks_removed} locks, "
        f"{report.etags_removed} ETag entries, {report.indexes_removed} image-layer index entries"
    )
    print(
        f"kept: {report.blobs_kept_young} unreferenced blobs and {report.partials_kept_young} partials younger than "
        f"{args.older_than}, {report.partials_kept_in_use} partials in use"
    )
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    """`airlift server status|start|stop`: the embedded local Prefect server (no flow run of its own)."""
    from airlift.cli.server import EmbeddedServer

    server = EmbeddedServer()
    if args.action == "start":
        if args.port is not None and not 0 < args.port < 65536:
            raise InputError(f"--port {args.port}: expected a port number 1-65535")
        state = server.ensure(announce=False, port=args.port)
        print(f"running: {state.url.removesuffix('/api')} (pid {state.pid}, home {server.home})")
        return 0
    if args.action == "stop":
        print("stopped" if server.stop() else "not running")
        return 0
    state = server.state()
    if state is None:
        print(f"not running (home {server.home})")
        return 1
    healthy = server.healthy(state)
    print(f"{'running' if healthy else 'not answering'}: {state.url.removesuffix('/api')} (pid {state.pid}, home {server.home}, log {server.log_path})")
    return 0 if healthy else 1

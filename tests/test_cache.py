"""`airlift cache info` and `airlift cache prune` on a cache a real build filled, then rebuilds that
fetch nothing that prune kept (and exactly what it removed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

from airlift.bundle.store import BlobStore
from tests.conftest import sha256sum_check
from tests.fixtures import add_dataset, add_model, pseudo_random, sha256

LONG_AGO = time.time() - 3 * 86400


def _info(ws) -> dict:
    return json.loads(ws.run("cache", "info", "--json").stdout)


def test_cache_info_and_prune_then_rebuild_downloads_only_what_prune_removed(ws, hub):
    model = add_model(hub, "acme/cache-model", weights_size=600_000, seed=31)
    dataset = add_dataset(hub, "acme/cache-data", seed=32)
    spec = ws.write("cache.yaml", "name: cache\nmodels:\n  - hf: acme/cache-model\ndatasets:\n  - hf: acme/cache-data\n")
    ws.run("build", str(spec), "--out", "b1")
    cache_root = ws.root / "cache"
    store = BlobStore(cache_root)
    built = _info(ws)
    assert built["records"] == 2 and built["blobs"] == 8 and built["unreferenced_blobs"] == 0

    # What interrupted work leaves: a blob no record names, a partial download and a temp file of dead writers.
    loose = store.put_bytes(pseudo_random(300_000, 33)).sha256
    partial = store.tmp_dir / "hf-killed.part"
    partial.write_bytes(pseudo_random(200_000, 34))
    dead = subprocess.Popen(["true"])
    dead.wait()
    temp = store.tmp_dir / f"{socket.gethostname().replace('.', '-')}.{dead.pid}.x.tmp"
    temp.write_bytes(b"half a blob")
    for path in (store.blob_path(loose), partial, temp):
        os.utime(path, (LONG_AGO, LONG_AGO))
    young = b"written a moment ago by a build still running"
    young_loose = store.put_bytes(young).sha256

    info = _info(ws)
    assert (info["blobs"], info["unreferenced_blobs"]) == (10, 2)
    assert (info["partials"], info["partials_in_use"], info["partial_bytes"]) == (1, 0, 200_000)
    content = sum(len(d) for d in [*model.values(), *dataset.values()])
    assert info["blob_bytes"] == content + 300_000 + len(young)
    assert info["stale_temp"] == 1 and info["total_bytes"] > info["blob_bytes"] + 200_000
    text = ws.run("cache", "info").stdout
    assert f"cache {cache_root}" in text and "referenced by no record: 2" in text

    pruned = ws.run("cache", "prune").stdout  # default: older than 24h
    assert "removed from" in pruned and "1 blobs (293.0 KiB)" in pruned and "1 partial downloads" in pruned
    assert not store.has(loose) and store.has(young_loose) and not partial.exists() and not temp.exists()
    after = _info(ws)
    assert (after["blobs"], after["unreferenced_blobs"], after["partials"], after["stale_temp"]) == (9, 1, 0, 0)

    # Everything a record names was kept: a build into a new --out fetches nothing.
    hub.reset_counters()
    ws.run("build", str(spec), "--out", "b2")
    assert hub.content_bytes == 0, "a build after prune refetched content prune kept"
    assert sha256sum_check(ws.root / "b2").returncode == 0

    # The model's record goes (as if it were never saved); --keep-bundle still keeps its blobs.
    model_record = next(p for p in (cache_root / "records").glob("*.json") if "cache-model" in p.read_text())
    model_record.unlink()
    ws.run("cache", "prune", "--older-than", "0s", "--keep-bundle", "b1")
    assert all(store.has(sha256(data)) for data in model.values())
    assert not store.has(young_loose)
    hub.reset_counters()
    ws.run("build", str(spec), "--out", "b3")
    assert hub.content_bytes == 0, "blobs kept for --keep-bundle were fetched again"

    # The rebuild saved the model's record again: take it away once more, and prune without the bundle.
    next(p for p in (cache_root / "records").glob("*.json") if "cache-model" in p.read_text()).unlink()
    ws.run("cache", "prune", "--older-than", "0s")
    assert not any(store.has(sha256(data)) for data in model.values())
    hub.reset_counters()
    ws.run("build", str(spec), "--out", "b4")
    assert hub.content_bytes == sum(len(data) for data in model.values()), "a rebuild fetched more than prune removed"
    assert sha256sum_check(ws.root / "b4").returncode == 0

    bad = ws.run("cache", "prune", "--keep-bundle", "nowhere", expect=2)
    assert bad.stderr.strip() == "airlift: error: --keep-bundle nowhere: not a bundle (no manifest.json)"
    assert ws.run("cache", "prune", "--older-than", "soon", expect=2).stderr.count("\n") == 1

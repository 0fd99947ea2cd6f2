"""Registry blobs over parallel byte ranges (issue 24), in-process against the stand-in's registry routes.

The stand-in (airlift/testing/hubserver.py) serves `/v2/<repo>/manifests/<ref>` and `/v2/<repo>/blobs/<digest>`
with Range support, a per-connection rate cap and counters; the real registries' run is tests/test_large_layers.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading

import pytest

from airlift.fetch import image
from airlift.fetch.base import FetchContext
from airlift.fetch.cache import Cache
from airlift.oci.client import RegistryClient
from airlift.testing.hubserver import HubServer
from airlift.util.errors import IntegrityError

RANGE = 256 << 10
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def registry():
    server = HubServer().start()
    yield server
    server.stop()


def _image(server: HubServer, layer: bytes) -> tuple[str, str]:
    """Publish a one-layer image under acme/app:1; (its reference, the layer's digest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    descriptors = [{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": server.add_blob(config), "size": len(config)}]
    descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": server.add_blob(layer), "size": len(layer)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptors[0], "layers": descriptors[1:]}).encode()
    server.add_manifest("acme/app", "1", manifest, OCI_MANIFEST)
    return f"{server.url.removeprefix('http://')}/acme/app:1", descriptors[1]["digest"]


def _ctx(tmp_path, server: HubServer, seen: list[int] | None = None) -> FetchContext:
    return FetchContext(
        cache=Cache(tmp_path / "cache"), attempts=4, insecure_registries=frozenset({server.url.removeprefix("http://")}),
        on_bytes=None if seen is None else seen.append,
    )


def _leftovers(tmp_path) -> list:
    return [p.name for p in (tmp_path / "cache" / ".tmp").glob("*") if p.suffix in (".part", ".ranges")]


def test_a_large_layer_comes_over_several_connections_byte_identical(tmp_path, registry, small_ranges, monkeypatch):
    monkeypatch.setenv("AIRLIFT_MAX_PER_HOST", "4")
    layer = random.Random(5).randbytes(12 * RANGE + 77)
    ref, digest = _image(registry, layer)
    registry.set_faults(bytes_per_second=2 << 20)  # per connection: one stream alone would take ~1.5 s
    seen: list[int] = []
    ctx = _ctx(tmp_path, registry, seen)
    resolved = image.resolve(ref, artifact_id="images/acme/app:1", ctx=ctx)
    registry.reset_counters()
    artifact = image.fetch(resolved, ctx)
    assert digest in artifact.blobs
    assert ctx.cache.store.blob_path(digest.removeprefix("sha256:")).read_bytes() == layer
    assert 2 <= registry.peak_streams <= 4  # ranges at once, within the per-host cap
    assert len(layer) <= registry.content_bytes < len(layer) + 4096  # the layer once (plus the small config and manifest)
    assert sum(seen) >= len(layer) and sum(seen) < len(layer) + 4096  # progress counts the layer's bytes once
    assert not _leftovers(tmp_path)


def test_a_per_host_cap_of_one_does_not_deadlock_the_layer_and_its_ranges(tmp_path, registry, small_ranges, monkeypatch):
    # The layer's caller holds no host slot while its ranges wait for one: with a cap of 1 they go one at a time.
    monkeypatch.setenv("AIRLIFT_MAX_PER_HOST", "1")
    layer = random.Random(6).randbytes(6 * RANGE)
    ref, digest = _image(registry, layer)
    ctx = _ctx(tmp_path, registry)
    resolved = image.resolve(ref, artifact_id="images/acme/app:1", ctx=ctx)
    fetched: list = []
    worker = threading.Thread(target=lambda: fetched.append(image.fetch(resolved, ctx)), daemon=True)
    worker.start()
    worker.join(120)  # a deadlock fails here instead of hanging the suite
    assert fetched, "the fetch did not finish within 120 s: the layer and its ranges deadlocked on the host slot"
    assert ctx.cache.store.blob_path(digest.removeprefix("sha256:")).read_bytes() == layer
    assert registry.peak_streams == 1 and digest in fetched[0].blobs


def test_a_registry_that_ignores_range_still_serves_the_layer_over_one_stream(tmp_path, registry, small_ranges):
    layer = random.Random(7).randbytes(5 * RANGE)
    _, digest = _image(registry, layer)
    registry.set_faults(ignore_range=True)
    ctx = _ctx(tmp_path, registry)
    client = RegistryClient(registry.url.removeprefix("http://"), registry=registry.url.removeprefix("http://"), insecure=True)
    try:
        got = client.pull_blob_ranged("acme/app", digest, store=ctx.cache.store, size=len(layer))
    finally:
        client.close()
    assert got is not None and got.sha256 == hashlib.sha256(layer).hexdigest()
    assert registry.content_bytes == len(layer)  # the 200 answer was taken as the one stream, not read twice


def test_a_layer_whose_bytes_do_not_match_its_digest_is_refused(tmp_path, registry, small_ranges):
    layer = random.Random(8).randbytes(5 * RANGE)
    _, digest = _image(registry, layer)
    registry.files[f"blob:{digest}"] = random.Random(9).randbytes(len(layer))  # the registry now lies
    ctx = _ctx(tmp_path, registry)
    client = RegistryClient(registry.url.removeprefix("http://"), registry=registry.url.removeprefix("http://"), insecure=True)
    try:
        with pytest.raises(IntegrityError, match="does not match"):
            client.pull_blob_ranged("acme/app", digest, store=ctx.cache.store, size=len(layer))
    finally:
        client.close()
    assert not ctx.cache.store.has(digest.removeprefix("sha256:")) and not _leftovers(tmp_path)


def test_a_resumed_layer_the_registry_will_not_range_is_finished_by_the_one_stream_path(tmp_path, registry, small_ranges):
    # A ranged partial left by a killed run, then a registry that ignores Range: pull_blob_ranged gives
    # up (None) and image.fetch completes the layer through pull_blob's single stream.
    layer = random.Random(10).randbytes(6 * RANGE)
    ref, digest = _image(registry, layer)
    ctx = _ctx(tmp_path, registry)
    ctx.cache.store.ensure_dirs()
    base = ctx.cache.store.tmp_dir / f"oci-{digest.removeprefix('sha256:')}-r"
    base.with_suffix(".part").write_bytes(layer[:RANGE] + bytes(5 * RANGE))
    base.with_suffix(".ranges").write_text(json.dumps({"size": len(layer), "range_size": RANGE, "etag": None, "done": [0]}))
    registry.set_faults(ignore_range=True)
    artifact = image.fetch(image.resolve(ref, artifact_id="images/acme/app:1", ctx=ctx), ctx)
    assert digest in artifact.blobs
    assert ctx.cache.store.blob_path(digest.removeprefix("sha256:")).read_bytes() == layer

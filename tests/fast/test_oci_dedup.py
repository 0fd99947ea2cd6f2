"""Layer dedup by content: the diff_id map, gzip of new engine layers, and plan counting shared bytes once."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

from airlift.bundle.store import BlobStore
from airlift.fetch.plan import ArtifactPlan, Plan
from airlift.oci.dedup import OCI_LAYER_GZIP, LayerBlob, LayerIndex, gzip_layer
from airlift.util.names import Digest


def _registry_image(store: BlobStore, layers: list[bytes], media_type: str) -> tuple[dict, dict, list[str]]:
    compressed = [gzip.compress(data, mtime=0) for data in layers]
    digests = ["sha256:" + store.put_bytes(c).sha256 for c in compressed]
    manifest = {"layers": [{"mediaType": media_type, "digest": d, "size": len(c)} for d, c in zip(digests, compressed, strict=True)]}
    config = {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(d).hexdigest() for d in layers]}}
    return manifest, config, digests


def test_a_pulled_image_teaches_diff_id_to_blob_and_docker_types_become_oci(tmp_path):
    store = BlobStore(tmp_path)
    index = LayerIndex(tmp_path, store)
    manifest, config, digests = _registry_image(store, [b"base layer", b"app layer"], "application/vnd.docker.image.rootfs.diff.tar.gzip")
    assert index.learn(manifest, config) == 2
    found = index.lookup(config["rootfs"]["diff_ids"][0])
    assert found == LayerBlob(media_type=OCI_LAYER_GZIP, digest=digests[0], size=manifest["layers"][0]["size"])
    # Content is truth: an entry whose blob left the store counts for nothing.
    os.chmod(store.blob_path(digests[0][7:]), 0o644)
    store.blob_path(digests[0][7:]).unlink()
    assert index.lookup(config["rootfs"]["diff_ids"][0]) is None
    assert index.lookup(config["rootfs"]["diff_ids"][1]) is not None


def test_zstd_and_mismatched_images_are_not_learned(tmp_path):
    store = BlobStore(tmp_path)
    index = LayerIndex(tmp_path, store)
    manifest, config, _ = _registry_image(store, [b"z"], "application/vnd.oci.image.layer.v1.tar+zstd")
    assert index.learn(manifest, config) == 0  # zstd is not what `docker load` of older engines accepts
    manifest, config, _ = _registry_image(store, [b"a", b"b"], OCI_LAYER_GZIP)
    config["rootfs"]["diff_ids"].pop()
    assert index.learn(manifest, config) == 0  # layers and diff_ids must pair up one to one
    assert index.learn({"layers": "hostile"}, {"rootfs": {"diff_ids": 3}}) == 0


def test_gzip_layer_is_deterministic_and_names_the_uncompressed_content(tmp_path):
    store = BlobStore(tmp_path)
    data = os.urandom(300_000) + b"text " * 200_000
    seen: list[int] = []
    diff_id, blob = gzip_layer(io.BytesIO(data), store=store, on_bytes=seen.append)
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    stored = store.blob_path(blob.sha256).read_bytes()
    assert gzip.decompress(stored) == data and hashlib.sha256(stored).hexdigest() == blob.sha256
    assert blob.size < len(data) and sum(seen) == len(data)
    again_id, again = gzip_layer(io.BytesIO(data), store=BlobStore(tmp_path / "other"))
    assert (again_id, again.sha256) == (diff_id, blob.sha256), "the same layer compresses to the same blob"


def test_the_first_blob_learned_for_a_diff_id_stays(tmp_path):
    store = BlobStore(tmp_path)
    index = LayerIndex(tmp_path, store)
    first = store.put_bytes(b"first form")
    second = store.put_bytes(b"second form")
    index.remember("sha256:" + "a" * 64, LayerBlob(media_type=OCI_LAYER_GZIP, digest=f"sha256:{first.sha256}", size=first.size))
    index.remember("sha256:" + "a" * 64, LayerBlob(media_type=OCI_LAYER_GZIP, digest=f"sha256:{second.sha256}", size=second.size))
    assert index.lookup("sha256:" + "a" * 64).digest == f"sha256:{first.sha256}"


def test_plan_counts_a_shared_layer_once():
    shared, own_a, own_b = "1" * 64, "2" * 64, "3" * 64
    a = ArtifactPlan("images/a", "image", "sha256:a", 2, 150, 0, 1, 100, digests={shared: (100, True), own_a: (50, False)})
    b = ArtifactPlan("images/b", "image", "sha256:b", 2, 110, 0, 0, 0, digests={shared: (100, False), own_b: (10, False)})
    plan = Plan([a, b])
    assert (a.shared_bytes, b.shared_bytes) == (0, 100)
    totals = plan.totals
    assert totals["bytes"] == 160 and totals["shared_bytes"] == 100
    assert totals["cached_bytes"] == 100 and totals["to_fetch_bytes"] == 60


def test_a_registry_claiming_a_foreign_diff_id_is_not_believed(tmp_path):
    # A hostile image claims the diff_id of a popular base for a blob of its own.
    store = BlobStore(tmp_path)
    index = LayerIndex(tmp_path, store)
    base = b"the real base layer" * 1000
    base_diff_id = "sha256:" + hashlib.sha256(base).hexdigest()
    evil = gzip.compress(b"attacker's files", mtime=0)
    evil_digest = "sha256:" + store.put_bytes(evil).sha256
    manifest = {"layers": [{"mediaType": OCI_LAYER_GZIP, "digest": evil_digest, "size": len(evil)}]}
    assert index.learn(manifest, {"rootfs": {"diff_ids": [base_diff_id]}}) == 1
    assert index.lookup(base_diff_id, checked_only=True) is None, "a claim is not a checked entry"
    assert index.confirm(base_diff_id) is None, "the blob does not decompress to the claimed diff_id"
    assert index.lookup(base_diff_id) is None, "a false claim is forgotten"
    # The genuine layer, made by airlift itself, is then what the diff_id maps to.
    diff_id, blob = gzip_layer(io.BytesIO(base), store=store)
    index.remember(diff_id, LayerBlob(media_type=OCI_LAYER_GZIP, digest=f"sha256:{blob.sha256}", size=blob.size, checked=True))
    assert index.confirm(base_diff_id).digest == f"sha256:{blob.sha256}"


def test_a_true_claim_is_checked_once_and_replaces_nothing_checked(tmp_path):
    store = BlobStore(tmp_path)
    index = LayerIndex(tmp_path, store)
    layers = [os.urandom(200_000), b""]
    # Two gzip members in one blob (as some tools write) decompress to the layer as `docker load` reads it.
    two_members = gzip.compress(layers[0][:1000], mtime=0) + gzip.compress(layers[0][1000:], mtime=0)
    digest = "sha256:" + store.put_bytes(two_members).sha256
    empty = gzip.compress(b"", mtime=0)
    manifest = {"layers": [{"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": len(two_members)},
                           {"mediaType": OCI_LAYER_GZIP, "digest": "sha256:" + store.put_bytes(empty).sha256, "size": len(empty)}]}
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    assert index.learn(manifest, {"rootfs": {"diff_ids": diff_ids}}) == 2
    confirmed = index.confirm(diff_ids[0])
    assert confirmed is not None and confirmed.checked and confirmed.digest == digest
    assert index.lookup(diff_ids[0], checked_only=True) == confirmed, "the check is recorded: later uses read nothing"
    assert index.confirm(diff_ids[1]).checked
    # A later claim (even a true one from another image) does not replace a checked entry.
    other = store.put_bytes(gzip.compress(layers[0], mtime=0))
    index.remember(diff_ids[0], LayerBlob(media_type=OCI_LAYER_GZIP, digest=f"sha256:{other.sha256}", size=other.size))
    assert index.lookup(diff_ids[0]).digest == digest


def test_a_blob_that_is_not_gzip_is_not_confirmed(tmp_path):
    store = BlobStore(tmp_path)
    index = LayerIndex(tmp_path, store)
    junk = b"not gzip at all" * 100
    stored = store.put_bytes(junk)
    diff_id = "sha256:" + hashlib.sha256(junk).hexdigest()
    index.remember(diff_id, LayerBlob(media_type=OCI_LAYER_GZIP, digest=f"sha256:{stored.sha256}", size=stored.size))
    assert index.confirm(diff_id) is None


def test_only_whole_gzip_checks_out(tmp_path):
    from airlift.oci.dedup import _uncompressed_sha256

    data = os.urandom(100_000)
    whole = gzip.compress(data, mtime=0)
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    cases = {"whole": whole, "no trailer": whole[:-8], "cut": whole[: len(whole) // 2], "garbage after": whole + b"junk",
             "empty": b"", "two members": gzip.compress(data[:10], mtime=0) + gzip.compress(data[10:], mtime=0)}
    got = {}
    for name, blob in cases.items():
        path = tmp_path / name.replace(" ", "-")
        path.write_bytes(blob)
        got[name] = _uncompressed_sha256(path, gzipped=True)
    assert got == {"whole": expected, "no trailer": None, "cut": None, "garbage after": None, "empty": None, "two members": expected}
    zeros = tmp_path / "zeros"
    zeros.write_bytes(gzip.compress(bytes(48 << 20), mtime=0))  # ~47 KiB that inflate to 48 MiB, CHUNK by CHUNK
    assert _uncompressed_sha256(zeros, gzipped=True) == "sha256:" + hashlib.sha256(bytes(48 << 20)).hexdigest()


def test_a_cached_engine_image_record_built_on_an_unchecked_claim_is_not_reused(tmp_path):
    # The state an older version left: an unchecked registry claim, and an engine image's records built on it.
    import json

    from airlift.bundle.manifest import parse_artifact
    from airlift.fetch import image
    from airlift.fetch.base import FetchContext, Resolved
    from airlift.fetch.cache import Cache

    cache = Cache(tmp_path / "cache")
    ctx, store = FetchContext(cache=cache), cache.store
    base_diff_id = "sha256:" + hashlib.sha256(b"real base" * 1000).hexdigest()
    evil = store.put_bytes(gzip.compress(b"attacker", mtime=0))
    LayerIndex(cache.root, store).remember(base_diff_id, LayerBlob(media_type=OCI_LAYER_GZIP, digest=f"sha256:{evil.sha256}", size=evil.size))
    config = store.put_bytes(json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": [base_diff_id]}}).encode())
    image_id = f"sha256:{config.sha256}"
    manifest = store.put_bytes(json.dumps({"schemaVersion": 2, "config": {"digest": image_id, "size": config.size},
                                           "layers": [{"digest": f"sha256:{evil.sha256}", "size": evil.size}]}).encode())
    resolved = Resolved("images/app", "image", {"ref": "app:1", "from": "docker", "image_id": image_id, "repository": "library/app", "tag": "1", "platform": "linux/amd64"})
    cache.save(resolved.cache_key, parse_artifact({
        "id": "images/app", "kind": "image", "source": resolved.source.model_dump(mode="json", by_alias=True, exclude_none=True),
        "image": {"ref": "app:1", "digest": f"sha256:{manifest.sha256}", "platform": "linux/amd64", "media_type": "application/vnd.oci.image.manifest.v1+json",
                  "size": 1, "config": image_id, "layers": [f"sha256:{evil.sha256}"], "repository": "library/app", "tag": "1"},
        "blobs": [f"sha256:{manifest.sha256}", image_id, f"sha256:{evil.sha256}"],
    }))
    (cache.root / "engine").mkdir()
    (cache.root / "engine" / f"{config.sha256}.json").write_text(json.dumps({"manifest": f"sha256:{manifest.sha256}"}))

    cached = cache.load(resolved.cache_key)
    assert cached is not None and not image.still_sound(cached, ctx), "a record naming an unchecked claim is not reused"
    # The same shape with the genuine layer, checked, is reused as it is.
    real = gzip_layer(io.BytesIO(b"real base" * 1000), store=store)[1]
    LayerIndex(cache.root, store).remember(base_diff_id, LayerBlob(media_type=OCI_LAYER_GZIP, digest=f"sha256:{real.sha256}", size=real.size, checked=True))
    sound = store.put_bytes(json.dumps({"schemaVersion": 2, "config": {"digest": image_id, "size": config.size},
                                        "layers": [{"digest": f"sha256:{real.sha256}", "size": real.size}]}).encode())
    (cache.root / "engine" / f"{config.sha256}.json").write_text(json.dumps({"manifest": f"sha256:{sound.sha256}"}))
    good = cached.model_copy(update={"image": cached.image.model_copy(update={"digest": Digest(sound.sha256)})})
    assert image.still_sound(good, ctx)


def test_a_digest_with_a_trailing_newline_is_refused_everywhere():
    """`$` in a regex also matches before a final newline: a registry's `sha256:<hex>\\n` diff_id must not
    become a layer-index file name with a control character in it (nor a blob name)."""
    from pathlib import Path

    import pytest

    from airlift.bundle.store import BlobStore

    hexdigest = "a" * 64
    for bad in (f"sha256:{hexdigest}\n", f"{hexdigest}\n"):
        with pytest.raises(ValueError):
            Digest(bad)
    with pytest.raises(ValueError):
        BlobStore(Path("/nonexistent")).blob_path(f"{hexdigest}\n")

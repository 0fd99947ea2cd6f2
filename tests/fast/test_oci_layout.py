"""The bundle as an OCI image layout: index.json derived from the manifest, pinned and verified."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path

from airlift.bundle.layout import Bundle
from airlift.bundle.manifest import Artifact, Manifest, now_iso, parse_artifact
from airlift.bundle.oci_layout import DOCKER_MANIFEST, OCI_MANIFEST, REF_NAME, index_bytes, oci_form, ref_name
from airlift.bundle.sharing import image_sharing
from airlift.bundle.verify import verify_bundle


def _put(bundle: Bundle, data: bytes) -> str:
    return "sha256:" + bundle.store.put_bytes(data).sha256


def _image(bundle: Bundle, ref: str, layers: list[bytes], *, docker_v2: bool = True) -> Artifact:
    """An image artifact whose manifest, config and layers are stored in `bundle` (what build writes)."""
    bundle.store.ensure_dirs()
    digests = [_put(bundle, gzip.compress(data, mtime=0)) for data in layers]
    sizes = [len(gzip.compress(data, mtime=0)) for data in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        "sha256:" + hashlib.sha256(d).hexdigest() for d in layers]}}).encode()
    config_digest = _put(bundle, config)
    kind = ("application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip") if docker_v2 else (
        "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip")
    manifest = {
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST if docker_v2 else OCI_MANIFEST,
        "config": {"mediaType": kind[0], "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": kind[1], "size": s, "digest": d} for d, s in zip(digests, sizes, strict=True)],
    }
    raw = json.dumps(manifest, indent=3).encode()
    digest = _put(bundle, raw)
    blobs = [digest, config_digest, *digests]
    if docker_v2:
        blobs.append(_put(bundle, oci_form(raw)))
    repository, _, tag = ref.partition("/")[2].rpartition(":")
    return parse_artifact({
        "id": f"images/{ref}", "kind": "image", "blobs": blobs,
        "source": {"ref": ref, "from": "registry", "registry": ref.split("/")[0], "repository": repository, "tag": tag,
                   "digest": digest, "platform": "linux/amd64"},
        "image": {"ref": ref, "digest": digest, "platform": "linux/amd64", "media_type": manifest["mediaType"], "size": len(raw),
                  "config": config_digest, "layers": digests, "repository": repository, "tag": tag},
    })


def _bundle(root: Path, artifacts: list[Artifact]) -> Bundle:
    bundle = Bundle(root)
    bundle.write_manifest(Manifest(name="oci", created=now_iso(), artifacts=artifacts))
    return bundle


def test_index_names_each_whole_image_by_its_ref_and_sha256sums_pins_it(tmp_path):
    bundle = Bundle(tmp_path / "b")
    a = _image(bundle, "reg.example:5000/team/app-a:1", [b"base", b"a"])
    b = _image(bundle, "reg.example:5000/team/app-b:1", [b"base", b"b"], docker_v2=False)
    _bundle(bundle.root, [a, b])
    assert json.loads((bundle.root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((bundle.root / "index.json").read_bytes())
    entries = {m["annotations"][REF_NAME]: m for m in index["manifests"]}
    assert set(entries) == {"reg.example:5000/team/app-a:1", "reg.example:5000/team/app-b:1"}
    # The Docker v2 image is listed by its OCI form (a carried blob); the OCI one by its own digest.
    a_entry, b_entry = entries["reg.example:5000/team/app-a:1"], entries["reg.example:5000/team/app-b:1"]
    assert a_entry["mediaType"] == OCI_MANIFEST and a_entry["digest"] in a.blobs and a_entry["digest"] != a.image.digest
    assert b_entry["digest"] == b.image.digest and b_entry["platform"] == {"os": "linux", "architecture": "amd64"}
    for entry in (a_entry, b_entry):
        assert (bundle.root / "blobs/sha256" / entry["digest"][7:]).stat().st_size == entry["size"]
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=bundle.root, capture_output=True, text=True)
    assert check.returncode == 0 and "index.json: OK" in check.stdout and "oci-layout: OK" in check.stdout
    assert verify_bundle(bundle).ok


def test_oci_form_is_deterministic_and_keeps_the_blobs(tmp_path):
    bundle = Bundle(tmp_path / "b")
    artifact = _image(bundle, "reg.example/x/y:1", [b"one", b"two"])
    raw = bundle.store.blob_path(artifact.image.digest[7:]).read_bytes()
    converted = json.loads(oci_form(raw))
    assert oci_form(raw) == oci_form(raw)
    assert converted["mediaType"] == OCI_MANIFEST and converted["config"]["digest"] == artifact.image.config
    assert [layer["digest"] for layer in converted["layers"]] == artifact.image.layers
    assert {layer["mediaType"] for layer in converted["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    assert oci_form(json.dumps(converted).encode()) is None, "an OCI manifest needs no conversion"
    assert oci_form(b"not json") is None


def test_a_delta_lists_only_images_it_holds_whole(tmp_path):
    bundle = Bundle(tmp_path / "b")
    whole = _image(bundle, "reg.example/x/whole:1", [b"w"])
    partial = _image(bundle, "reg.example/x/partial:1", [b"p1", b"p2"])
    bundle.store.blob_path(partial.image.layers[0][7:]).unlink()  # lent by the delta's lineage
    _bundle(bundle.root, [partial, whole])
    names = [m["annotations"][REF_NAME] for m in json.loads((bundle.root / "index.json").read_bytes())["manifests"]]
    assert names == ["reg.example/x/whole:1"]


def test_ref_names_follow_the_grammar_skopeo_accepts(tmp_path):
    bundle = Bundle(tmp_path / "b")
    plain = _image(bundle, "reg.example:5000/team/app:1.0-rc1", [b"x"])
    assert ref_name(plain) == "reg.example:5000/team/app:1.0-rc1"
    odd = _image(bundle, "reg.example/team/my__app:1", [b"y"])
    assert ref_name(odd) is None  # `__` is a Docker separator, not one of containers/image's
    index = json.loads(index_bytes(Manifest(name="n", created=now_iso(), artifacts=[odd]), blob_size=bundle.blob_size, read_blob=bundle.read_small_blob))
    assert REF_NAME not in index["manifests"][0]["annotations"]
    assert index["manifests"][0]["annotations"]["io.airlift.artifact.id"] == odd.id


def test_verify_refuses_a_hostile_index_and_accepts_a_bundle_from_before_the_layout(tmp_path):
    bundle = Bundle(tmp_path / "b")
    artifact = _image(bundle, "reg.example/x/y:1", [b"z"])
    _bundle(bundle.root, [artifact])
    good = (bundle.root / "index.json").read_bytes()
    hostile = json.loads(good)
    hostile["manifests"][0]["digest"] = "sha256:" + "0" * 64  # points elsewhere: never followed, reported
    (bundle.root / "index.json").write_text(json.dumps(hostile))
    report = verify_bundle(bundle)
    assert not report.ok and [(p.artifact_id, p.path, p.reason) for p in report.problems] == [("oci layout", "index.json", "corrupt")]
    (bundle.root / "index.json").unlink()
    assert [p.reason for p in verify_bundle(bundle).problems] == ["missing"]
    # A bundle written before the layout existed: neither file, no SHA256SUMS line for them.
    (bundle.root / "oci-layout").unlink()
    sums = (bundle.root / "SHA256SUMS").read_text().splitlines(keepends=True)
    (bundle.root / "SHA256SUMS").write_text("".join(line for line in sums if not line.rstrip().endswith(("index.json", "oci-layout"))))
    assert verify_bundle(bundle).ok


def test_a_missing_blob_is_reported_as_itself_not_as_a_layout_echo(tmp_path):
    bundle = Bundle(tmp_path / "b")
    artifact = _image(bundle, "reg.example/x/y:1", [b"z"])
    _bundle(bundle.root, [artifact])
    bundle.store.blob_path(artifact.image.layers[0][7:]).unlink()
    report = verify_bundle(bundle)
    assert [(p.artifact_id, p.reason) for p in report.problems] == [(artifact.id, "missing")]


def test_image_sharing_counts_the_bytes_each_image_shares(tmp_path):
    bundle = Bundle(tmp_path / "b")
    a = _image(bundle, "reg.example/x/a:1", [b"base" * 1000, b"a"])
    b = _image(bundle, "reg.example/x/b:1", [b"base" * 1000, b"b"])
    c = _image(bundle, "reg.example/x/c:1", [b"alone"])
    _bundle(bundle.root, [a, b, c])
    shared = image_sharing(bundle, bundle.read_manifest())
    base = bundle.blob_size(a.image.layers[0][7:])
    assert shared[a.id].shared_bytes == shared[b.id].shared_bytes == base
    assert shared[a.id].shared_with == [b.id] and shared[c.id].shared_with == [] and shared[c.id].shared_bytes == 0
    assert shared[a.id].total_bytes == sum(bundle.blob_size(d) for d in a.all_blobs())  # all_blobs() are bare hex


def test_an_index_listing_fewer_whole_images_verifies_but_a_changed_entry_does_not(tmp_path):
    """A delta pushed onto a directory holding its lineage keeps the delta's narrower index: that is honest."""
    bundle = Bundle(tmp_path / "b")
    lent = _image(bundle, "reg.example/x/lent:1", [b"l"])
    carried = _image(bundle, "reg.example/x/carried:1", [b"c"])
    _bundle(bundle.root, [lent, carried])
    full = json.loads((bundle.root / "index.json").read_bytes())
    narrower = dict(full, manifests=[m for m in full["manifests"] if m["annotations"][REF_NAME] == "reg.example/x/carried:1"])
    (bundle.root / "index.json").write_text(json.dumps(narrower, indent=1, sort_keys=True) + "\n")
    assert verify_bundle(bundle).ok
    narrower["manifests"][0]["size"] += 1
    (bundle.root / "index.json").write_text(json.dumps(narrower, indent=1, sort_keys=True) + "\n")
    assert [p.path for p in verify_bundle(bundle).problems] == ["index.json"]
    (bundle.root / "index.json").write_bytes(b"[" * 100_000)
    assert [p.path for p in verify_bundle(bundle).problems] == ["index.json"]


def test_small_blob_reads_of_an_unchecked_bundle_follow_no_symlink_and_read_no_device_or_fifo(tmp_path):
    import os

    bundle = Bundle(tmp_path / "b")
    real = bundle.store.put_bytes(b'{"schemaVersion":2}')
    assert bundle.read_small_blob(real.sha256) == b'{"schemaVersion":2}'
    for name, plant in (("a" * 64, lambda p: p.symlink_to("/dev/zero")), ("b" * 64, lambda p: os.mkfifo(p)),
                        ("c" * 64, lambda p: p.symlink_to(bundle.store.blob_path(real.sha256)))):
        path = bundle.store.blob_path(name)
        plant(path)
        assert bundle.read_small_blob(name) is None, name  # returns at once: no endless read, no blocking open
    big = bundle.store.put_bytes(b" " * (8 << 20))
    assert bundle.read_small_blob(big.sha256) is None

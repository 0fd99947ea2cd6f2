"""The manifest as untrusted input: it round-trips, and hostile or malformed manifests are refused (exit 2)."""

from __future__ import annotations

import json

import pytest

from airlift.bundle.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError
from airlift.util.errors import InputError
from tests.fast.conftest import hf_model, path_tree, sha256, url_file, wheels


def manifest_json() -> dict:
    """A valid manifest as JSON data, to be made hostile one field at a time."""
    manifest = Manifest(name="fast", created="2025-01-01T00:00:00Z", artifacts=[hf_model().artifact(), path_tree().artifact()])
    return json.loads(manifest.to_bytes())


def refused(data: bytes) -> str:
    with pytest.raises(ManifestError) as excinfo:
        Manifest.parse(data, origin="bundle/manifest.json")
    message = str(excinfo.value)
    assert message.startswith("bundle/manifest.json"), message
    assert isinstance(excinfo.value, InputError) and excinfo.value.exit_code == 2
    return message


def test_round_trip_keeps_every_field():
    manifest = Manifest(
        name="fast", created="2025-01-01T00:00:00Z",
        artifacts=[hf_model().artifact(), url_file().artifact(), path_tree().artifact(), wheels().artifact()],
    )
    parsed = Manifest.parse(manifest.to_bytes(), origin="m.json")
    assert parsed == manifest
    assert parsed.to_bytes() == manifest.to_bytes()
    model = parsed.artifact("models/acme/tiny")
    assert model is not None and [f.path for f in model.files] == ["config.json", "model.safetensors", "tokenizer/vocab.txt"]
    assert parsed.artifact("files/notes.txt").layout == "file"
    assert sha256(b"first\n") in parsed.all_blobs()


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../escape", "dir/../../escape", "dir\\file", "nul\x00byte", "a//b", "./a", ""],
    ids=["absolute", "dotdot", "nested-dotdot", "backslash", "nul", "empty-part", "dot", "empty"],
)
def test_hostile_file_paths_are_refused(path):
    data = manifest_json()
    data["artifacts"][1]["files"][0]["path"] = path
    message = refused(json.dumps(data).encode())
    assert "artifacts.1.files.0.path" in message


@pytest.mark.parametrize("artifact_id", ["models/../etc", "/abs", "secrets/x", "files/a//b", "files/./a"])
def test_hostile_artifact_ids_are_refused(artifact_id):
    data = manifest_json()
    data["artifacts"][1]["id"] = artifact_id
    assert "artifacts.1.id" in refused(json.dumps(data).encode())


def test_duplicate_artifact_ids_are_refused():
    data = manifest_json()
    data["artifacts"][1]["id"] = data["artifacts"][0]["id"]
    assert "duplicate" in refused(json.dumps(data).encode())


def test_oversized_manifest_is_refused_before_parsing():
    # bytes(n) is calloc'd: the size check must refuse it without reading it.
    assert "larger than" in refused(bytes(MAX_MANIFEST_BYTES + 1))


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unsupported_schema_version_is_refused(version):
    data = manifest_json()
    data["schema_version"] = version
    assert "schema_version" in refused(json.dumps(data).encode())


def test_missing_schema_version_is_refused():
    data = manifest_json()
    del data["schema_version"]
    assert "schema_version" in refused(json.dumps(data).encode())


@pytest.mark.parametrize("data", [b"not json {", b"\xff\xfe", b'["a list"]', b'"a string"', b""])
def test_non_json_or_non_object_is_refused(data):
    refused(data)


def test_bad_size_and_digest_are_refused():
    data = manifest_json()
    data["artifacts"][0]["files"][0]["size"] = -1
    assert "size" in refused(json.dumps(data).encode())
    data = manifest_json()
    data["artifacts"][0]["files"][0]["sha256"] = "ZZ" * 32
    assert "sha256" in refused(json.dumps(data).encode())
    data = manifest_json()
    data["artifacts"][0]["files"][0]["size"] = 1 << 60
    assert "size" in refused(json.dumps(data).encode())
    for blob in ("sha256:../../../etc/passwd", "a" * 64, "sha512:" + "a" * 128):
        data = manifest_json()
        data["artifacts"][0]["blobs"] = [blob]
        assert "blobs" in refused(json.dumps(data).encode()), blob


def test_unknown_keys_and_kinds_are_refused():
    data = manifest_json()
    data["artifacts"][0]["run_this"] = "rm -rf /"
    assert "run_this" in refused(json.dumps(data).encode())
    data = manifest_json()
    data["artifacts"][0]["kind"] = "shell-script"
    assert "kind" in refused(json.dumps(data).encode())


def test_an_artifact_is_an_image_record_or_a_file_record_by_its_kind():
    """An image must say what image it is; a file artifact may not carry an image (its bytes would be pushed
    nowhere the reviewer looked). Either is refused, naming the field as the manifest spells it."""
    image = {"ref": "registry.example.invalid/app:1", "digest": "sha256:" + "a" * 64, "platform": "linux/amd64",
             "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 10, "config": "sha256:" + "b" * 64,
             "repository": "app", "tag": "1"}
    data = manifest_json()
    data["artifacts"][1]["image"] = image
    assert "artifacts.1.image: Extra inputs are not permitted" in refused(json.dumps(data).encode())
    data = manifest_json()
    data["artifacts"][1] = {"id": "images/app:1", "kind": "image", "source": {
        "ref": image["ref"], "from": "registry", "repository": "app", "tag": "1", "digest": image["digest"], "platform": "linux/amd64"}}
    message = refused(json.dumps(data).encode())
    assert "artifacts.1.image: Field required" in message, message
    data["artifacts"][1]["image"] = {**image, "layers": ["sha256:../../etc/passwd"]}
    assert "artifacts.1.image.layers.0" in refused(json.dumps(data).encode())
    data = manifest_json()
    del data["artifacts"][0]["kind"]
    assert "artifacts.0.kind" in refused(json.dumps(data).encode())


@pytest.mark.parametrize(
    ("artifact", "source", "problem"),
    [
        (0, {"repo": "acme/tiny", "repo_type": "model", "revision": "main", "commit": "not-a-commit"}, "commit"),
        (0, {"url": "https://files.example.invalid/x", "ref": "main", "commit": "0" * 40}, "source"),
        (0, {"repo": "acme/tiny", "repo_type": "model", "revision": "--upload-pack=evil", "commit": "0" * 40}, "revision"),
        (1, {"path": "/data/corpus", "shell": "rm -rf /"}, "shell"),
    ],
    ids=["bad-commit", "source-of-another-kind", "option-as-revision", "unknown-source-key"],
)
def test_a_source_that_does_not_fit_its_kind_is_refused(artifact, source, problem):
    data = manifest_json()
    data["artifacts"][artifact]["source"] = source
    message = refused(json.dumps(data).encode())
    assert f"artifacts.{artifact}.source" in message and problem in message


@pytest.mark.parametrize("url", ["https://user:secret@files.example.invalid/x", "https://files.example.invalid/x?token=secret"])
def test_a_recorded_url_with_credentials_is_refused(url):
    data = json.loads(Manifest(name="fast", created="2025-01-01T00:00:00Z", artifacts=[url_file().artifact()]).to_bytes())
    data["artifacts"][0]["source"]["url"] = url
    message = refused(json.dumps(data).encode())
    assert "credentials" in message and "secret" not in message  # the refusal does not repeat the secret


# Written by airlift at 53bf6b0 (before the record split), for conftest's hf_model() and path_tree():
# what cache records and ingest markers on existing sites hold, and the content digests markers name.
_OLD_RECORDS = {
    "cabe078aa3c48de6b7291fd7502858cb402514fa15b5794519811c4c848c20f7": "hf_model",
    "a5dbbbaa50e682d9eeb4846733372a76ad26fba52771f9b87120e96a893d98a1": "path_tree",
}


@pytest.mark.parametrize("digest", list(_OLD_RECORDS))
def test_records_written_before_the_split_still_read_and_keep_their_content_digest(digest):
    from airlift.bundle.manifest import FileArtifact, parse_artifact
    from tests.fast import conftest

    artifact = getattr(conftest, _OLD_RECORDS[digest])().artifact()
    assert artifact.content_digest() == digest, "ingest markers on existing sites name this digest"
    old_json = json.loads(artifact.model_dump_json()) | {"image": None, "signature": None}  # as the old model dumped it
    again = parse_artifact(json.dumps(old_json))
    assert isinstance(again, FileArtifact) and again == artifact and again.content_digest() == digest

"""`airlift serve` in-process: the catalog over a bundle and over an ingested root, and the app via TestClient."""

from __future__ import annotations

import os
import tempfile

import pytest
from starlette.testclient import TestClient

from airlift.ingest.sharedfs import materialize
from airlift.serve.catalog import Catalog, normalize_project
from airlift.serve.server import build_app
from airlift.util.errors import InputError
from tests.fast.conftest import (
    HF_COMMIT,
    git_repo_bundle,
    hf_model,
    make_wheel,
    make_writable,
    sha256,
)

WHEEL, WHEEL_BYTES = make_wheel()


@pytest.fixture
def ingested_root(small_bundle, tmp_path):
    root = tmp_path / "shared"
    for artifact in small_bundle.manifest.artifacts:
        materialize(root, artifact, blob_path=small_bundle.bundle.store.blob_path)
    return root


@pytest.fixture(params=["bundle", "root"])
def catalog(request, small_bundle, tmp_path):
    """The same artifacts served from the bundle itself and from a shared_root they were ingested into."""
    if request.param == "bundle":
        return Catalog.open(small_bundle.root)
    return Catalog.open(request.getfixturevalue("ingested_root"))


def read_entry(catalog: Catalog, found) -> bytes:
    artifact, entry = found
    fd = catalog.open_entry(artifact, entry)
    try:
        return os.read(fd, entry.size + 1)
    finally:
        os.close(fd)


def test_normalize_project_is_pep_503():
    assert normalize_project("Foo_Bar") == "foo-bar"
    assert normalize_project("foo.bar__Baz--qux") == "foo-bar-baz-qux"


def test_catalog_file_at(catalog, small_bundle):
    assert catalog.from_bundle == (catalog.root == small_bundle.root)
    single = catalog.file_at("files/notes.txt")
    assert single is not None and single[0].id == "files/notes.txt"
    assert read_entry(catalog, single) == b"plain notes\n"
    nested = catalog.file_at("files/corpus/dir/b.txt")
    assert nested is not None and nested[1].path == "dir/b.txt"
    assert read_entry(catalog, nested) == b"second\n"
    model_file = catalog.file_at("models/acme/tiny/tokenizer/vocab.txt")
    assert model_file is not None and read_entry(catalog, model_file) == b"hello\nworld\n"
    assert catalog.file_at("files/corpus/nope.txt") is None
    assert catalog.file_at("files/corpus") is None
    assert catalog.file_at("files/notes.txt/extra") is None


def test_catalog_wheels_are_indexed_by_normalized_project(catalog):
    index = catalog.wheels()
    assert list(index) == ["foo-bar"]
    assert list(index["foo-bar"]) == [WHEEL]
    _, entry = index["foo-bar"][WHEEL]
    assert entry.sha256 == sha256(WHEEL_BYTES)


def test_catalog_hf_repo(catalog):
    model = catalog.hf_repo("models", "acme/tiny")
    assert model is not None and model.kind == "hf-model"
    assert catalog.hf_repo("datasets", "acme/tiny") is None
    assert catalog.hf_repo("models", "acme/other") is None


def test_catalog_refuses_a_directory_that_is_neither(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither a bundle"):
        Catalog.open(tmp_path / "empty")


def test_catalog_does_not_serve_a_blob_of_the_wrong_size(small_bundle):
    blob = small_bundle.blob("files/notes.txt", "notes.txt")
    make_writable(blob)
    blob.write_bytes(b"grown much longer than the manifest says\n")
    catalog = Catalog.open(small_bundle.root)
    found = catalog.file_at("files/notes.txt")
    with pytest.raises(FileNotFoundError):
        catalog.open_entry(*found)
    response = TestClient(build_app(catalog)).get("/files/files/notes.txt")
    assert response.status_code == 404


def test_app_simple_index(catalog):
    client = TestClient(build_app(catalog))
    index = client.get("/simple/")
    assert index.status_code == 200 and 'href="/simple/foo-bar/"' in index.text
    redirect = client.get("/simple/Foo_Bar/", follow_redirects=False)
    assert redirect.status_code == 301 and redirect.headers["location"] == "/simple/foo-bar/"
    project = client.get("/simple/foo-bar/")
    digest = sha256(WHEEL_BYTES)
    assert f'href="/simple/foo-bar/{WHEEL}#sha256={digest}"' in project.text
    wheel = client.get(f"/simple/foo-bar/{WHEEL}")
    assert wheel.status_code == 200 and wheel.content == WHEEL_BYTES
    assert client.get("/simple/absent/").status_code == 404


def test_app_files_with_ranges(catalog):
    client = TestClient(build_app(catalog))
    whole = client.get("/files/files/corpus/dir/b.txt")
    assert whole.status_code == 200 and whole.content == b"second\n"
    assert whole.headers["content-length"] == "7" and whole.headers["accept-ranges"] == "bytes"
    part = client.get("/files/files/corpus/dir/b.txt", headers={"Range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"con"
    assert part.headers["content-range"] == "bytes 2-4/7"
    head = client.head("/files/files/notes.txt")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "12"
    assert client.get("/files/files/corpus/missing.txt").status_code == 404
    assert client.get("/files/files/%2e%2e/%2e%2e/manifest.json").status_code == 404


def test_app_hf_api(catalog):
    client = TestClient(build_app(catalog))
    model = hf_model()
    info = client.get("/api/models/acme/tiny")
    assert info.status_code == 200
    body = info.json()
    assert body["id"] == "acme/tiny" and body["sha"] == HF_COMMIT
    siblings = {s["rfilename"]: s for s in body["siblings"]}
    assert set(siblings) == set(model.files)
    assert siblings["model.safetensors"]["lfs"]["sha256"] == sha256(model.files["model.safetensors"])
    assert "lfs" not in siblings["config.json"]
    assert client.get("/api/models/acme/tiny/revision/main").json()["sha"] == HF_COMMIT
    assert client.get(f"/api/models/acme/tiny/revision/{HF_COMMIT}").json()["sha"] == HF_COMMIT
    assert client.get("/api/models/acme/tiny/revision/other-branch").status_code == 404
    missing = client.get("/api/models/acme/nope")
    assert missing.status_code == 401 and missing.headers["x-error-code"] == "RepoNotFound"
    resolved = client.get("/acme/tiny/resolve/main/tokenizer/vocab.txt")
    assert resolved.status_code == 200 and resolved.content == model.files["tokenizer/vocab.txt"]
    assert resolved.headers["x-repo-commit"] == HF_COMMIT
    lfs = client.head("/acme/tiny/resolve/main/model.safetensors")
    assert lfs.headers["x-linked-etag"] == f'"{sha256(model.files["model.safetensors"])}"'
    tree = client.get("/api/models/acme/tiny/tree/main", params={"recursive": "true"}).json()
    assert {item["path"] for item in tree if item["type"] == "file"} == set(model.files)


def test_app_git_dumb_http_from_a_bundle(tmp_path, monkeypatch):
    # Catalog.open builds the bare repos under the temp dir: keep them inside this test's tmp.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    repo, built = git_repo_bundle(tmp_path)
    client = TestClient(build_app(Catalog.open(built.root)))
    refs = client.get("/git/tool.git/info/refs")
    assert refs.status_code == 200
    assert f"{repo.commit}\trefs/heads/main" in refs.text.splitlines()
    head = client.get("/git/tool.git/HEAD")
    assert head.text.strip() == "ref: refs/heads/main"
    assert client.get("/git/tool.git/../../etc/passwd").status_code == 404
    assert client.get("/git/other.git/HEAD").status_code == 404

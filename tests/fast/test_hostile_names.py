"""Parser edges and a hostile upstream: long ids and parts, control characters, duplicate paths,
non-UTF-8 file names, and bodies larger than announced (registry manifests, token answers, S3 objects)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import httpx
import pytest

from airlift.bundle.manifest import Manifest, ManifestError, check_relative_path, parse_artifact
from airlift.fetch.base import RemoteFile, Resolved
from airlift.fetch.s3prefix import capped
from airlift.oci.auth import RegistryAuth, read_capped
from airlift.oci.client import RegistryClient
from airlift.util.errors import InputError, IntegrityError, WorkError
from tests.fast.conftest import build_bundle, path_tree, sha256, url_file

GOOD = "0" * 64


def manifest_bytes(artifact: dict) -> bytes:
    return json.dumps({"schema_version": 1, "name": "fast", "created": "2026-01-01T00:00:00Z", "artifacts": [artifact]}).encode()


def files_artifact(artifact_id: str, paths: list[str]) -> dict:
    return {"id": artifact_id, "kind": "path", "source": {"path": "/data/x"}, "files": [{"path": p, "size": 1, "sha256": GOOD} for p in paths]}


# -- 7. ids and paths bounded when the manifest is read -------------------------------------------------
@pytest.mark.parametrize(("artifact_id", "paths", "needle"), [
    ("files/" + "a" * 300, ["x"], "artifact id"),                      # one part over 255 bytes
    ("files/" + "/".join(["abcdefghij"] * 28), ["x"], "too long"),   # 306 characters: its marker name would not fit
    ("files/ok", ["d/" + "b" * 256], "longer than 255"),
    ("files/ok", ["line\nbreak.txt"], "control character"),
    ("files/ok", ["tab\there"], "control character"),
    ("files/ok", ["del\x7f"], "control character"),
    ("files/ok", ["c1\x85name"], "control character"),
    ("files/ok", ["model.safetensors", "model.safetensors"], "appears twice"),
    ("files/ok", ["Config.json", "config.json"], "appears twice"),
])
def test_the_manifest_refuses_long_ids_parts_control_characters_and_duplicates_on_read(artifact_id, paths, needle):
    with pytest.raises(ManifestError) as info:
        Manifest.parse(manifest_bytes(files_artifact(artifact_id, paths)), origin="bundle/manifest.json")
    message = str(info.value)
    assert needle in message and "bundle/manifest.json" in message and "\n" not in message
    assert info.value.exit_code == 2


def test_an_ordinary_manifest_still_parses():
    Manifest.parse(manifest_bytes(files_artifact("files/ok", ["a.txt", "dir/B.txt", "ünïcode.txt"])), origin="m")
    assert check_relative_path("a/b c/d.txt") == "a/b c/d.txt"


def test_ingest_of_an_accepted_long_id_writes_every_name(tmp_path):
    # The longest id the manifest accepts must also be one ingest can write (marker name included).
    from airlift.ingest.sharedfs import materialize

    longest = "files/" + "/".join(["abcdefghi"] * 20)
    draft = url_file("x.txt", b"x\n")
    draft.id, draft.layout = longest, "tree"
    draft.kind, draft.source = "path", {"path": "/data/x"}
    built = build_bundle(tmp_path / "bundle", [draft])
    report = materialize(tmp_path / "shared", built.manifest.artifacts[0], blob_path=built.bundle.store.blob_path)
    assert not report.skipped and (tmp_path / "shared" / longest / "x.txt").read_bytes() == b"x\n"


# -- listings refused before anything is downloaded, in one line -----------------------------------------
@pytest.mark.parametrize(("paths", "needle"), [
    (["ok.json", "evil\nname.json"], "control character"),
    (["model.safetensors", "model.safetensors"], "listed twice"),
    (["Config.json", "config.json"], "listed twice"),
    (["../escape"], "'.' or '..'"),
])
def test_a_hub_or_s3_listing_with_bad_paths_is_refused_in_one_line_before_download(paths, needle):
    files = tuple(RemoteFile(path=p, size=10, sha256=GOOD) for p in paths)
    source = {"repo": "acme/tiny", "repo_type": "model", "revision": "main", "commit": "0" * 40}
    with pytest.raises(WorkError) as info:
        Resolved("models/acme/tiny", "hf-model", source, files)
    assert needle in str(info.value) and "\n" not in str(info.value) and not isinstance(info.value, InputError)


def test_a_path_source_with_one_non_utf8_name_is_refused_by_name_exit_2(tmp_path):
    from airlift.config.spec import LocalPath
    from airlift.fetch.path import resolve

    root = tmp_path / "data"
    root.mkdir()
    (root / "fine.txt").write_bytes(b"fine\n")
    with open(os.fsencode(root) + b"/bad-\xff.txt", "wb") as handle:  # a name that is not UTF-8
        handle.write(b"bad\n")
    entry = LocalPath.model_validate({"path": str(root)})
    with pytest.raises(InputError) as info:
        resolve(entry, artifact_id="files/data", ctx=None)
    assert "bad-" in str(info.value) and "UTF-8" in str(info.value) and info.value.exit_code == 2


def test_path_artifacts_still_accept_plain_trees():
    parse_artifact({**path_tree().artifact().model_dump(mode="json")})


# -- bodies beyond the announced size --------------------------------------------------------------------
class Endless:
    """A body that never ends (a hostile upstream streaming past what it announced)."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        size = 1 << 20 if size is None or size < 0 else size
        self.read_bytes += size
        return b"\0" * size

    def close(self) -> None:
        pass


def test_an_s3_object_listed_at_10_bytes_stops_at_11_and_fails_permanently():
    body = Endless()
    with pytest.raises(IntegrityError, match="larger than the 10 bytes"):
        for _ in capped(body, 10, "datasets/x: a.bin"):
            pass
    assert body.read_bytes == 11
    honest = io.BytesIO(b"0123456789")  # exactly the listed size passes
    assert b"".join(capped(honest, 10, "datasets/x: b.bin")) == b"0123456789"


def endless_stream() -> Iterator[bytes]:
    while True:
        yield b"{" * 65536


def test_a_16_mib_registry_manifest_is_refused_at_4_mib_without_reading_on():
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        for chunk in endless_stream():
            sent["bytes"] += len(chunk)
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/vnd.oci.image.manifest.v1+json"}, content=body())

    client = RegistryClient("127.0.0.1:5999")
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    client.auth = RegistryAuth(registry=client.registry, http=client._http, plain_http=True)
    with pytest.raises(WorkError, match="larger than 4194304"):
        client.get_manifest("team/app", "latest")
    assert sent["bytes"] <= (4 << 20) + 2 * 65536


def test_an_announced_oversized_body_is_refused_before_reading():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(16 << 20)}, content=b"x" * 10)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        response = http.send(http.build_request("GET", "http://127.0.0.1:1/token"), stream=True)
        with pytest.raises(WorkError, match="announces 16777216"):
            read_capped(response, 1 << 20, "token request")


def test_a_16_mib_token_answer_is_refused_at_1_mib(monkeypatch, tmp_path):
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "none.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless_stream())

    challenge = httpx.Response(
        401, headers={"WWW-Authenticate": 'Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a:pull"'},
        request=httpx.Request("GET", "http://127.0.0.1:1/v2/"),
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        auth = RegistryAuth(registry="127.0.0.1:1", http=http, plain_http=True)
        with pytest.raises(WorkError, match="larger than 1048576"):
            auth.renew(challenge, scope="repository:a:pull", sent=None)


def test_pull_blob_hands_the_descriptor_size_to_the_download(tmp_path):
    from airlift.bundle.store import BlobStore

    data = b"layer bytes"
    digest = "sha256:" + sha256(data)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data)

    client = RegistryClient("127.0.0.1:5999")
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    client.auth = RegistryAuth(registry=client.registry, http=client._http, plain_http=True)
    # The bytes hash right, but the descriptor says 5: the body ran past its announced size.
    with pytest.raises(WorkError):
        client.pull_blob("team/app", digest, store=BlobStore(tmp_path / "store"), size=5)
    assert not BlobStore(tmp_path / "store").has(digest.removeprefix("sha256:"))
    assert client.pull_blob("team/app", digest, store=BlobStore(tmp_path / "store"), size=len(data)).size == len(data)


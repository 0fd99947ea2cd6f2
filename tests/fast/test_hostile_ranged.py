"""A hostile registry or hub against the ranged download and its neighbours (issue 22's rule: each attack a test).

- a server that answers the first range with a cut whole body, then ranges: no hang, one stream instead;
- a descriptor size that is not a size: refused before any request;
- a 401 from the origin a blob redirected to: the registry's credentials are not offered to its realm;
- a hub file named like a blob: the SBOM's bom-refs stay unique.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airlift.bundle import sbom, sbom_check
from airlift.bundle.manifest import Manifest, now_iso
from airlift.bundle.store import BlobStore
from airlift.fetch import image
from airlift.fetch.base import FetchContext
from airlift.fetch.cache import Cache
from airlift.oci.client import RegistryClient
from airlift.testing.hubserver import HubServer
from airlift.util.errors import WorkError
from airlift.util.names import Digest
from tests.fast.conftest import hf_model

RANGE = 256 << 10


@pytest.fixture(autouse=True)
def _ranges(small_ranges):
    """Every test here uses tests/fast/conftest.py's 256 KiB ranges."""


def _serve(get) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args) -> None:
            pass

        def do_GET(self) -> None:
            get(self)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _reply(handler, status: int, headers=(), body: bytes = b"") -> None:
    handler.send_response(status)
    for key, value in headers:
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_server_flipping_from_a_cut_whole_body_to_ranges_does_not_hang_the_download(tmp_path):
    data = random.Random(1).randbytes(6 * RANGE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    asked: list[str | None] = []

    def get(handler) -> None:
        asked.append(handler.headers.get("Range"))
        if len(asked) == 1:  # Range ignored, and the body cut after 1000 bytes
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[:1000])
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        start, end = (int(x) for x in asked[-1].removeprefix("bytes=").split("-"))
        _reply(handler, 206, [("Content-Range", f"bytes {start}-{end}/{len(data)}")], data[start : end + 1])

    server = _serve(get)
    client = RegistryClient(f"127.0.0.1:{server.server_port}", insecure=True)
    done: list = []
    try:
        worker = threading.Thread(target=lambda: done.append(client.pull_blob_ranged("acme/app", digest, store=BlobStore(tmp_path), size=len(data))), daemon=True)
        worker.start()
        worker.join(60)
    finally:
        client.close()
        server.shutdown()
    assert done == [None], f"the ranged download hung or did not give way to one stream: {done}, requests {asked}"
    assert not [p for p in (tmp_path / ".tmp").glob("*") if p.suffix in (".part", ".ranges")]


@pytest.mark.parametrize("size", [True, -1, 1 << 60, "12"])
def test_a_descriptor_size_that_is_not_a_size_is_refused_before_any_request(tmp_path, size):
    server = HubServer().start()
    try:
        config = b'{"architecture": "amd64", "os": "linux"}'
        layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "ab" * 32, "size": size}
        config_d = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": server.add_blob(config), "size": len(config)}
        raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config_d, "layers": [layer]}).encode()
        server.add_manifest("acme/app", "1", raw, "application/vnd.oci.image.manifest.v1+json")
        host = server.url.removeprefix("http://")
        ctx = FetchContext(cache=Cache(tmp_path / "cache"), attempts=2, insecure_registries=frozenset({host}))
        with pytest.raises(WorkError, match="is not a size"):  # at resolve (fetch/base.py check_listing), else at fetch
            image.fetch(image.resolve(f"{host}/acme/app:1", artifact_id="images/acme/app:1", ctx=ctx), ctx)
        assert not [p for p in (tmp_path / "cache").rglob("*.part")]
    finally:
        server.stop()


def test_a_401_from_where_a_blob_redirected_never_gets_the_registrys_credentials(tmp_path, monkeypatch):
    seen: list[tuple[str, str | None]] = []
    realm = _serve(lambda h: (seen.append(("realm", h.headers.get("Authorization"))), _reply(h, 200, body=b'{"token": "t"}')))
    cdn = _serve(lambda h: (seen.append(("cdn", h.headers.get("Authorization"))),
                            _reply(h, 401, [("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{realm.server_port}/token",service=x')])))
    registry = _serve(lambda h: (seen.append(("registry", h.headers.get("Authorization"))),
                                 _reply(h, 307, [("Location", f"http://127.0.0.1:{cdn.server_port}/blob")])))
    host = f"127.0.0.1:{registry.server_port}"
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    client = RegistryClient(host, insecure=True)
    try:
        with pytest.raises(WorkError, match="401"):
            client.pull_blob_ranged("acme/app", "sha256:" + "ab" * 32, store=BlobStore(tmp_path / "s"), size=1 << 20, attempts=1)
    finally:
        client.close()
        for server in (realm, cdn, registry):
            server.shutdown()
    assert not [who for who, _ in seen if who == "realm"], seen  # the CDN's realm was never asked
    assert all(credential is None for who, credential in seen if who != "registry"), seen


def test_a_hub_file_named_like_a_blob_does_not_share_its_sbom_bom_ref():
    trust = hashlib.sha256(b"trust material").hexdigest()
    draft = hf_model(files={"config.json": b"{}", f"sha256:{trust}": b"not the trust material"})
    artifact = draft.artifact().model_copy(update={"blobs": [Digest(trust)]})
    manifest = Manifest(name="x", created=now_iso(), artifacts=[artifact])
    data = sbom.sbom_bytes(manifest)
    refs = [c["bom-ref"] for c in json.loads(data)["components"][0]["components"]]
    assert len(refs) == len(set(refs)) == 3, refs
    assert sbom_check.sbom_problems(data, manifest) == []


@pytest.mark.parametrize("size", [True, -1, (1 << 50) + 1, 2.5])
def test_a_listing_size_that_is_not_a_size_is_refused_before_any_download(size):
    # A hub's lfs.size, an S3 listing or a registry descriptor all reach the ranged download through a listing.
    from airlift.fetch.base import RemoteFile, Resolved

    with pytest.raises(WorkError, match="is not a size"):
        Resolved("models/acme/x", "hf-model", {"repo": "acme/x", "repo_type": "model", "revision": "main", "commit": "a" * 40}, (RemoteFile("w.bin", size),))

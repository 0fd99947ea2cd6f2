"""Registry auth against real `docker-registry` processes: htpasswd Basic auth with credentials from a real
credential helper, and token auth (airlift/testing/tokenserver.py) with tokens that expire mid-pull and
between the chunks of a push, so airlift must fetch a new one and go on."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import warnings

import pytest

from airlift.oci import client as oci_client
from airlift.oci.client import RegistryClient
from airlift.testing.tokenserver import LocalRegistry, TokenServer
from tests.conftest import started_registry, verified
from tests.fast.clients import credential_helper
from tests.relay import Relay

USER, PASSWORD = "alice", "pa55-never-logged"
IDENTITY_TOKEN = "identity-token-never-logged"


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt

        return _crypt.crypt(password, _crypt.mksalt(_crypt.METHOD_BLOWFISH))


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("basic-registry")
    (root / "htpasswd").write_text(f"{USER}:{_bcrypt(PASSWORD)}\n")
    registry = LocalRegistry(root / "reg", auth={"htpasswd": {"realm": "airlift-test", "path": str(root / "htpasswd")}})
    started_registry(registry)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    root = tmp_path_factory.mktemp("token-registry")
    # Tokens the registry refuses 15 s after issue, but whose answer says 300 s: nothing warns the client,
    # so only the refresh on 401 can save a transfer that outlives one. 15 s is generous on purpose: a token
    # issued and used seconds apart on a loaded machine must still work; where a test needs a dead token it
    # waits for that event (TokenServer.wait_until_issued_expired), it does not bet on a transfer's duration.
    server = TokenServer(lifetime=15, advertised_lifetime=300, users={USER: PASSWORD}, refresh_tokens={IDENTITY_TOKEN: USER}).start()
    bundle = server.write_rootcertbundle(root / "tokens.pem")
    registry = LocalRegistry(root / "reg", auth={"token": {
        "realm": server.realm, "service": server.service, "issuer": server.issuer, "rootcertbundle": str(bundle),
    }})
    started_registry(registry)
    yield server, registry
    registry.stop()
    server.stop()


def _seed(source: str, dest: str) -> str:
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}",
                    f"docker://{source}", f"docker://{dest}"], check=True, capture_output=True, timeout=120)
    return dest


def _digest(ref: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{ref}"],
                         capture_output=True, check=True, timeout=60).stdout
    return "sha256:" + hashlib.sha256(out).hexdigest()


def _credential_helper(directory, registry: str) -> str:
    """A real `docker-credential-airlifttest` speaking the helper protocol (get: server URL on stdin, JSON out)."""
    return str(credential_helper(directory, "airlifttest", servers=f"*{registry}*", username=USER, secret=PASSWORD))


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (PASSWORD, IDENTITY_TOKEN, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
            assert secret not in text


def test_basic_auth_credentials_from_a_credential_helper(ws, upstream, basic_registry):
    ref = _seed(upstream.app_a, f"{basic_registry.address}/fixtures/app-a:1")
    spec = ws.write("basic.yaml", f"name: basic\nimages:\n  - {ref}\n")
    docker_config = ws.root / "docker"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {basic_registry.address: "airlifttest"}}))

    refused = ws.run("build", str(spec), "--out", "anon", expect=1, extra_env={"DOCKER_CONFIG": str(ws.root / "nowhere")})
    assert "HTTP 401" in refused.stderr, refused.stderr

    helper_dir = _credential_helper(ws.root / "bin", basic_registry.address)
    env = {"DOCKER_CONFIG": str(docker_config), "PATH": f"{helper_dir}{os.pathsep}{os.environ['PATH']}"}
    result = ws.run("build", str(spec), "--out", "bundle", extra_env=env)
    artifact = json.loads((ws.root / "bundle" / "manifest.json").read_text())["artifacts"][0]
    assert artifact["image"]["digest"] == _digest(ref)
    _assert_no_secret(result.stdout, result.stderr, refused.stdout, refused.stderr, (ws.root / "bundle" / "manifest.json").read_text())

    missing = json.dumps({"credHelpers": {basic_registry.address: "airlift-absent"}})
    (docker_config / "config.json").write_text(missing)
    bad = ws.run("build", str(spec), "--out", "b3", expect=None, extra_env={**env, "AIRLIFT_CACHE": str(ws.root / "cache3")})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, (bad.returncode, bad.stderr)
    assert "config.json: credHelpers: docker-credential-airlift-absent is not on PATH" in bad.stderr, bad.stderr


def test_token_expiring_mid_pull_is_refreshed_and_the_blob_resumes(ws, upstream, tokens):
    server, registry = tokens
    ref = _seed(upstream.app_a, f"{registry.address}/fixtures/app-a:1")
    relay = Relay(registry.address).start()
    # Credentials: an identity token (OAuth2 refresh token) in REGISTRY_AUTH_FILE, as `docker login` stores it.
    auth_file = ws.write("auth.json", json.dumps({"auths": {relay.address: {"identitytoken": IDENTITY_TOKEN}}}))
    try:
        relay.down_rate = 512 << 10  # per connection: the 3 MiB layer is mid-transfer for seconds
        # The connection drops once, after 3 MiB in all; held open at that point until every token issued so far
        # is refused (an event, not a guess at how long the transfer takes), so the resumed GET needs a new one.
        relay.cut_down_after = 3 << 20
        relay.before_cut = server.wait_until_issued_expired
        before_issued, before_401 = server.total_issued, registry.statuses("GET", "/blobs/")[401]
        spec = ws.write("tok.yaml", f"name: tok\nimages:\n  - {ref.replace(registry.address, relay.address)}\n")
        result = ws.run("build", str(spec), "--out", "bundle", extra_env={"REGISTRY_AUTH_FILE": str(auth_file), "DOCKER_CONFIG": str(ws.root / "nowhere")})
    finally:
        relay.stop()
    assert relay.cuts == 1
    artifact = json.loads((ws.root / "bundle" / "manifest.json").read_text())["artifacts"][0]
    assert artifact["image"]["digest"] == _digest(ref)
    blob_statuses = registry.statuses("GET", "/blobs/")
    assert blob_statuses[401] > before_401, f"no expired-token refusal of a blob GET: {blob_statuses}"
    assert blob_statuses[206] >= 1, f"the dropped blob was not resumed with Range: {blob_statuses}"
    assert server.issued["refresh_token"] >= 2 and server.total_issued - before_issued >= 2, server.issued
    assert server.seen_secrets_in_queries == 0  # the identity token went in a POST body, never in a URL
    verified(ws.root / "bundle")
    _assert_no_secret(result.stdout, result.stderr, registry.log.read_text())


def test_token_expiring_between_push_chunks_is_refreshed_and_the_chunk_resent(tmp_path, tokens, monkeypatch):
    server, registry = tokens
    relay = Relay(registry.address).start()
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {relay.address: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setattr(oci_client, "UPLOAD_CHUNK", 1 << 20)  # six chunks, so a token expires between two of them
    data = os.urandom(6 << 20)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repository = "fixtures/chunked"
    client = RegistryClient(relay.address)
    before_401 = registry.statuses("PATCH", "/blobs/uploads/")[401]
    try:
        relay.up_rate = 2 << 20  # chunks in flight for seconds, as over a slow link
        location = client.start_upload(repository)
        locations: list[str] = []

        def landed(where: str) -> None:
            locations.append(where)
            if len(locations) == 3:  # half-way: wait until the token in hand is refused (an event, not a race)
                server.wait_until_issued_expired()

        location = client.upload_chunks(repository, location, path=blob, offset=0, on_location=landed)
        client.finish_upload(repository, location, digest=digest)
        relay.up_rate = None
        assert client.has_blob(repository, digest)
        pulled = client.request("GET", f"/v2/{repository}/blobs/{digest}", scope=f"repository:{repository}:pull")
        assert hashlib.sha256(pulled.content).hexdigest() == digest.removeprefix("sha256:")
    finally:
        client.close()
        relay.stop()
    assert len(locations) == 6
    patch_statuses = registry.statuses("PATCH", "/blobs/uploads/")
    assert patch_statuses[401] > before_401, f"no chunk was refused for an expired token: {patch_statuses}"
    assert client.tokens_fetched >= 2
    # Every chunk landed exactly once: the refused ones were sent again whole, in order.
    assert relay.bytes_up >= len(data)

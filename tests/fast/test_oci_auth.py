"""Registry credentials through the Docker SDK (auths, identitytoken, credHelpers with a real helper, credsStore,
REGISTRY_AUTH_FILE first) and token lifetimes, in-process against the token server stand-in."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from airlift.oci.auth import RegistryAuth, credentials_for, parse_challenge
from airlift.testing.tokenserver import TokenServer
from airlift.util.errors import InputError, WorkError
from tests.fast.clients import credential_helper

SECRET = "pw-that-must-not-show"


def _config(directory, body: dict):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(body))
    return directory


def _helper(directory, name: str, *, username: str = "bob"):
    return credential_helper(directory, name, servers="*reg.example:5000*|https://index.docker.io/v1/", username=username, secret=SECRET)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_auths_entry_and_hub_aliases(clean_env, tmp_path):
    auth = base64.b64encode(f"carol:{SECRET}".encode()).decode()
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "d", {"auths": {"https://index.docker.io/v1/": {"auth": auth}, "http://reg.example:5000": {"auth": auth}}})))
    hub = credentials_for(registry="docker.io")
    assert hub is not None and hub.username == "carol" and hub.password.get_secret_value() == SECRET
    assert credentials_for(registry="reg.example:5000") == hub
    assert credentials_for(registry="other.example") is None
    assert SECRET not in repr(hub) and SECRET not in str(hub) and SECRET not in hub.model_dump_json()


def test_identitytoken_and_registry_auth_file_wins(clean_env, tmp_path):
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "d", {"auths": {"reg.example:5000": {"auth": base64.b64encode(b"x:y").decode()}}})))
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"reg.example:5000": {"identitytoken": SECRET}}}))
    clean_env.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    creds = credentials_for(registry="reg.example:5000")
    assert creds is not None and creds.identity_token.get_secret_value() == SECRET and not creds.has_basic
    clean_env.delenv("REGISTRY_AUTH_FILE")
    assert credentials_for(registry="reg.example:5000").username == "x"


def test_cred_helpers_and_creds_store_run_the_real_helper(clean_env, tmp_path):
    bin_dir = _helper(tmp_path / "bin", "airlifttest")
    _helper(bin_dir, "airliftstore", username="<token>")  # the helper convention for an identity token
    clean_env.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "d", {"credHelpers": {"reg.example:5000": "airlifttest"}, "credsStore": "airliftstore"})))
    helper = credentials_for(registry="reg.example:5000")
    assert helper is not None and helper.username == "bob" and helper.password.get_secret_value() == SECRET
    store = credentials_for(registry="docker.io")  # not in credHelpers: credsStore, asked for the Hub's URL
    assert store is not None and store.identity_token.get_secret_value() == SECRET
    assert credentials_for(registry="unknown.example") is None


def test_missing_helper_names_file_and_field(clean_env, tmp_path):
    clean_env.setenv("PATH", "/usr/bin:/bin")
    directory = _config(tmp_path / "d", {"credHelpers": {"reg.example:5000": "airlift-absent"}})
    clean_env.setenv("DOCKER_CONFIG", str(directory))
    with pytest.raises(InputError, match=r"config\.json: credHelpers: docker-credential-airlift-absent is not on PATH"):
        credentials_for(registry="reg.example:5000")


def test_failing_helper_hides_its_output(clean_env, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-leaky"
    script.write_text(f"#!/bin/sh\necho 'fatal: token {SECRET} rejected' >&2\necho 'boom {SECRET}'\nexit 3\n")
    script.chmod(0o755)
    clean_env.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "d", {"credsStore": "leaky"})))
    with pytest.raises(WorkError) as failed:
        credentials_for(registry="reg.example:5000")
    assert "credsStore" in str(failed.value) and SECRET not in str(failed.value) and failed.value.__cause__ is None


def test_challenge_parsing():
    bearer = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"')
    assert (bearer.scheme, bearer.realm, bearer.service, bearer.scope) == ("bearer", "https://auth.example/token", "registry.example", "repository:a/b:pull")
    assert parse_challenge('Basic realm="x"').scheme == "basic"
    assert parse_challenge("Negotiate abc") is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _unauthorized(server: TokenServer, scope: str) -> httpx.Response:
    header = f'Bearer realm="{server.realm}",service="{server.service}",scope="{scope}"'
    return httpx.Response(401, headers={"WWW-Authenticate": header}, request=httpx.Request("GET", "http://reg.example:5000/v2/"))


def test_tokens_refresh_before_expiry_and_on_401_with_the_identity_token(clean_env, tmp_path):
    server = TokenServer(lifetime=300, advertised_lifetime=40, refresh_tokens={SECRET: "dave"}).start()
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"reg.example:5000": {"identitytoken": SECRET}}}))
    clean_env.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    clock = Clock()
    scope = "repository:team/app:pull"
    with httpx.Client() as http:
        auth = RegistryAuth(registry="reg.example:5000", http=http, plain_http=True, clock=clock)
        try:
            assert auth.header(scope) is None
            assert auth.renew(_unauthorized(server, scope), scope=scope, sent=None)
            first = auth.header(scope)
            assert first.startswith("Bearer ") and server.issued["refresh_token"] == 1
            claims = json.loads(base64.urlsafe_b64decode(first.split(".")[1] + "=="))
            assert claims["sub"] == "dave" and claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
            clock.now += 20  # half the stated 40 s: still good
            assert auth.header(scope) == first and server.total_issued == 1
            clock.now += 11  # within the last quarter of its life: fetched again before use
            second = auth.header(scope)
            assert second != first and server.issued["refresh_token"] == 2
            # A 401 for a token the clock thinks is fine (revoked, or the registry's clock runs ahead): fetch again.
            assert auth.renew(_unauthorized(server, scope), scope=scope, sent=second)
            assert auth.header(scope) not in {first, second} and auth.tokens_fetched == 3
            # A 401 answered for a token another thread already replaced: no new fetch, just send again.
            assert auth.renew(_unauthorized(server, scope), scope=scope, sent=second) and auth.tokens_fetched == 3
        finally:
            server.stop()


def test_refused_token_request_fails_without_leaking(clean_env, tmp_path):
    server = TokenServer(users={"erin": "right"}).start()
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "d", {"auths": {"reg.example:5000": {"auth": base64.b64encode(f"erin:{SECRET}".encode()).decode()}}})))
    with httpx.Client() as http:
        auth = RegistryAuth(registry="reg.example:5000", http=http, plain_http=True)
        try:
            with pytest.raises(WorkError) as refused:
                auth.renew(_unauthorized(server, "repository:x:pull"), scope="repository:x:pull", sent=None)
        finally:
            server.stop()
    assert "HTTP 401" in str(refused.value) and SECRET not in str(refused.value) and server.refused == 1


class _Recorder:
    """A loopback HTTP server that records each request's Authorization header and body, answering `status`."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        import http.server
        import threading

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen.append((self.command, self.path, self.headers.get("Authorization"), self.rfile.read(length)))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_PATCH = _answer

            def log_message(self, *_):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_helper_name_that_is_a_path_is_refused(clean_env, tmp_path):
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "d", {"credHelpers": {"reg.example:5000": "x/../../evil"}})))
    with pytest.raises(InputError) as refused:
        credentials_for(registry="reg.example:5000")
    assert "credHelpers" in str(refused.value) and "config.json" in str(refused.value)
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "e", {"credsStore": "--help"})))
    with pytest.raises(InputError, match="credsStore"):
        credentials_for(registry="reg.example:5000")
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "f", {"credHelpers": {"reg.example:5000": 5}})))
    with pytest.raises(InputError, match="credHelpers"):
        credentials_for(registry="reg.example:5000")


def test_credentials_never_go_to_a_plain_http_realm_of_an_https_registry_nor_follow_a_redirect(clean_env, tmp_path):
    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "d", {"auths": {"reg.example:5000": {"auth": base64.b64encode(f"erin:{SECRET}".encode()).decode()}}})))
    elsewhere = _Recorder()
    redirecting = _Recorder(status=307, headers={"Location": f"{elsewhere.url}/token"})
    try:
        challenge = f'Bearer realm="{redirecting.url}/token",service="s",scope="repository:x:pull"'
        refused = httpx.Response(401, headers={"WWW-Authenticate": challenge}, request=httpx.Request("GET", "https://reg.example:5000/v2/"))
        with httpx.Client(follow_redirects=True) as http:
            with pytest.raises(WorkError, match="plain http"):
                RegistryAuth(registry="reg.example:5000", http=http).renew(refused, scope="repository:x:pull", sent=None)
            assert redirecting.seen == [], "nothing may be sent to an http realm of an https registry"
            # A plain-http registry's realm may be http, but a redirect from it is not followed.
            with pytest.raises(WorkError, match="redirects") as redirected:
                RegistryAuth(registry="reg.example:5000", http=http, plain_http=True).renew(refused, scope="repository:x:pull", sent=None)
        assert len(redirecting.seen) == 1 and elsewhere.seen == [] and SECRET not in str(redirected.value)
    finally:
        redirecting.stop()
        elsewhere.stop()


def test_registry_credentials_stay_with_the_registry_origin(clean_env, tmp_path):
    from airlift.oci.client import RegistryClient

    clean_env.setenv("DOCKER_CONFIG", str(_config(tmp_path / "d", {"auths": {"127.0.0.1": {"auth": base64.b64encode(f"erin:{SECRET}".encode()).decode()}}})))
    registry = _Recorder(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    other = _Recorder()
    host = registry.url.removeprefix("http://")
    client = RegistryClient(host, registry="127.0.0.1")
    try:
        client.request("GET", "/v2/", scope="repository:x:pull").close()  # 401 Basic: credentials, then sent again
        assert registry.seen[-1][2] == "Basic " + base64.b64encode(f"erin:{SECRET}".encode()).decode()
        # An upload Location naming another origin (host, port or scheme) gets no Authorization.
        client.request("PATCH", f"{other.url}/upload/abc", scope="repository:x:pull,push", content=b"data").close()
        assert other.seen == [("PATCH", "/upload/abc", None, b"data")]
    finally:
        client.close()
        registry.stop()
        other.stop()

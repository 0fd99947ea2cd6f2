"""Registry credentials through the Docker SDK (auths, identitytoken, credHelpers with a real helper, credsStore,
REGISTRY_AUTH_FILE first) and token lifetimes, in-process against the token server stand-in."""

from __future__ import annotations

import base64
import json
import stat

import httpx
import pytest

from airlift.oci.auth import RegistryAuth, credentials_for, parse_challenge
from airlift.testing.tokenserver import TokenServer
from airlift.util.errors import InputError, WorkError

SECRET = "pw-that-must-not-show"


def _config(directory, body: dict):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(body))
    return directory


def _helper(directory, name: str, *, username: str = "bob"):
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / f"docker-credential-{name}"
    script.write_text(f"""#!/bin/sh
[ "$1" = get ] || exit 1
read -r server
case "$server" in
  *reg.example:5000*|https://index.docker.io/v1/) printf '{{"ServerURL":"%s","Username":"{username}","Secret":"{SECRET}"}}' "$server" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory


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
        auth = RegistryAuth(registry="reg.example:5000", http=http, clock=clock)
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
        auth = RegistryAuth(registry="reg.example:5000", http=http)
        try:
            with pytest.raises(WorkError) as refused:
                auth.renew(_unauthorized(server, "repository:x:pull"), scope="repository:x:pull", sent=None)
        finally:
            server.stop()
    assert "HTTP 401" in str(refused.value) and SECRET not in str(refused.value) and server.refused == 1

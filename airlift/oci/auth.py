"""Registry credentials and tokens, obtained the way Docker obtains them.

Credentials come from `REGISTRY_AUTH_FILE`, then Docker's config (`$DOCKER_CONFIG/config.json` or
`~/.docker/config.json`), read through the Docker SDK, so `credHelpers`, `credsStore`
(`docker-credential-<name>`), `auths` (`auth`) and `identitytoken` all work as they do for `docker pull`.

Tokens: a Basic challenge gets the username and password; a Bearer challenge gets a token from the
challenge's realm, per scope. With an identity token (an OAuth2 refresh token) the token comes from a
POST `grant_type=refresh_token`, as Docker does; otherwise from a GET with Basic credentials, or
anonymously. Tokens live in memory only, with their lifetime: one is fetched again shortly before it
expires, and once more when the registry answers 401 anyway (its clock, or a revocation, disagrees),
so a pull or push that outlives the token (Docker Hub's last 300 s) goes on. Secrets are held as
`SecretStr`, so no repr, log line or error message can show them.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from airlift.util.errors import InputError, WorkError
from airlift.util.http import raise_for_status
from airlift.util.settings import settings

MAX_TOKEN_RESPONSE = 1 << 20  # a token answer is a few KiB (a JWT and its metadata); 1 MiB is far beyond


def read_capped(response: httpx.Response, limit: int, label: str) -> bytes:
    """A streamed response's body, never more than `limit` bytes read, then closed.

    Raises:
        WorkError: The announced or actual body is larger (permanent: a retry gets the same answer).
    """
    try:
        announced = response.headers.get("content-length")
        if announced is not None and announced.isdigit() and int(announced) > limit:
            raise WorkError(f"{label}: the answer announces {announced} bytes, more than the {limit} allowed; not read")
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > limit:
                raise WorkError(f"{label}: the answer is larger than {limit} bytes; stopped reading there")
        return bytes(data)
    finally:
        response.close()


# Docker assumes 60 s when a token response has no `expires_in` (the distribution token spec's default).
DEFAULT_TOKEN_LIFETIME = 60.0
# Refresh this long before expiry: a quarter of the lifetime, at most 30 s (a request in flight needs margin).
_MAX_MARGIN = 30.0
OAUTH_CLIENT_ID = "airlift"
HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # docker-credential-<name>: no path, no option
_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


class Credentials(BaseModel):
    """What the Docker config holds for one registry: a username and password, or an identity token."""

    model_config = ConfigDict(frozen=True)

    username: str = ""
    password: SecretStr = SecretStr("")
    identity_token: SecretStr = SecretStr("")

    @property
    def has_basic(self) -> bool:
        return bool(self.username and self.password.get_secret_value())


class Challenge(BaseModel):
    """A parsed `WWW-Authenticate` header."""

    model_config = ConfigDict(frozen=True)

    scheme: str  # "basic" or "bearer"
    realm: str = ""
    service: str = ""
    scope: str = ""


class _Token(BaseModel):
    header: SecretStr  # the whole Authorization value, "Bearer ..." or "Basic ..."
    expires_at: float | None = None  # time.monotonic(); None for Basic (never expires)


def config_files() -> list[Path]:
    """The auth files consulted, in order: `REGISTRY_AUTH_FILE`, then Docker's config file."""
    from docker.utils.config import find_config_file

    files = []
    if settings().registry_auth_file:
        files.append(settings().registry_auth_file)
    docker_config = find_config_file()
    if docker_config:
        files.append(Path(docker_config))
    return files


def credentials_for(*, registry: str) -> Credentials | None:
    """The credentials for `registry` (`docker.io` for Docker Hub), never from a spec.

    Args:
        registry: The registry as images name it: `host[:port]`, or `docker.io`.

    Returns:
        The first file's entry that has credentials, or None (anonymous).

    Raises:
        InputError: A credential helper the config names is not installed (names the file and field).
        WorkError: A credential helper failed (its output is not shown: it may hold a secret).
    """
    from docker.auth import load_config
    from docker.errors import DockerException

    for path in config_files():
        if not path.is_file():
            continue
        config = load_config(config_path=str(path))
        helper = config.get_credential_store(registry)
        if helper and not (isinstance(helper, str) and HELPER_NAME.fullmatch(helper)):
            # The name becomes part of an executable's name (docker-credential-<name>), found on PATH.
            field = "credsStore" if helper == config.creds_store else "credHelpers"
            raise InputError(f"{path}: {field}: {helper!r} is not a credential helper name")
        try:
            with warnings.catch_warnings():
                # The SDK warns of a missing helper before it fails: the one-line error below says it.
                warnings.simplefilter("ignore", UserWarning)
                entry = config.resolve_authconfig(registry)
        except DockerException as exc:
            field = "credsStore" if helper == config.creds_store else "credHelpers"
            if "not installed" in str(exc):
                raise InputError(f"{path}: {field}: docker-credential-{helper} is not on PATH") from None
            raise WorkError(f"{path}: {field}: docker-credential-{helper} failed for {registry}") from None
        creds = _from_entry(entry or {})
        if creds is not None:
            return creds
    return None


def _from_entry(entry: dict) -> Credentials | None:
    # The SDK spells keys two ways: lower case from `auths`, capitalized from a credential helper.
    identity = entry.get("IdentityToken") or entry.get("identitytoken") or ""
    username = entry.get("username") or entry.get("Username") or ""
    password = entry.get("password") or entry.get("Password") or ""
    if not identity and not (username and password):
        return None
    return Credentials(username=username, password=SecretStr(password), identity_token=SecretStr(identity))


def parse_challenge(header: str) -> Challenge | None:
    """The scheme and parameters of a `WWW-Authenticate` header; None for a scheme we do not speak."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in {"basic", "bearer"}:
        return None
    params = dict(_PARAM_RE.findall(rest))
    return Challenge(scheme=scheme, realm=params.get("realm", ""), service=params.get("service", ""), scope=params.get("scope", ""))


class RegistryAuth:
    """Authorization headers for one registry, per scope: fetched on a challenge, refreshed before expiry.

    Thread-safe: the blob pulls of one image share it, and only one of them fetches a new token.
    """

    def __init__(self, *, registry: str, http: httpx.Client, plain_http: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self._http = http
        self._plain_http = plain_http  # the registry itself speaks http: its realm may too
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._bearer: Challenge | None = None  # the realm and service of the last Bearer challenge
        self._creds: Credentials | None = None
        self._creds_loaded = False
        self.tokens_fetched = 0

    def header(self, scope: str) -> str | None:
        """The Authorization value for `scope` (refreshed first if it is about to expire), or None."""
        with self._lock:
            token = self._tokens.get(scope)
            if token is None:
                return None
            if token.expires_at is not None and self._bearer is not None and self._clock() >= token.expires_at:
                token = self._fetch_bearer(self._bearer, scope)
            return token.header.get_secret_value()

    def renew(self, response: httpx.Response, *, scope: str, sent: str | None) -> bool:
        """After a 401: get (new) credentials for `scope`; True when the request is worth sending again.

        Args:
            response: The 401, whose `WWW-Authenticate` says how to authenticate.
            scope: The scope the request needs (`repository:<name>:pull[,push]`).
            sent: The Authorization value the refused request carried, or None.
        """
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return False
        with self._lock:
            current = self._tokens.get(scope)
            if current is not None and current.header.get_secret_value() != sent:
                return True  # another thread renewed it meanwhile: use that one
            if challenge.scheme == "basic":
                creds = self._credentials()
                if creds is None or not creds.has_basic:
                    return False
                pair = f"{creds.username}:{creds.password.get_secret_value()}".encode()
                header = "Basic " + base64.b64encode(pair).decode()
                if header == sent:
                    return False  # these credentials were just refused: asking again changes nothing
                self._tokens[scope] = _Token(header=SecretStr(header))
                return True
            if not challenge.realm:
                raise WorkError(f"{self.registry}: Bearer challenge without a realm")
            self._bearer = challenge
            self._fetch_bearer(challenge, scope)
            return True

    def _credentials(self) -> Credentials | None:
        if not self._creds_loaded:
            self._creds = credentials_for(registry=self.registry)
            self._creds_loaded = True
        return self._creds

    def _fetch_bearer(self, challenge: Challenge, scope: str) -> _Token:
        realm = urlsplit(challenge.realm)
        if realm.scheme not in {"http", "https"} or not realm.netloc:
            raise WorkError(f"{self.registry}: token realm is not an http(s) URL")
        scopes = [scope, *(s for s in challenge.scope.split(" ") if s and s != scope)]
        creds = self._credentials()
        label = f"{self.registry}: token request"
        if creds is not None and realm.scheme == "http" and not self._plain_http:
            # A challenge can name any realm: credentials for an https registry never travel in clear text.
            raise WorkError(f"{self.registry}: token realm {realm.scheme}://{realm.netloc} is plain http; credentials are not sent there")
        # No redirects with credentials: a 307 would carry them (or the POSTed refresh token) to another host.
        # Streamed, and read no further than MAX_TOKEN_RESPONSE: a hostile token server cannot fill memory.
        if creds is not None and creds.identity_token.get_secret_value():
            request = self._http.build_request("POST", challenge.realm, data={
                "grant_type": "refresh_token", "refresh_token": creds.identity_token.get_secret_value(),
                "service": challenge.service, "scope": " ".join(scopes), "client_id": OAUTH_CLIENT_ID,
            })
            response = self._http.send(request, stream=True, follow_redirects=False)
        else:
            params = [("service", challenge.service), *(("scope", s) for s in scopes)]
            auth = (creds.username, creds.password.get_secret_value()) if creds is not None and creds.has_basic else None
            request = self._http.build_request("GET", challenge.realm, params=params)
            response = self._http.send(request, stream=True, auth=auth, follow_redirects=auth is None)
        if response.is_redirect:
            response.close()
            raise WorkError(f"{label}: {realm.scheme}://{realm.netloc} redirects (HTTP {response.status_code}); not followed with credentials")
        raise_for_status(response, label, origin=f"{realm.scheme}://{realm.netloc}")
        raw = read_capped(response, MAX_TOKEN_RESPONSE, label)
        try:
            body = json.loads(raw)
        except ValueError:
            raise WorkError(f"{label}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise WorkError(f"{label}: the answer holds no token")
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise WorkError(f"{label}: the answer holds no token")
        if creds is not None and isinstance(body.get("refresh_token"), str) and body["refresh_token"]:
            # The token server may rotate the refresh token; Docker keeps the new one (in memory only here).
            creds = creds.model_copy(update={"identity_token": SecretStr(body["refresh_token"])})
            self._creds = creds
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, (int, float)) and lifetime > 0 else DEFAULT_TOKEN_LIFETIME
        margin = min(_MAX_MARGIN, lifetime / 4)
        token = _Token(header=SecretStr(f"Bearer {value}"), expires_at=self._clock() + lifetime - margin)
        self.tokens_fetched += 1
        self._tokens[scope] = token
        return token

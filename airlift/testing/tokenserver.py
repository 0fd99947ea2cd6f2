"""A registry token server for tests and the demo: the Docker distribution token protocol.

A `docker-registry` configured with `auth: token: {realm, service, issuer, rootcertbundle}` sends clients
here. It answers GET `/token?service=...&scope=...` (anonymous or HTTP Basic) and POST `/token` with
`grant_type=refresh_token` (an identity token, as `docker login` stores for OAuth registries) or
`grant_type=password`, issuing ES256 JWTs with the claims distribution checks (iss, sub, aud, exp,
nbf, iat, jti, access) and a `kid` that is the libtrust fingerprint of the key whose certificate is in
the registry's rootcertbundle.

Tokens can be made to expire after a few seconds, so a test sees a pull or push outlive its token.
Distribution accepts a token 60 s past its `exp` (clock-skew leeway), so `exp` is set that much early:
the registry refuses the token `lifetime` seconds after it was issued. `advertised_lifetime` is what the
response's `expires_in` says, which may differ (a clock that disagrees, a revoked token), so a client's
refresh on 401 is what gets tested.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from airlift.testing.serving import BackgroundServer

# distribution's registry/auth/token.Leeway: a token is accepted this long past its `exp`.
DISTRIBUTION_LEEWAY = 60


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The `kid` distribution looks a trusted key up by: base32 of the SPKI's sha256, 240 bits, in groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenServer(BackgroundServer):
    """A threaded token server on loopback.

    Attributes:
        service: The `service` (JWT audience) the registry is configured with.
        issuer: The `issuer` the registry trusts.
        lifetime: Seconds after issue when the registry starts refusing a token.
        advertised_lifetime: The `expires_in` the response states (default: `lifetime`).
        users: username -> password accepted with HTTP Basic or `grant_type=password`.
        refresh_tokens: identity token -> username accepted with `grant_type=refresh_token`.
        issued: Tokens issued, by grant ("anonymous", "basic", "refresh_token", "password").
        refused: Token requests refused (bad credentials).
    """

    service: str = "airlift-test-registry"
    issuer: str = "airlift-test-tokens"
    lifetime: float = 300.0
    advertised_lifetime: float | None = None
    users: dict[str, str] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    issued: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    seen_secrets_in_queries: int = 0

    def __post_init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.key_id = libtrust_key_id(self._key.public_key())
        self._lock = threading.Lock()
        self._refused_after = 0.0  # when the registry refuses the last token issued (see wait_until_issued_expired)

    # -- tokens -----------------------------------------------------------------------------------
    def write_rootcertbundle(self, path: Path) -> Path:
        """Write the signing certificate (PEM) where the registry's `rootcertbundle` points."""
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def make_token(self, *, subject: str, scopes: list[str]) -> str:
        """A signed JWT granting every action asked for in `scopes` (`repository:<name>:<actions>`)."""
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name and actions:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        with self._lock:
            self._refused_after = max(self._refused_after, float(now + int(self.lifetime)))
        claims = {
            "iss": self.issuer, "sub": subject, "aud": self.service,
            "exp": now + int(self.lifetime) - DISTRIBUTION_LEEWAY, "nbf": now - 1, "iat": now,
            "jti": secrets.token_hex(8), "access": access,
        }
        header = {"typ": "JWT", "alg": "ES256", "kid": self.key_id}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _grant(self, kind: str, subject: str, scopes: list[str]) -> dict:
        with self._lock:
            self.issued[kind] += 1
        token = self.make_token(subject=subject, scopes=scopes if subject else [])
        advertised = self.advertised_lifetime if self.advertised_lifetime is not None else self.lifetime
        issued_at = datetime.datetime.now(datetime.UTC).isoformat()
        return {"token": token, "access_token": token, "expires_in": int(advertised), "issued_at": issued_at}

    def wait_until_issued_expired(self, *, margin: float = 1.0) -> None:
        """Block until the registry refuses every token issued so far (its `exp` plus the registry's leeway).

        Tests wait for this event at the moment they need dead tokens, so tokens may live long enough
        for any load (a token issued and used seconds apart on a busy machine still works).
        """
        with self._lock:
            until = self._refused_after
        while (left := until + margin - time.time()) > 0:
            time.sleep(min(left, 0.5))

    @property
    def total_issued(self) -> int:
        with self._lock:
            return sum(self.issued.values())

    # -- HTTP -------------------------------------------------------------------------------------
    def start(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refuse(self) -> None:
                with server._lock:
                    server.refused += 1
                self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if {"password", "refresh_token", "auth"} & set(query):
                    with server._lock:
                        server.seen_secrets_in_queries += 1
                scopes = query.get("scope", [])
                header = self.headers.get("Authorization", "")
                if not header:
                    self._send(200, server._grant("anonymous", "", scopes))
                    return
                scheme, _, value = header.partition(" ")
                user, _, password = base64.b64decode(value).decode().partition(":") if scheme.lower() == "basic" else ("", "", "")
                if not user or server.users.get(user) != password:
                    self._refuse()
                    return
                self._send(200, server._grant("basic", user, scopes))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                scopes = form.get("scope", "").split()
                if form.get("grant_type") == "refresh_token":
                    user = server.refresh_tokens.get(form.get("refresh_token", ""))
                    if user is None:
                        self._refuse()
                        return
                    body = server._grant("refresh_token", user, scopes)
                elif form.get("grant_type") == "password":
                    user = form.get("username", "")
                    if not user or server.users.get(user) != form.get("password"):
                        self._refuse()
                        return
                    body = server._grant("password", user, scopes)
                else:
                    self._send(400, {"error": "unsupported_grant_type"})
                    return
                body.pop("token")  # the OAuth2 form of the answer names it access_token only
                self._send(200, body)

        self._serve(Handler)
        return self

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.bound[1]}/token"


class LocalRegistry:
    """A `docker-registry serve` of its own on a free loopback port, for tests that need auth or a clean store.

    Args:
        root: Its directory: config, storage and `registry.log` (the access log, with each status code).
        auth: The config's `auth:` section, e.g. `{"htpasswd": {...}}` or `{"token": {...}}`; None for none.
    """

    def __init__(self, root: Path, *, auth: dict | None = None) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.root = root
        self.address = f"127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.address, "secret": secrets.token_hex(16)},
        }
        if auth:
            config["auth"] = auth
        self.config = root / "config.yml"
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self.log = root / "registry.log"
        self._proc = None

    def start(self, timeout: float = 30) -> LocalRegistry:
        import subprocess
        import urllib.error
        import urllib.request

        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self  # 401: up, and asking for credentials
            except OSError:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not answer on {self.address}")

    def statuses(self, method: str, path_part: str) -> Counter[int]:
        """Status codes in the access log for requests whose method matches and path contains `path_part`."""
        import re

        counts: Counter[int] = Counter()
        for match in re.finditer(r'"(\w+) (\S+) HTTP/[\d.]+" (\d{3})', self.log.read_text(errors="replace")):
            if match[1] == method and path_part in match[2]:
                counts[int(match[3])] += 1
        return counts

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - a registry that ignores SIGTERM is killed
                self._proc.kill()
                self._proc.wait()

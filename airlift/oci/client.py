"""A small OCI distribution client: manifests, indexes, blobs (pull and push), token auth.

It speaks Docker v2 and OCI media types, picks a platform from an index, streams blobs through the
blob store (digest verified while writing; partial pulls resume with Range) and pushes the exact
manifest bytes it pulled, so a digest never changes on the way across the gap.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from airlift.bundle.oci_layout import DOCKER_MANIFEST, MAX_IMAGE_MANIFEST, OCI_INDEX, OCI_MANIFEST
from airlift.bundle.store import BlobStore, StoredBlob
from airlift.oci.auth import RegistryAuth, credentials_for, read_capped  # noqa: F401 - credentials_for: re-exported
from airlift.util import ranged
from airlift.util.errors import IntegrityError, TransientError, WorkError
from airlift.util.fs import CHUNK
from airlift.util.http import closing_response, raise_for_status, resumable_get, tls_context
from airlift.util.names import Digest
from airlift.util.net import ATTEMPTS
from airlift.util.phase import progress

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
# Registry uploads go in 16 MiB PATCHes: each is a resumable step, and few enough for a 20 GB layer.
UPLOAD_CHUNK = 16 << 20


def is_plain_http(host: str, insecure: bool = False) -> bool:
    """True for loopback hosts, or when the caller says so (the site's `registry.insecure`, or the
    build's `FetchContext.insecure_registries`): speak HTTP, not HTTPS."""
    bare = host.rsplit(":", 1)[0]
    return insecure or bare in {"localhost", "127.0.0.1", "::1", "[::1]"}


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in, so `host` and `host:443` match."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:
        port = None  # not a port: this origin matches nothing sensible
    return scheme, (parts.hostname or "").lower(), port


class RegistryClient:
    """One registry host. Bearer tokens are fetched per scope on 401 and kept in memory only."""

    def __init__(self, host: str, *, registry: str | None = None, insecure: bool = False) -> None:
        self.host = host
        self.registry = registry or host
        self.base = f"{'http' if is_plain_http(host, insecure) else 'https'}://{host}"
        self._http = httpx.Client(verify=tls_context(), timeout=httpx.Timeout(30.0, read=300.0), follow_redirects=True)
        self.auth = RegistryAuth(registry=self.registry, http=self._http, plain_http=self.base.startswith("http:"))

    def close(self) -> None:
        self._http.close()

    # -- auth -------------------------------------------------------------------------------------
    @property
    def tokens_fetched(self) -> int:
        """How many Bearer tokens this client fetched (each refresh counts)."""
        return self.auth.tokens_fetched

    def request(
        self, method: str, url: str, *, scope: str, headers: dict | None = None, stream: bool = False,
        body: Callable[[], Iterable[bytes]] | None = None, **kwargs,
    ) -> httpx.Response:
        """Send with this scope's credentials; on a 401, get new ones (airlift/oci/auth.py) and send once more.

        Args:
            body: Makes the request body afresh (a file slice): a streamed body can be sent only
                once, so a chunk refused for an expired token is made again for the second send.
        """
        full = url if url.startswith("http") else f"{self.base}{url}"
        # Credentials go to this registry's own origin only (as Docker's authorizer does): an upload
        # `Location` may name another host, or plain http, and must not receive them.
        ours = _origin(full) == _origin(self.base)
        # A body streamed from a file can be sent once only; bytes (or none) can be sent again.
        replayable = body is not None or isinstance(kwargs.get("content"), (bytes, type(None)))
        for attempt in range(2):
            merged = dict(headers or {})
            sent = self.auth.header(scope) if ours else None
            if sent is not None:
                merged["Authorization"] = sent
            if body is not None:
                kwargs["content"] = body()
            request = self._http.build_request(method, full, headers=merged, **kwargs)
            response = self._http.send(request, stream=stream)
            # No token yet, or it expired during a long pull or push (Docker Hub's last 300 s): get one, ask again.
            # A 401 counts only from this registry's origin: after a redirect it is a CDN's (or anyone's), and
            # renewing on its challenge would send this registry's credentials to the realm it names.
            if response.status_code == 401 and ours and _origin(str(response.url)) == _origin(self.base) and attempt == 0 and (replayable or sent is None) and self.auth.renew(response, scope=scope, sent=sent):
                response.close()
                continue
            return response
        return response

    def check(self, response: httpx.Response, what: str) -> None:
        """Nothing for a success; TransientError for 408/429/5xx; WorkError naming `what` and this host otherwise."""
        raise_for_status(response, what, origin=self.host)

    # -- manifests --------------------------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest) of a manifest or index; the digest is checked against the bytes."""
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", scope=f"repository:{repository}:pull", headers={"Accept": ACCEPT}, stream=True,
        )
        self.check(response, f"{repository}:{reference}")
        # Bounded as bundles bound image manifests: a 16 MiB answer is refused at 4 MiB, not held whole.
        raw = read_capped(response, MAX_IMAGE_MANIFEST, f"{repository}:{reference}: manifest")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise IntegrityError(f"{repository}@{reference}: registry returned a manifest hashing to {digest}")
        media_type = response.headers.get("content-type", "").split(";")[0] or json.loads(raw).get("mediaType", "")
        if media_type not in INDEX_TYPES | MANIFEST_TYPES:
            media_type = json.loads(raw).get("mediaType") or media_type
        return raw, media_type, digest

    def head_manifest(self, repository: str, reference: str) -> str | None:
        response = self.request("HEAD", f"/v2/{repository}/manifests/{reference}", scope=f"repository:{repository}:pull", headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        self.check(response, f"{repository}:{reference}")
        return response.headers.get("docker-content-digest")

    def put_manifest(self, repository: str, reference: str, *, raw: bytes, media_type: str) -> str:
        response = self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": media_type}, content=raw,
        )
        self.check(response, f"push manifest {repository}:{reference}")
        return response.headers.get("docker-content-digest", "")

    # -- blobs ------------------------------------------------------------------------------------
    def pull_blob(
        self, repository: str, digest: str, *, store: BlobStore, on_bytes: Callable[[int], None] | None = None, size: int | None = None,
    ) -> StoredBlob:
        """Stream a blob into the store, resuming a partial one; its sha256 must equal the digest.

        `size` is the descriptor's: passed to the download, which stops a body that runs past it.
        """
        hexdigest = Digest(digest).hex
        if store.has(hexdigest):
            return StoredBlob(hexdigest, store.blob_path(hexdigest).stat().st_size)
        label = f"{repository} blob {digest[:19]}"
        with store.partial(f"oci-{hexdigest}") as partial:

            def open_stream(headers: dict[str, str]):  # noqa: ANN202 - a context manager of a response
                response = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=f"repository:{repository}:pull", headers=headers, stream=True)
                return closing_response(response)

            resumable_get(open_stream, partial.writer, label=label, on_bytes=on_bytes, check=self.check, expected_size=size)
            return partial.commit(expected_sha256=hexdigest, label=label)

    def pull_blob_ranged(
        self, repository: str, digest: str, *, store: BlobStore, size: int, on_bytes: Callable[[int], None] | None = None,
        attempts: int = ATTEMPTS,
    ) -> StoredBlob | None:
        """A large blob over parallel byte ranges (util/ranged.py: each range holds a host slot and is
        retried alone); None when one stream must do instead (too small, or the registry ignores Range)."""
        hexdigest = Digest(digest).hex
        if store.has(hexdigest, size):
            return StoredBlob(hexdigest, size)

        def open_stream(headers: dict[str, str]):  # noqa: ANN202 - a context manager of a response
            response = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=f"repository:{repository}:pull", headers=headers, stream=True)
            return closing_response(response)

        # No If-Range (no etag): the URL names its content, and the digest checks the whole blob.
        got = ranged.download(
            store, f"oci-{hexdigest}", open_stream, url=self.base, size=size, label=f"{repository} blob {digest[:19]}",
            expected_sha256=hexdigest, on_bytes=on_bytes, check=self.check, attempts=attempts,
        )
        return None if got is None else StoredBlob(*got)

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=f"repository:{repository}:pull,push")
        if response.status_code == 404:
            return False
        self.check(response, f"{repository} blob {digest[:19]}")
        return True

    def mount_blob(self, repository: str, digest: str, *, from_repository: str) -> bool:
        response = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/", scope=f"repository:{repository}:pull,push",
            params={"mount": digest, "from": from_repository},
        )
        if response.status_code == 201:
            return True
        if response.status_code == 202:  # mount refused: the registry opened an upload instead; drop it
            location = response.headers.get("location")
            if location:
                self.request("DELETE", self._absolute(location), scope=f"repository:{repository}:pull,push").close()
        return False

    def _absolute(self, location: str) -> str:
        return location if location.startswith("http") else f"{self.base}{location}"

    def upload_status(self, repository: str, location: str) -> int | None:
        """Bytes the registry already holds for an upload session, or None if it is gone or unclear.

        Distribution answers `0-0` for an empty session and for a 1-byte one alike, and appends a PATCH
        whatever its Content-Range says, so guessing wrong would corrupt the blob: a fresh session is
        cheaper. A session whose `_state` no longer matches its stored size (a PATCH cut mid-body) is
        cancelled by the registry (BLOB_UPLOAD_INVALID, 404): also None, so the caller starts over.
        """
        response = self.request("GET", self._absolute(location), scope=f"repository:{repository}:pull,push")
        if response.status_code != 204:
            response.close()
            return None
        match = re.match(r"^(?:bytes=)?0-(\d+)$", response.headers.get("range", ""))
        if not match or match[1] == "0":
            return None
        return int(match[1]) + 1

    def start_upload(self, repository: str) -> str:
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=f"repository:{repository}:pull,push")
        self.check(response, f"{repository}: start upload")
        return response.headers["location"]

    def upload_chunks(self, repository: str, location: str, *, path: Path, offset: int, on_location: Callable[[str], None], on_bytes: Callable[[int], None] | None = None) -> str:
        """PATCH the file from `offset` in chunks (each one a resumable step); returns the final location."""
        size = path.stat().st_size
        with open(path, "rb") as handle:
            while offset < size:
                length = min(UPLOAD_CHUNK, size - offset)
                # Stream each chunk from the file in small pieces: a chunk never sits in memory whole.
                def body(start: int = offset, count: int = length) -> Iterator[bytes]:
                    handle.seek(start)
                    return _file_slice(handle, count, start=start, total=size)

                response = self.request(
                    "PATCH", self._absolute(location), scope=f"repository:{repository}:pull,push",
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + length - 1}",
                        "Content-Length": str(length),
                    },
                    body=body,
                )
                if response.status_code in {404, 416}:
                    # The session is gone (BLOB_UPLOAD_INVALID/UNKNOWN) or out of step with us: the retry
                    # layer calls again, and the caller asks the registry where to resume, or starts over.
                    response.close()
                    raise TransientError(f"{repository}: upload session lost at {offset} (HTTP {response.status_code}); starting it again")
                self.check(response, f"{repository}: upload chunk at {offset}")
                location = response.headers.get("location", location)
                on_location(location)
                offset += length
                if on_bytes:
                    on_bytes(length)
        return location

    def finish_upload(self, repository: str, location: str, *, digest: str) -> None:
        separator = "&" if "?" in location else "?"
        response = self.request("PUT", f"{self._absolute(location)}{separator}digest={digest}", scope=f"repository:{repository}:pull,push")
        self.check(response, f"{repository}: finish upload of {digest[:19]}")


def choose_platform(index: dict, *, platform: str, ref: str) -> dict:
    """The index entry for `os/arch[/variant]`; a clear error lists what the index does have."""
    want_os, want_arch, *rest = platform.split("/")
    want_variant = rest[0] if rest else None
    available = []
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        available.append("/".join(p for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p))
        if plat.get("os") == want_os and plat.get("architecture") == want_arch and (want_variant is None or plat.get("variant") == want_variant):
            return entry
    raise WorkError(f"images/{ref}: no {platform} manifest in the index (it has: {', '.join(a for a in available if a) or 'none'})")


def _file_slice(handle, length: int, *, start: int, total: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        piece = handle.read(min(CHUNK, remaining))
        if not piece:
            raise WorkError(f"{handle.name}: file ended early while uploading")
        remaining -= len(piece)
        yield piece
        progress(done=start + length - remaining, total=total)

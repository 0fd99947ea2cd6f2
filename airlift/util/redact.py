"""Credentials in URLs never travel: userinfo and query strings are cut before a URL is recorded or logged.

A URL in a spec may carry `user:password@` or a signed query (`?X-Amz-Signature=...`, `?token=...`), and
a redirect may add one. The URL with its credentials is used for the request and nothing else; what a
manifest, a cache record, a persisted result or a log line holds is the redacted form, and the content
is pinned by its sha256.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """`scheme://host[:port]/path` of `url`: no userinfo, no query, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

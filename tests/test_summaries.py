"""Honest summaries (issue 27): build says what it downloaded and what it reused, ingest names only the
sinks the site has and where shared_root is, plan shows what a URL resolved to, and a refused connection
names the URL in one line per retry at most."""

from __future__ import annotations

import socket
import uuid

from tests.fixtures import pseudo_random


def test_build_ingest_and_plan_summaries(ws, hub):
    tag = uuid.uuid4().hex[:8]
    data = pseudo_random(300_000, 27)
    url = hub.add_file(f"summary-{tag}.bin", data)
    (ws.root / "local.txt").write_text("local bytes\n")
    spec = ws.write("airgap.yaml", f"name: summaries\ndatasets:\n  - url: {url}\n  - path: local.txt\n")

    plan = ws.run("plan", str(spec)).stdout
    row = next(line for line in plan.splitlines() if f"summary-{tag}.bin" in line)
    assert "ETag " in row and "293.0 KiB" in row, plan

    first = ws.run("build", str(spec), "--out", "b1").stdout
    assert "content: 293.0 KiB downloaded, 0 B reused from the cache" in first, first
    again = ws.run("build", str(spec), "--out", "b2").stdout
    assert "content: 0 B downloaded, 293.0 KiB reused from the cache" in again, again

    shared = ws.root / "shared"
    site = ws.write("site.yaml", f"shared_root: {shared}\n")
    out = ws.run("ingest", "b1", "--site", str(site)).stdout
    assert "S3" not in out and "images:" not in out, out
    assert f"shared_root 2 placed, 0 already there, under {shared}" in out, out


def test_connection_refused_names_the_url_once_per_try(ws):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/gone.bin"
    spec = ws.write("airgap.yaml", f"name: refused\ndatasets:\n  - url: {url}\n")
    result = ws.run("plan", str(spec), expect=1)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "refused" in line.lower()]
    assert lines and all(url in line or f"127.0.0.1:{port}" in line for line in lines), result.stderr
    retries = [line for line in lines if "retrying in" in line]
    assert len(retries) == 5 and len(lines) == 6, f"not one line per retry plus the final error: {lines}"
    assert [f"(attempt {n}/6)" in line for n, line in enumerate(retries, 1)] == [True] * 5

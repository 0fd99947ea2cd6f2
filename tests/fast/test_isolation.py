"""The fast tier's own guarantees: no service fixtures, no autouse services, no network beyond loopback."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.fast.conftest import FAST_DIR, top_level_fixtures


def test_top_level_conftest_has_no_autouse_fixtures():
    names, autouse = top_level_fixtures()
    assert {"services", "hub", "prefect_server", "ws"} <= names  # the parser does see the service fixtures
    assert autouse == set(), f"tests/conftest.py autouse fixtures would run in the fast tier: {autouse}"


def test_fast_tests_do_not_import_the_service_helpers():
    offenders = [
        path.name for path in FAST_DIR.glob("*.py")
        for line in path.read_text().splitlines()
        if line.startswith(("from tests.conftest", "import tests.conftest", "from tests.fixtures", "from tests.images"))
    ]
    assert offenders == []


def test_network_beyond_loopback_is_refused():
    with pytest.raises(OSError, match="fast tier"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(OSError, match="fast tier"):
        socket.getaddrinfo("huggingface.co", 443)


def test_a_loopback_server_started_here_is_reachable():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(16).upper())

        thread = threading.Thread(target=answer)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(16) == b"PING"
        thread.join(timeout=5)


"""A refused connection names the URL (without its credentials), in one line per retry and one final error."""

from __future__ import annotations

import logging
import socket

import pytest

import airlift.util.net as net
from airlift.fetch.http import head
from airlift.util.errors import TransientError


def test_connection_refused_names_the_url_once_per_retry(monkeypatch, caplog):
    monkeypatch.setattr(net, "backoff", lambda attempt: 0.0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    caplog.set_level(logging.WARNING, logger="airlift")
    with pytest.raises(TransientError) as caught:
        head(f"http://user:secret@127.0.0.1:{port}/gone.bin?X-Amz-Signature=abc", "files/gone.bin")
    final = str(caught.value)
    assert final == f"files/gone.bin: ConnectError: [Errno 111] Connection refused (http://127.0.0.1:{port}/gone.bin) (gave up after {net.ATTEMPTS} attempts)"
    lines = [r.getMessage() for r in caplog.records if r.name == "airlift"]
    assert len(lines) == net.ATTEMPTS - 1, lines
    assert all(f"127.0.0.1:{port}/gone.bin" in line and "secret" not in line and "Signature" not in line for line in lines)

"""A TCP relay for tests: counts bytes both ways, throttles, and can cut one connection mid-stream.

Unlike tests/proxy.py it never buffers a request body, so the registry behind it sees exactly what the
client sent, partial chunks included, as it would on a direct connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class Relay:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.bytes_up = 0  # client -> server (pushes)
        self.bytes_down = 0  # server -> client (pulls)
        self.up_rate: float | None = None  # bytes per second, per connection
        self.down_rate: float | None = None
        self.cut_down_after: int | None = None  # cut the connection once this many bytes went down in total
        self.cut_up_after: int | None = None  # likewise for bytes sent up (a PATCH cut mid-body)
        self.cuts = 0
        # Called (in the pumping thread, the connection held open) just before a cut: a test waits there for
        # an event (a token's expiry) instead of betting that the transfer lasts longer than some seconds.
        self.before_cut: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopped = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> Relay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def reset(self) -> None:
        with self._lock:
            self.bytes_up = self.bytes_down = 0

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(256 * 1024 if not (self.up_rate if up else self.down_rate) else 32 * 1024):
                rate = self.up_rate if up else self.down_rate
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                        cut = self.cut_up_after is not None and self.bytes_up >= self.cut_up_after
                        if cut:
                            self.cut_up_after = None
                    else:
                        self.bytes_down += len(data)
                        cut = self.cut_down_after is not None and self.bytes_down >= self.cut_down_after
                        if cut:
                            self.cut_down_after = None
                    self.cuts += cut
                if cut:
                    if self.before_cut is not None:
                        self.before_cut()
                    if up:
                        dst.sendall(data[: len(data) // 2])  # half of this piece lands: the registry keeps a partial chunk
                    break
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()

"""A TCP relay that counts the bytes each way: put it between an MQTT client and the broker to
measure what really crosses the wire (MQTT framing, TLS records and all; TCP/IP headers not)."""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType


class CountingRelay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.up = 0  # client → broker bytes
        self.down = 0  # broker → client bytes
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            pump = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            pump.start()
            self._threads.append(pump)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        with selectors.DefaultSelector() as sel, client, server:
            sel.register(client, selectors.EVENT_READ, (server, True))
            sel.register(server, selectors.EVENT_READ, (client, False))
            while not self._stopping:
                for key, _ in sel.select(0.2):
                    peer, upward = key.data
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except OSError:
                        data = b""
                    if not data:
                        return
                    with self._lock:
                        if upward:
                            self.up += len(data)
                        else:
                            self.down += len(data)
                    peer.sendall(data)

    def reset(self) -> None:
        with self._lock:
            self.up = self.down = 0

    def close(self) -> None:
        self._stopping = True
        self._listener.close()

    def __enter__(self) -> CountingRelay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
